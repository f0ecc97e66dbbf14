"""MessageInput, the engines' view of a message, built from a stored Communication (the flow) or
from a ParsedMessage plus its raw headers (the evaluation command): both go through
``from_fields``, so the evaluation runs the engine on what the flow gives it."""
from __future__ import annotations

import datetime as dt
import email.parser
import email.policy
from collections.abc import Iterable

from automation.engines.base import MessageInput
from conversations.messages import ParsedMessage
from conversations.models import Communication

# The headers engines read; the rest of a message's headers are never kept.
ENGINE_HEADERS = ("list-unsubscribe", "list-id", "precedence", "auto-submitted", "x-autoreply", "x-autorespond")
CALENDAR_TYPES = ("text/calendar", "application/ics")


def from_fields(*, channel: str, direction: str, sender: str, sender_name: str = "", to: Iterable[str] = (),
                cc: Iterable[str] = (), owner_addresses: Iterable[str] = (), subject: str | None = "",
                body: str = "", sent_at: dt.datetime | None = None, headers: dict[str, str] | None = None,
                labels: Iterable[str] = (), attachment_types: Iterable[str] = (), time_zone: str = "UTC"
                ) -> MessageInput:
    own = frozenset(address.lower() for address in owner_addresses if address)
    sender = (sender or "").lower()
    if sender and sender in own:
        direction = "outbound"
    return MessageInput(
        channel=channel, direction=direction, sender=sender, sender_name=sender_name,
        to=tuple(a.lower() for a in to), cc=tuple(a.lower() for a in cc), owner_addresses=own,
        subject=subject or "", body=body or "", sent_at=sent_at, headers=headers or {}, labels=tuple(labels),
        has_calendar=any(kind.lower() in CALENDAR_TYPES for kind in attachment_types), time_zone=time_zone,
    )


def engine_headers(raw: bytes | str) -> dict[str, str]:
    """The few headers engines read, from a raw RFC 5322 message (its header block only)."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    end = raw.find(b"\r\n\r\n")
    end = raw.find(b"\n\n") if end < 0 else end
    block = raw if end < 0 else raw[:end]
    parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(block)
    return {name: str(parsed[name]) for name in ENGINE_HEADERS if parsed[name] is not None}


def from_parsed(message: ParsedMessage, *, owner_addresses: Iterable[str], time_zone: str,
                headers: dict[str, str] | None = None) -> MessageInput:
    return from_fields(
        channel=str(message.channel), direction=str(message.direction),
        sender=message.sender.value if message.sender else "",
        sender_name=message.sender.display_name if message.sender else "",
        to=[a.value for a in message.to], cc=[a.value for a in message.cc], owner_addresses=owner_addresses,
        subject=message.subject, body=message.body_text, sent_at=message.sent_at, headers=headers,
        labels=message.labels, attachment_types=[a.content_type for a in message.attachments], time_zone=time_zone,
    )


def from_communication(communication: Communication, *, owner_addresses: Iterable[str], time_zone: str
                       ) -> MessageInput:
    """The flow's input. Communications keep no headers, so the header suppressors do not apply
    here; the body, sender, label and subject ones do (see the README's evaluation notes)."""
    participants = list(communication.participants.all())
    sender = next((p for p in participants if p.role == "from"), None)
    own = {*owner_addresses, *(p.address for p in participants if p.is_owner)}
    return from_fields(
        channel=communication.channel, direction=communication.direction,
        sender=sender.address if sender else "", sender_name=sender.display_name if sender else "",
        to=[p.address for p in participants if p.role == "to"], cc=[p.address for p in participants if p.role == "cc"],
        owner_addresses=own, subject=communication.subject, body=communication.body_text,
        sent_at=communication.sent_at, labels=communication.labels or (),
        attachment_types=[a.content_type for a in communication.attachments.all()], time_zone=time_zone,
    )
