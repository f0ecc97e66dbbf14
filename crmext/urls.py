"""Composes every app's routes; the apps own their views, APIs and webhooks."""
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from crmext.health import health_view
from crmext.metrics import metrics_view

# Each app's REST API, under /api/v1/ (one line per app's api_urls module).
api_v1: list = [
    path("", include("integrations.api_urls")),
    path("", include("conversations.api_urls")),
    path("", include("contacts.api_urls")),
    path("", include("automation.api_urls")),
]

# Django's own sign-in views; no self sign-up and no password reset by mail (accounts come
# from an administrator). Logout is POST only.
auth_urls = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", auth_views.PasswordChangeView.as_view(template_name="registration/password_change.html"),
         name="password_change"),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(
        template_name="registration/password_change_complete.html"), name="password_change_done"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # Operations: the load balancer's probe and Prometheus's scrape.
    path("health/", health_view, name="health"),
    path("metrics/", metrics_view, name="metrics"),
    # Provider webhooks (Gmail Pub/Sub push; later Graph and Twilio callbacks).
    path("webhooks/", include("integrations.webhook_urls")),
    # Web pages
    path("accounts/", include(auth_urls)),
    path("connections/", include("integrations.urls")),
    path("communications/", include("conversations.urls")),
    path("suggestions/", include("automation.urls")),
    path("", RedirectView.as_view(pattern_name="integrations:connections"), name="home"),
]
