"""The provider-agnostic boundary: every provider turns what it fetched into ParsedMessage.

Nothing after this point knows which provider a message came from.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class Channel(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    MMS = "mms"
    CHAT = "chat"


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
