"""django-q2 tasks: the periodic scheduler tick, the per-account sync task, and request_sync,
the one service behind every "sync now" (API, web pages)."""
from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_q.tasks import async_task

from integrations.models import ProviderAccount, SyncRun
from integrations.providers.base import Capability
from integrations.providers.registry import PROVIDERS, provider_class
from integrations.sync import NOT_SYNCABLE, SyncOutcome, sweep_stale_runs, sync_account

logger = logging.getLogger(__name__)

SCHEDULE_NAME = "crmext: enqueue due syncs"
PUSH_SCHEDULE_NAME = "crmext: renew push subscriptions"
SYNC_TASK = "integrations.tasks.run_sync"


ACTIVE = (SyncRun.Status.QUEUED, SyncRun.Status.RUNNING)
REQUEST_KINDS = {
    "delta": SyncRun.Kind.DELTA,
    "full": SyncRun.Kind.FULL_RESYNC,
    "historical": SyncRun.Kind.HISTORICAL,
}


class NotSyncable(Exception):
    """The account cannot sync now (disabled, or waiting for re-authentication); says why."""


class SyncInProgress(Exception):
    """A run of the account is already queued or running: ``run`` is that SyncRun."""

    def __init__(self, run: SyncRun) -> None:
        super().__init__(f"A sync of this account is already {run.get_status_display().lower()} (run {run.pk}, "
                         f"{run.get_kind_display().lower()}).")
        self.run = run


def run_sync(account_id: int, full: bool = False, run_id: int | None = None) -> str:
    """The queued task: one sync of one account (``run_id``: that queued run), then the account's
    other queued runs are dispatched. Returns the outcome as text for the task log.

    A historical run yields the account after each chunk: if the account's delta is due it
    runs here, before the historical run's next chunk is dispatched, so deltas are never
    starved by a long historical sync.
    """
    outcome: SyncOutcome = sync_account(account_id, full=full, run_id=run_id)
    if outcome.status == "already_running" and run_id is None:
        # The scheduled sync did not happen. If the holder is a historical run (which leaves
        # next_sync_at alone), the delta is still due: un-lease it, so that the holder's next
        # yield runs it. Any other holder sets next_sync_at itself when it ends.
        ProviderAccount.objects.filter(pk=account_id, next_sync_at__gt=timezone.now()).exclude(
            claim_token="").update(next_sync_at=timezone.now())
    text = f"{outcome.status}: {outcome.message}"
    if outcome.status == "yielded" and delta_due(account_id):
        between = sync_account(account_id)
        text += f" (then the due delta: {between.status}: {between.message})"
    if outcome.status != "already_running":
        dispatch_queued_runs(account_id)
    return text


def delta_due(account_id: int) -> bool:
    """Whether the account's scheduled sync is due (and it can sync)."""
    return ProviderAccount.objects.filter(pk=account_id, next_sync_at__lte=timezone.now()).exclude(
        status__in=NOT_SYNCABLE).exists()


def request_sync(account: ProviderAccount, *, kind: str, since: dt.date | dt.datetime | None = None,
                 until: dt.date | dt.datetime | None = None, dispatch: bool = True) -> SyncRun:
    """Queues a sync of ``account`` and returns its SyncRun (status "queued").

    ``kind``: "delta" (what the scheduler does: the delta, or the backfill while there is no
    cursor), "full" (forget the cursor and refetch everything) or "historical" (the messages
    received in [since, until), dates or aware datetimes, leaving the delta cursor alone; the
    provider needs Capability.DATE_RANGE). A date means midnight of that day in TIME_ZONE.

    Raises ValueError for a bad kind or range, NotSyncable for an account that is disabled or
    needs re-authentication, SyncInProgress when a run of the account is queued or running.
    The check and the insert are made under a write lock on the account row, so two requests
    at once queue one run. The task is enqueued once the transaction commits (``dispatch=False``:
    not at all, for a caller that runs it inline with ``sync_account(..., run_id=run.pk)``).
    """
    run_kind = REQUEST_KINDS.get(kind)
    if run_kind is None:
        raise ValueError(f"Unknown sync kind {kind!r}; use one of: {', '.join(REQUEST_KINDS)}.")
    if run_kind == SyncRun.Kind.HISTORICAL:
        if since is None or until is None:
            raise ValueError("A historical sync needs both since and until.")
        since, until = _moment(since, "since"), _moment(until, "until")
        if since >= until:
            raise ValueError(f"A historical sync needs since before until (got {since:%Y-%m-%d %H:%M} "
                             f"to {until:%Y-%m-%d %H:%M} UTC).")
        provider = provider_class(account.provider)
        if Capability.DATE_RANGE not in provider.capabilities:
            raise ValueError(f"The {provider.display_name} provider ({account.provider}) cannot fetch a date "
                             "range, so it has no historical sync; run a full sync instead.")
    elif since is not None or until is not None:
        raise ValueError(f"since and until are for historical syncs only, not {kind!r}.")
    with transaction.atomic():
        # A write first: it locks the account row (PostgreSQL) or the database (SQLite) until
        # commit, so a second request waits here and then sees this one's run.
        locked = ProviderAccount.objects.filter(pk=account.pk).exclude(status__in=NOT_SYNCABLE).update(
            status=F("status"))
        if not locked:
            account.refresh_from_db(fields=["status", "last_error"])
            raise NotSyncable(f"{account} cannot sync now ({account.get_status_display().lower()})"
                              + (f": {account.last_error}" if account.last_error else "."))
        active = SyncRun.objects.filter(account_id=account.pk, status__in=ACTIVE).order_by("-pk").first()
        if active is not None:
            raise SyncInProgress(active)
        run = SyncRun.objects.create(
            account=account, kind=run_kind, status=SyncRun.Status.QUEUED, queued_at=timezone.now(),
            since=since, until=until, state=_resumable_state(account, run_kind, since, until),
        )
        if dispatch:
            transaction.on_commit(lambda: _enqueue_run(account.pk, run.pk))
    return run


