"""Provider webhooks (mounted at /webhooks/ by crmext.urls): one line per provider with push,
under its key. Each view authenticates its sender itself (OIDC token, signature) and is CSRF exempt."""
from django.urls import path

from integrations.providers.gmail import push as gmail_push
from integrations.providers.outlook import push as outlook_push
from integrations.providers.twilio import webhooks as twilio_webhooks

app_name = "webhooks"

urlpatterns = [
    path("gmail/pubsub", gmail_push.pubsub, name="gmail-pubsub"),
    path("outlook", outlook_push.notifications, name="outlook"),
    path("outlook/lifecycle", outlook_push.lifecycle, name="outlook-lifecycle"),
    path("twilio/sms", twilio_webhooks.inbound, name="twilio-sms"),
    path("twilio/status", twilio_webhooks.status, name="twilio-status"),
]
