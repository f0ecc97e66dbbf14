"""What the apps above ask a provider to be allowed to do for an account, beyond reading it.

Reading is all a connection asks for by default (Gmail connects with gmail.readonly). An app
whose feature needs more, like automation's write-back (Capability.MARK_READ), registers a
*wanter* in its AppConfig.ready: a function from an account to the capabilities the user turned
on for it. integrations never imports those apps (dependencies point automation ->
integrations); it asks ``wanted(account)`` when it starts a sign-in, so a provider's consent
page asks for the wider permission only when a feature the user enabled needs it.

Whether the stored credentials allow a capability is the provider's to say
(``MessageProvider.missing_grant``); ``missing(account)`` combines both: what is wanted and not
granted, each with the provider's message of what the user must do.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from integrations.providers.base import Capability
from integrations.providers.registry import provider_class

if TYPE_CHECKING:
    from integrations.models import ProviderAccount

Wanter = Callable[["ProviderAccount"], Iterable[Capability]]

WANTERS: dict[str, Wanter] = {}


def register(key: str, wanter: Wanter) -> None:
    """Adds (or replaces, by key) a function naming the capabilities an app wants of an account."""
    WANTERS[key] = wanter


def wanted(account: ProviderAccount | None) -> frozenset[Capability]:
    """Every capability some feature the user turned on wants of ``account`` (none for a new one)."""
    if account is None or account.pk is None:
        return frozenset()
    found: set[Capability] = set()
    for wanter in WANTERS.values():
        found.update(wanter(account))
    return frozenset(found)


def missing(account: ProviderAccount) -> dict[Capability, str]:
    """The wanted capabilities the account's credentials do not allow, each with what to do.
    A capability the provider lacks altogether is left out: no sign-in can grant it, and the
    feature reports that itself when it runs."""
    provider = provider_class(account.provider)
    result = {}
    for capability in sorted(wanted(account) & provider.capabilities):
        message = provider.missing_grant(account, capability)
        if message:
            result[capability] = message
    return result