def _moment(value: dt.date | dt.datetime, name: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        if timezone.is_naive(value):
            raise ValueError(f"{name} must be timezone-aware (or a date).")
        return value.astimezone(dt.UTC)
    if isinstance(value, dt.date):
        return timezone.make_aware(dt.datetime.combine(value, dt.time.min)).astimezone(dt.UTC)
    raise ValueError(f"{name} must be a date or an aware datetime, not {type(value).__name__}.")


def _resumable_state(account: ProviderAccount, kind: str, since: dt.datetime | None,
                     until: dt.datetime | None) -> dict | None:
    """A historical run of the same range that failed or was abandoned midway is resumed
    where it stopped: its state (chunk and page token) is carried over, its attempts not."""
    if kind != SyncRun.Kind.HISTORICAL:
        return None
    stopped = (SyncRun.objects.filter(account_id=account.pk, kind=kind, since=since, until=until,
                                      status__in=(SyncRun.Status.FAILED, SyncRun.Status.ABANDONED))
               .exclude(state=None).order_by("-pk").first())
    if stopped is None or not isinstance(stopped.state, dict):
        return None
    return {**stopped.state, "attempts": 0}


def _enqueue_run(account_id: int, run_id: int) -> None:
    async_task(SYNC_TASK, account_id, False, run_id, task_name=f"sync account {account_id} (run {run_id})",
               group="sync")


def dispatch_queued_runs(account_id: int) -> int:
    """Enqueues the task of every queued run of the account that is due (not waiting out a
    retry delay). Called when a sync of the account ends; a task that finds the run already
    adopted does nothing. Returns the number enqueued."""
    now = timezone.now()
    dispatched = 0
    for run_id, queued_at in list(SyncRun.objects.filter(account_id=account_id, status=SyncRun.Status.QUEUED,
                                                          queued_at__lte=now).values_list("pk", "queued_at")):
        if SyncRun.objects.filter(pk=run_id, status=SyncRun.Status.QUEUED, queued_at=queued_at).update(
                queued_at=now):
            _enqueue_run(account_id, run_id)
            dispatched += 1
    return dispatched


def enqueue_due_syncs() -> int:
    """The periodic tick: sweeps dead runs, then queues every account whose next sync is due.

    Each account is leased with a conditional UPDATE of next_sync_at before it is queued,
    so overlapping ticks (several qcluster hosts) queue it once; if the task is lost, the
    lease expires and a later tick queues it again. Returns the number queued.
    """
    sweep_stale_runs()
    now = timezone.now()
    lease = now + dt.timedelta(seconds=settings.SYNC_STALE_CLAIM_SECONDS)
    due = (
        ProviderAccount.objects.filter(next_sync_at__lte=now)
        .exclude(status__in=NOT_SYNCABLE)
        .values_list("pk", "next_sync_at")
    )
    queued = 0
    for account_id, next_sync_at in list(due):
        if ProviderAccount.objects.filter(pk=account_id, next_sync_at=next_sync_at).update(next_sync_at=lease):
            async_task(SYNC_TASK, account_id, False, task_name=f"sync account {account_id}", group="sync")
            queued += 1
    if queued:
        logger.info("Queued %s due account sync(s)", queued)
    return queued


def renew_push() -> int:
    """The hourly push tick: asks every provider with Capability.PUSH to renew the subscriptions
    (Gmail watches, Graph subscriptions) of its accounts that lapse soon (MessageProvider.renew_push).
    One provider's failure is logged and does not stop the others. Returns the number renewed."""
    renewed = 0
    for key in PROVIDERS:
        provider = provider_class(key)
        if Capability.PUSH not in provider.capabilities:
            continue
        try:
            renewed += provider.renew_push()
        except Exception:  # the other providers still renew; the schedule runs again in an hour
            logger.exception("Renewing the push subscriptions of %s failed", key)
    return renewed


def ensure_schedule(**kwargs: object) -> None:
    """Creates (or repairs) the periodic schedules: the sync tick every minute, the push
    renewal every hour. Connected to post_migrate."""
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={
            "func": "integrations.tasks.enqueue_due_syncs",
            "schedule_type": Schedule.MINUTES,
            "minutes": 1,
            "repeats": -1,
        },
    )
    Schedule.objects.update_or_create(
        name=PUSH_SCHEDULE_NAME,
        defaults={
            "func": "integrations.tasks.renew_push",
            "schedule_type": Schedule.HOURLY,
            "repeats": -1,
        },
    )
