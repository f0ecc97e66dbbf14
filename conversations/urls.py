"""Web routes of the Communications pages (mounted at /communications/ by crmext.urls)."""
from django.urls import path

from conversations import views

app_name = "conversations"

urlpatterns = [
    path("", views.communications, name="communications"),
    path("<int:pk>/", views.communication, name="communication"),
    path("<int:pk>/body/", views.body, name="body"),
    path("<int:pk>/attachments/<int:attachment_id>/", views.attachment, name="attachment"),
]
