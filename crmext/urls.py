"""Composes every app's routes; the apps own their views, APIs and webhooks."""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

# Each app's REST API, under /api/v1/ (one line per app's api_urls module).
api_v1: list = [
    path("", include("integrations.api_urls")),
    path("", include("conversations.api_urls")),
    path("", include("contacts.api_urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
