"""Routes of the communications API, mounted under /api/v1/ by crmext.urls.

A contact's timeline lives here, not in contacts: it reads communications, and contacts
imports nothing of ours.
"""
from django.urls import path
from rest_framework.routers import SimpleRouter

from conversations.api import CommunicationViewSet, ContactTimelineView, ConversationViewSet

router = SimpleRouter()
router.register("communications", CommunicationViewSet, basename="communication")
router.register("conversations", ConversationViewSet, basename="conversation")

urlpatterns = [
    *router.urls,
    path("contacts/<int:pk>/timeline/", ContactTimelineView.as_view(), name="contact-timeline"),
]
