"""Account services shared by commands, admin and (later) web pages."""
from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from integrations.models import ProviderAccount
from integrations.providers.registry import provider_class


def check_credentials(account: ProviderAccount) -> None:
    """Logs in with the account's (possibly unsaved) settings; raises the provider's AuthError etc."""
    with provider_class(account.provider)(account) as provider:
        provider.authenticate()


# What connecting or reconnecting may write. Never the claim, cursor or backfill position: a
# sync may be running, and a full save() from this (older) copy would overwrite its progress.
_CONNECTION_FIELDS = ["owner", "provider", "display_name", "external_address", "config", "credentials", "status",
                      "last_error", "consecutive_failures", "next_sync_at", "updated_at"]


@transaction.atomic
def save_credentials(account: ProviderAccount, credentials: dict[str, Any]) -> ProviderAccount:
    """Stores new credentials (with any new connection settings already set on ``account``).

    An account waiting for re-authentication becomes syncable again. Safe while a sync
    of the account runs: only connection fields are written.
    """
    account.credentials = credentials
    if account.status in (ProviderAccount.Status.REAUTH_REQUIRED, ProviderAccount.Status.ERROR):
        account.status = ProviderAccount.Status.CONNECTED
        account.last_error = ""
    account.consecutive_failures = 0
    account.next_sync_at = timezone.now()
    account.save(update_fields=None if account.pk is None else _CONNECTION_FIELDS)
    return account


def enable_accounts(accounts: QuerySet[ProviderAccount]) -> int:
    """Makes disabled or errored accounts syncable again, from a clean slate of counters.

    Accounts waiting for re-authentication are left alone: only new credentials help them.
    """
    return accounts.filter(
        status__in=[ProviderAccount.Status.DISABLED, ProviderAccount.Status.ERROR]
    ).update(
        status=ProviderAccount.Status.CONNECTED, last_error="", consecutive_failures=0, consecutive_resyncs=0,
        next_sync_at=timezone.now(),
    )
