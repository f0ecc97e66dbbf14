"""Account services shared by commands, admin, the connectors API and (later) web pages.

Connecting: ``connect_account`` tests a login with the settings and credentials given and
saves both only if it succeeds; ``update_account`` applies an edit the same way (new
connection settings need credentials). Stopping: ``disable_account``,
``disconnect_account`` (credentials erased at once; with ``purge``, ``purge_account`` deletes
the communications in the background) and ``unlock_account`` for a stuck sync.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Count, F, Max, Min, QuerySet
from django.utils import timezone
from django_q.tasks import async_task

from conversations.models import Communication, Conversation
from integrations.models import ProviderAccount, SyncRun
from integrations.providers.connect import connect_method
from integrations.providers.registry import provider_class

PURGE_TASK = "integrations.accounts.purge_account"
PURGE_CHUNK = 1000  # communications deleted per transaction


class CredentialsRequired(ValueError):
    """New connection settings came without the credentials to use with them."""


def check_credentials(account: ProviderAccount) -> None:
    """Logs in with the account's (possibly unsaved) settings; raises the provider's AuthError etc."""
    with provider_class(account.provider)(account) as provider:
        provider.authenticate()


# What connecting or reconnecting may write. Never the claim, cursor or backfill position: a
# sync may be running, and a full save() from this (older) copy would overwrite its progress.
_CONNECTION_FIELDS = ["owner", "provider", "display_name", "external_address", "config", "credentials", "status",
                      "last_error", "consecutive_failures", "next_sync_at", "updated_at"]


@transaction.atomic
def save_credentials(account: ProviderAccount, credentials: dict[str, Any], *,
                     also: Iterable[str] = ()) -> ProviderAccount:
    """Stores new credentials (with any new connection settings already set on ``account``).

    An account waiting for re-authentication becomes syncable again. Safe while a sync
    of the account runs: only connection fields are written, and the fields named in ``also``.
    """
    account.credentials = credentials
    if account.status in (ProviderAccount.Status.REAUTH_REQUIRED, ProviderAccount.Status.ERROR):
        account.status = ProviderAccount.Status.CONNECTED
        account.last_error = ""
    account.consecutive_failures = 0
    account.next_sync_at = timezone.now()
    account.save(update_fields=None if account.pk is None else [*_CONNECTION_FIELDS, *also])
    return account


def connect_account(account: ProviderAccount, credentials: dict[str, Any], *,
                    also: Iterable[str] = ()) -> ProviderAccount:
    """Tests a login with ``credentials`` and the account's (possibly unsaved) settings, then saves both.

    The provider's error (AuthError for a refused login, another ProviderError for a server
    that cannot be reached or a refused setting) is raised before anything is saved.
    """
    account.credentials = credentials
    check_credentials(account)
    return save_credentials(account, credentials, also=also)


def same_account(owner: Any, provider: str, config: dict[str, Any]) -> ProviderAccount | None:
    """The owner's account of ``provider`` for the mailbox ``config`` names (its identity_keys), if any."""
    keys = connect_method(provider).identity_keys
    if not keys:
        return None
    return ProviderAccount.objects.filter(
        owner=owner, provider=provider, **{f"config__{key}": config.get(key) for key in keys}
    ).first()


