"""Small builders for ParsedMessage in tests."""
from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from conversations.messages import Address, AddressKind, Channel, ParsedMessage

_ids = itertools.count(1)


def email(value: str, name: str = "") -> Address:
    return Address(AddressKind.EMAIL, value, name)


def phone(value: str) -> Address:
    return Address(AddressKind.PHONE, value)


def message(**fields: Any) -> ParsedMessage:
    number = next(_ids)
    defaults: dict[str, Any] = {
        "provider_message_id": f"pm-{number}",
        "rfc_message_id": f"msg-{number}@test.example",
        "sender": email("carol@acme.com", "Carol Jones"),
        "to": (email("alice@example.org", "Alice"),),
        "subject": f"Subject {number}",
        "body_text": f"Body of message {number}",
        "sent_at": dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC) + dt.timedelta(minutes=number),
        "channel": Channel.EMAIL,
    }
    defaults.update(fields)
    return ParsedMessage(**defaults)
