"""Routes of the integrations API, mounted under /api/v1/ by crmext/urls.py."""
from rest_framework.routers import SimpleRouter

from integrations.api.views import ConnectorViewSet, ProviderViewSet, SyncRunViewSet

router = SimpleRouter()
router.register("connectors", ConnectorViewSet, basename="connector")
router.register("providers", ProviderViewSet, basename="provider")
router.register("sync-runs", SyncRunViewSet, basename="sync-run")

urlpatterns = router.urls