def update_account(account: ProviderAccount, changes: dict[str, Any], *, credentials: dict[str, Any] | None = None,
                   enabled: bool | None = None, by: Any = None) -> ProviderAccount:
    """Applies an edit of ``account`` (model field -> new value), all or nothing.

    A change of the connection settings (models.CONNECTION_KEYS of ``config``) must come with
    credentials (else CredentialsRequired): the stored password is never sent to a server it
    was not entered for. Credentials are tested with the new settings before anything is
    saved (the provider's error is raised), and lift reauth_required. ``enabled`` False
    disables the account (disable_account); True re-enables it as enable_accounts does, and
    needs credentials stored or given when the provider uses any.
    """
    if enabled and not (credentials or account.credentials) and connect_method(account.provider).kind in (
        "credentials", "oauth"
    ):
        raise CredentialsRequired("This account has no credentials (it was disconnected or they were removed): "
                                  "enter them to re-enable it.")
    before = account.connection_settings()
    for name, value in changes.items():
        setattr(account, name, value)
    if credentials is None and account.connection_settings() != before:
        changed = sorted(k for k, v in account.connection_settings().items() if before.get(k) != v)
        raise CredentialsRequired(f"Changing {', '.join(changed)} needs the credentials to use with the new "
                                  "settings: they are tested before anything is saved.")
    if credentials is not None:
        account.credentials = credentials
        check_credentials(account)  # outside the transaction: a login may take a while
    with transaction.atomic():
        if credentials is not None:
            save_credentials(account, credentials, also=changes)
        elif changes:
            account.save(update_fields=[*changes, "updated_at"])
        if enabled is False:
            disable_account(account, f"Disabled by {by}; re-enable it to resume syncing." if by else
                            "Disabled; re-enable it to resume syncing.")
        elif enabled is True:
            enable_accounts(ProviderAccount.objects.filter(pk=account.pk))
    account.refresh_from_db()
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


def save_signed_in_account(owner: Any, provider: str, address: str, credentials: dict[str, Any], *,
                           account: ProviderAccount | None = None, keep: tuple[str, ...] = ()) -> ProviderAccount:
    """Creates or updates ``owner``'s ``provider`` account of ``address`` with new ``credentials``:
    what an OAuth sign-in (or a delegated enrollment) ends with.

    Upserted by (owner, provider, address): an existing account (``account``, the one being
    reconnected, or the owner's account of that address) is reused. Storing credentials lifts
    reauth_required and error (save_credentials); a disabled (disconnected) account is enabled
    again, since signing in is asking for it to be connected. ``keep`` names credential keys of
    an existing account that survive the new credentials (Outlook's push secret).
    """
    with transaction.atomic():
        if account is None:
            account = same_account(owner, provider, {"email": address})
        if account is None:
            account = ProviderAccount(owner=owner, provider=provider, display_name=address, external_address=address,
                                      config={"email": address})
            return save_credentials(account, credentials)
        account = ProviderAccount.objects.select_for_update().get(pk=account.pk)
        kept = {key: value for key, value in (account.credentials or {}).items() if key in keep}
        account.config = {**(account.config or {}), "email": address}
        account.external_address = address
        save_credentials(account, {**kept, **credentials})
        enable_accounts(ProviderAccount.objects.filter(pk=account.pk))
    account.refresh_from_db()
    return account


def disable_account(account: ProviderAccount, reason: str, **fields: Any) -> None:
    """Stops syncing the account until it is re-enabled.

    Its claim is released too: a sync running now loses it and stops at its next batch
    (its run is abandoned), instead of finishing and marking the account connected again.
    """
    ProviderAccount.objects.filter(pk=account.pk).update(
        status=ProviderAccount.Status.DISABLED, next_sync_at=None, last_error=reason, claim_token="",
        claimed_at=None, updated_at=timezone.now(), **fields,
    )


@transaction.atomic
def disconnect_account(account: ProviderAccount, *, purge: bool = False, by: Any = None) -> None:
    """Erases the account's credentials at once and stops its syncs; its communications stay.

    The account row stays too (disabled, no credentials): communications belong to it.
    Entering credentials and re-enabling connects it again. With ``purge`` the
    communications are deleted as well, then the account itself, by a background task
    (purge_account) queued once this transaction commits.
    """
    when = timezone.now().strftime("%Y-%m-%d %H:%M UTC")
    reason = (f"Disconnected{f' by {by}' if by else ''} on {when}: its credentials were erased. "
              + ("Its communications are being deleted." if purge else
                 "Its communications are kept; enter the credentials again and re-enable it to reconnect."))
    # Not through save(): the credentials field is written on its own, whatever the copy in hand holds.
    disable_account(account, reason, credentials={})
    if purge:
        transaction.on_commit(lambda: async_task(PURGE_TASK, account.pk, task_name=f"purge account {account.pk}",
                                                 group="purge"))


