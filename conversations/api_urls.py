"""Routes of the communications API, mounted under /api/v1/ by crmext.urls.

A contact's timeline lives here, not in contacts: it reads communications, and contacts
imports nothing of ours.
"""
from django.urls import re_path
from rest_framework.routers import SimpleRouter

from conversations.api import CommunicationViewSet, ContactTimelineView, ConversationViewSet

router = SimpleRouter()
router.register("communications", CommunicationViewSet, basename="communication")
router.register("conversations", ConversationViewSet, basename="conversation")

urlpatterns = [
    *router.urls,
    # Any id segment, as the router's detail routes take it: one that is no contact's id is the
    # API's JSON 404, not Django's HTML one for a path that matches no route.
    re_path(r"^contacts/(?P<pk>[^/.]+)/timeline/$", ContactTimelineView.as_view(), name="contact-timeline"),
]
