"""Web routes of the Connections pages (mounted at /connections/ by crmext.urls)."""
from django.urls import path

from integrations import views

app_name = "integrations"

urlpatterns = [
    path("", views.connections, name="connections"),
    path("connect/<slug:provider>/", views.connect, name="connect"),
    path("upload/", views.upload, name="upload"),
    path("oauth/<slug:provider>/callback/", views.oauth_callback, name="oauth_callback"),
    path("<int:pk>/", views.account_detail, name="account"),
    path("<int:pk>/sync/", views.sync_now, name="sync"),
    path("<int:pk>/reconnect/", views.reconnect, name="reconnect"),
    path("<int:pk>/sharing/", views.sharing, name="sharing"),
    path("<int:pk>/disconnect/", views.disconnect, name="disconnect"),
]
