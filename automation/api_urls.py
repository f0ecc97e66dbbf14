"""Routes of the suggestions, tasks, triggers and deliveries API, mounted under /api/v1/ by crmext.urls."""
from rest_framework.routers import SimpleRouter

from automation.api import SuggestionViewSet, TaskViewSet
from automation.triggers.api import DeliveryViewSet, TriggerViewSet

router = SimpleRouter()
router.register("suggestions", SuggestionViewSet, basename="suggestion")
router.register("tasks", TaskViewSet, basename="task")
router.register("triggers", TriggerViewSet, basename="trigger")
router.register("deliveries", DeliveryViewSet, basename="delivery")

urlpatterns = router.urls
