"""The provider-agnostic boundary: every provider turns what it fetched into ParsedMessage.

Nothing after this point knows which provider a message came from.
"""
from __future__ import annotations

import datetime as dt
import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    MMS = "mms"
    CHAT = "chat"
    WHATSAPP = "whatsapp"  # WhatsApp through Twilio's Messages API


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class AddressKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"


@dataclass(frozen=True, slots=True)
class Address:
    """A normalised participant address: lower-cased e-mail or E.164 phone number."""

    kind: AddressKind
    value: str
    display_name: str = ""


@dataclass(frozen=True, slots=True)
class ParsedAttachment:
    """One attachment. Either ``content`` holds the bytes or ``fetch`` returns them on demand.

    ``sha256`` and ``size`` describe the content; when only a lazy ``fetch`` is given
    they may be empty/None and are computed when the content is stored.
    """

    filename: str
    content_type: str
    size: int | None
    sha256: str = ""
    content: bytes | None = None
    fetch: Callable[[], bytes] | None = None
    content_id: str = ""
    inline: bool = False

    @classmethod
    def from_bytes(cls, filename: str, content_type: str, content: bytes, **extra: object) -> ParsedAttachment:
        return cls(
            filename=filename,
            content_type=content_type,
            size=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            content=content,
            **extra,  # type: ignore[arg-type]
        )


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """One communication as a provider parsed it. Timestamps are aware UTC datetimes.

    ``provider_message_id`` is unique within one account and is what ingest is
    idempotent on. ``warnings`` lists what could not be read (a garbage Date header,
    an unknown charset...): parsing never fails, it records and carries on.
    ``ref`` is where the provider keeps this copy (e.g. IMAP "folder:uidvalidity:uid"),
    for providers whose one message can sit in several places; it is how later flag
    changes and expunges find the message.
    """

    provider_message_id: str
    channel: Channel = Channel.EMAIL
    direction: Direction = Direction.INBOUND
    rfc_message_id: str = ""
    provider_thread_id: str = ""
    sender: Address | None = None
    to: tuple[Address, ...] = ()
    cc: tuple[Address, ...] = ()
    bcc: tuple[Address, ...] = ()
    subject: str | None = None
    body_text: str = ""
    body_html: str = ""
    sent_at: dt.datetime | None = None
    received_at: dt.datetime | None = None
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    attachments: tuple[ParsedAttachment, ...] = ()
    delivery_status: str = ""
    raw_size: int | None = None
    is_read: bool | None = None
    is_starred: bool | None = None
    ref: str = ""
    warnings: tuple[str, ...] = field(default=())

    def participants(self) -> list[tuple[str, Address]]:
        """(role, address) pairs in a stable order: from, to, cc, bcc."""
        pairs: list[tuple[str, Address]] = []
        if self.sender is not None:
            pairs.append(("from", self.sender))
        pairs.extend(("to", a) for a in self.to)
        pairs.extend(("cc", a) for a in self.cc)
        pairs.extend(("bcc", a) for a in self.bcc)
        return pairs


# --- a JSON copy, for messages kept aside (quarantine) and retried later ------------------

def message_to_json(message: ParsedMessage, *, max_bytes: int) -> tuple[dict[str, object], bool]:
    """A JSON-safe copy of ``message`` of roughly ``max_bytes`` at most; True if it had to be cut.

    Attachment contents are kept (base64) only while they fit; bodies are cut last. The
    copy is enough to store the message again with message_from_json.
    """
    data: dict[str, object] = {}
    for name in ParsedMessage.__dataclass_fields__:
        value = getattr(message, name)
        if name in ("sender", "to", "cc", "bcc"):
            value = _address_json(value) if name == "sender" else [_address_json(a) for a in value]
        elif name == "attachments":
            continue
        elif isinstance(value, dt.datetime):
            value = value.isoformat()
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, StrEnum):
            value = value.value
        data[name] = value
    truncated = False
    room = max_bytes - len(data.get("body_text") or "") - len(data.get("body_html") or "")  # type: ignore[arg-type]
    attachments = []
    for attachment in message.attachments:
        entry: dict[str, object] = {
            "filename": attachment.filename, "content_type": attachment.content_type, "size": attachment.size,
            "sha256": attachment.sha256, "content_id": attachment.content_id, "inline": attachment.inline,
        }
        content = attachment.content
        if content is not None and len(content) * 4 // 3 < room:
            entry["content"] = base64.b64encode(content).decode("ascii")
            room -= len(entry["content"])  # type: ignore[arg-type]
        elif content is not None or attachment.fetch is not None:
            truncated = True
        attachments.append(entry)
    data["attachments"] = attachments
    for name in ("body_html", "body_text"):
        text = str(data.get(name) or "")
        if len(text) > max_bytes // 2:
            data[name], truncated = text[: max_bytes // 2], True
    return data, truncated


def message_from_json(data: dict[str, object]) -> ParsedMessage:
    """The ParsedMessage of a message_to_json copy (attachments whose content was cut keep their metadata)."""
    fields = dict(data)
    for name in ("sent_at", "received_at"):
        if fields.get(name):
            fields[name] = dt.datetime.fromisoformat(str(fields[name]))
    fields["channel"] = Channel(fields.get("channel", Channel.EMAIL))
    fields["direction"] = Direction(fields.get("direction", Direction.INBOUND))
    fields["sender"] = _address_from_json(fields.get("sender"))  # type: ignore[arg-type]
    for name in ("to", "cc", "bcc"):
        fields[name] = tuple(_address_from_json(a) for a in fields.get(name) or [])  # type: ignore[union-attr]
    for name in ("references", "labels", "warnings"):
        fields[name] = tuple(fields.get(name) or [])  # type: ignore[arg-type]
    attachments = []
    for entry in fields.pop("attachments", None) or []:  # type: ignore[union-attr]
        entry = dict(entry)
        content = entry.pop("content", None)
        attachments.append(ParsedAttachment(
            content=base64.b64decode(content) if content is not None else None, **entry
        ))
    fields["attachments"] = tuple(attachments)
    known = ParsedMessage.__dataclass_fields__
    return ParsedMessage(**{k: v for k, v in fields.items() if k in known})  # type: ignore[arg-type]


def _address_json(address: Address | None) -> dict[str, str] | None:
    if address is None:
        return None
    return {"kind": address.kind.value, "value": address.value, "display_name": address.display_name}


def _address_from_json(data: dict[str, str] | None) -> Address | None:
    if not data:
        return None
    return Address(AddressKind(data["kind"]), data["value"], data.get("display_name", ""))
