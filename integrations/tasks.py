"""django-q2 tasks: the periodic scheduler tick and the per-account sync task."""
from __future__ import annotations

import datetime as dt
import logging

from django.conf import settings
from django.utils import timezone
from django_q.tasks import async_task

from integrations.models import ProviderAccount
from integrations.sync import NOT_SYNCABLE, SyncOutcome, sweep_stale_runs, sync_account

logger = logging.getLogger(__name__)

SCHEDULE_NAME = "crmext: enqueue due syncs"
SYNC_TASK = "integrations.tasks.run_sync"


def run_sync(account_id: int, full: bool = False) -> str:
    """The queued task: one sync of one account. Returns the outcome as text for the task log."""
    outcome: SyncOutcome = sync_account(account_id, full=full)
    return f"{outcome.status}: {outcome.message}"


def enqueue_sync(account_id: int, *, full: bool = False) -> bool:
    """Queues a sync now (admin "Sync now", later the API). False if the account cannot sync."""
    if ProviderAccount.objects.filter(pk=account_id, status__in=NOT_SYNCABLE).exists():
        return False
    async_task(SYNC_TASK, account_id, full, task_name=f"sync account {account_id}", group="sync")
    return True


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


def ensure_schedule(**kwargs: object) -> None:
    """Creates (or repairs) the single periodic schedule; connected to post_migrate."""
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