def purge_account(account_id: int) -> int:
    """The background half of a purge: deletes the account's communications, then the account.

    A chunk of PURGE_CHUNK communications per transaction, so a big mailbox never holds
    long locks; conversations left empty are deleted, the others' counters recomputed.
    Safe to run again after a crash. Returns the communications deleted.
    """
    deleted = 0
    while True:
        with transaction.atomic():
            chunk = list(Communication.objects.filter(account_id=account_id).order_by()
                         .values_list("pk", "conversation_id", "deleted_at")[:PURGE_CHUNK])
            if not chunk:
                break
            Communication.objects.filter(pk__in=[pk for pk, _conversation, _deleted in chunk]).delete()
            live = sum(1 for _pk, _conversation, deleted_at in chunk if deleted_at is None)
            ProviderAccount.objects.filter(pk=account_id).update(communication_count=F("communication_count") - live)
            _recount_conversations({conversation for _pk, conversation, _deleted in chunk})
            deleted += len(chunk)
    ProviderAccount.objects.filter(pk=account_id).delete()
    return deleted


def recount_communications(account_ids: Iterable[int] | None = None) -> int:
    """Sets each account's communication_count from its rows (a repair; ingest keeps it current).

    Returns the accounts whose count was wrong.
    """
    accounts = ProviderAccount.objects.all() if account_ids is None else ProviderAccount.objects.filter(
        pk__in=list(account_ids))
    fixed = 0
    for account_id in accounts.values_list("pk", flat=True).iterator():
        with transaction.atomic():
            # Locked, so a batch being stored cannot move the count between counting and writing.
            stored = (ProviderAccount.objects.select_for_update().filter(pk=account_id)
                      .values_list("communication_count", flat=True).first())
            if stored is None:  # deleted meanwhile
                continue
            actual = Communication.objects.filter(account_id=account_id, deleted_at__isnull=True).count()
            if actual != stored:
                ProviderAccount.objects.filter(pk=account_id).update(communication_count=actual)
                fixed += 1
    return fixed


def _recount_conversations(conversation_ids: set[int]) -> None:
    counts = {
        row["conversation_id"]: row
        for row in Communication.objects.filter(conversation_id__in=conversation_ids).order_by()
        .values("conversation_id").annotate(count=Count("pk"), first=Min("sent_at"), last=Max("sent_at"))
    }
    Conversation.objects.filter(pk__in=conversation_ids - set(counts)).delete()
    conversations = list(Conversation.objects.filter(pk__in=counts))
    for conversation in conversations:
        row = counts[conversation.pk]
        conversation.message_count, conversation.first_message_at, conversation.last_message_at = (
            row["count"], row["first"], row["last"]
        )
    Conversation.objects.bulk_update(conversations, ["message_count", "first_message_at", "last_message_at"])


@transaction.atomic
def unlock_account(account: ProviderAccount, *, by: Any = None) -> int:
    """Frees an account whose sync is stuck; returns the runs marked abandoned.

    The claim is cleared (a worker still alive loses it and stops at its next batch), an
    account shown as syncing is retried at once, and its running runs are marked abandoned.
    Queued runs stay queued.
    """
    now = timezone.now()
    who = f" by {by}" if by else ""
    ProviderAccount.objects.filter(pk=account.pk).update(claim_token="", claimed_at=None)
    ProviderAccount.objects.filter(pk=account.pk, status=ProviderAccount.Status.SYNCING).update(
        status=ProviderAccount.Status.ERROR, next_sync_at=now, updated_at=now,
        last_error=f"The running sync was stopped (unlocked{who}); it will be retried.",
    )
    return SyncRun.objects.filter(account_id=account.pk, status=SyncRun.Status.RUNNING).update(
        status=SyncRun.Status.ABANDONED, finished_at=now, error=f"Stopped: the account was unlocked{who}.",
    )
