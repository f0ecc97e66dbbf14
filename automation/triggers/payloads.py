"""What a webhook sends, and how it is signed.

The body is compact JSON::

    {"event": "communication.created", "trigger_id": 3, "delivery_id": 41, "sent_at": "...",
     "visibility": "everything",
     "communication": {"id", "connector_id", "provider_message_id", "rfc_message_id", "channel",
                       "direction", "from", "to", "subject", "snippet", "sent_at",
                       "conversation_id", "contact_ids"}}

``visibility`` is the level the trigger's owner has on the connector: on a teammate's
connector, what its sharing hides (subject, snippet) is null.

Signing, as Stripe and Svix do: ``X-CRM-Signature: t=<unix seconds>,v1=<hex>`` where the hex
is HMAC-SHA256(secret, f"{t}." + body). docs/verify_webhook.py verifies it.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterable
from typing import Any

from django.utils import timezone

from conversations.models import Communication, Participant
from conversations.visibility import Level, shows

SIGNATURE_HEADER = "X-CRM-Signature"
EVENT_CREATED = "communication.created"
EVENT_TEST = "trigger.test"
USER_AGENT = "CRMExtender-Webhooks/1"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}." + body`` under ``secret``."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signed_headers(secret: str, body: bytes, *, delivery_id: int, event: str,
                   timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: f"t={timestamp},v1={signature(secret, timestamp, body)}",
        "X-CRM-Event": event,
        "X-CRM-Delivery": str(delivery_id),
    }


def _address(participant: Participant) -> dict[str, str]:
    return {"address": participant.address, "name": participant.display_name}


def communication_data(communication: Communication, participants: Iterable[Participant],
                       level: Level) -> dict[str, Any]:
    """The communication as the payload carries it, at ``level``."""
    people = list(participants)
    senders = [p for p in people if p.role == Participant.Role.FROM]
    return {
        "id": communication.pk,
        "connector_id": communication.account_id,
        "provider_message_id": communication.provider_message_id,
        "rfc_message_id": communication.rfc_message_id or None,
        "channel": communication.channel,
        "direction": communication.direction,
        "from": _address(senders[0]) if senders else None,
        "to": [_address(p) for p in people if p.role == Participant.Role.TO],
        "subject": communication.subject if shows(level, "subject") else None,
        "snippet": communication.snippet if shows(level, "snippet") else None,
        "sent_at": communication.sent_at.isoformat() if communication.sent_at else None,
        "conversation_id": communication.conversation_id,
        "contact_ids": sorted({p.contact_id for p in people if p.contact_id is not None}),
    }


def sample_communication() -> dict[str, Any]:
    """A made-up communication for test sends (``trigger.test``): no stored message is read."""
    return {
        "id": 0, "connector_id": None, "provider_message_id": "sample-message", "rfc_message_id": "<sample@example.com>",
        "channel": "email", "direction": "inbound",
        "from": {"address": "sender@example.com", "name": "Sample Sender"},
        "to": [{"address": "you@example.com", "name": ""}],
        "subject": "A sample message", "snippet": "This is what a trigger's webhook receives.",
        "sent_at": timezone.now().isoformat(), "conversation_id": 0, "contact_ids": [],
    }


def body(*, event: str, trigger_id: int, delivery_id: int, communication: dict[str, Any], level: Level) -> bytes:
    document = {"event": event, "trigger_id": trigger_id, "delivery_id": delivery_id,
                "sent_at": timezone.now().isoformat(), "visibility": level.label, "communication": communication}
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()
