"""Routes of the suggestions and tasks API, mounted under /api/v1/ by crmext.urls."""
from rest_framework.routers import SimpleRouter

from automation.api import SuggestionViewSet, TaskViewSet

router = SimpleRouter()
router.register("suggestions", SuggestionViewSet, basename="suggestion")
router.register("tasks", TaskViewSet, basename="task")

urlpatterns = router.urls
