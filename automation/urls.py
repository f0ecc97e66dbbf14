"""The Suggestions page and its settings page, mounted at /suggestions/ by crmext.urls."""
from django.urls import path

from automation import views

app_name = "automation"

urlpatterns = [
    path("", views.suggestions, name="suggestions"),
    path("<int:pk>/approve/", views.approve, name="approve"),
    path("<int:pk>/dismiss/", views.dismiss, name="dismiss"),
    path("approve-above/", views.approve_above, name="approve_above"),
    path("tasks/<int:pk>/done/", views.task_done, name="task_done"),
    path("settings/", views.automation_settings, name="settings"),
    path("settings/accounts/<int:pk>/", views.account_switches, name="account_settings"),
]
