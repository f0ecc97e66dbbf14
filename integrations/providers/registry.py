"""The one explicit list of providers: key -> (label, dotted path of the provider class).

``ProviderAccount.provider`` choices are built from it and classes are imported on first
use. Adding a provider is its module plus one line here.
"""
from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from django.utils.module_loading import import_string

if TYPE_CHECKING:
    from integrations.providers.base import MessageProvider

PROVIDERS: dict[str, tuple[str, str]] = {
    "imap": ("IMAP mailbox", "integrations.providers.imap.provider.ImapProvider"),
    "gmail": ("Gmail", "integrations.providers.gmail.provider.GmailProvider"),
    "outlook": ("Outlook / Microsoft 365", "integrations.providers.outlook.provider.OutlookProvider"),
    "mbox": ("Mbox import", "integrations.providers.mbox.MboxProvider"),
    "twilio": ("Twilio (SMS, MMS, WhatsApp)", "integrations.providers.twilio.provider.TwilioProvider"),
}


def provider_choices() -> list[tuple[str, str]]:
    return [(key, label) for key, (label, _path) in PROVIDERS.items()]


@cache
def provider_class(key: str) -> type[MessageProvider]:
    try:
        _label, path = PROVIDERS[key]
    except KeyError:
        raise LookupError(f"No provider {key!r}; known: {', '.join(PROVIDERS)}") from None
    return import_string(path)
