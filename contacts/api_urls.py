"""Routes of the contacts API, mounted under /api/v1/ by crmext.urls."""
from rest_framework.routers import SimpleRouter

from contacts.api import CompanyViewSet, ContactViewSet

router = SimpleRouter()
router.register("contacts", ContactViewSet, basename="contact")
router.register("companies", CompanyViewSet, basename="company")

urlpatterns = router.urls
