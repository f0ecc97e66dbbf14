"""sync_account: the one entry point for syncing an account.

Used by the scheduler, ``manage.py sync``, the admin's "Sync now", imports and (later)
the API and webhooks. Lifecycle: claim -> authenticate -> backfill or delta -> record.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import logging
import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from conversations.ingest import (
    BatchResult,
    apply_updates,
    forget_refs,
    mark_deleted,
    remove_ref_ranges,
    remove_refs,
)
from crmext.logs import log_context
from integrations.models import ProviderAccount, SyncRun
from integrations.providers.base import (
    AuthError,
    BackfillWindow,
    Batch,
    Capability,
    CursorExpired,
    MessageProvider,
    ProviderError,
    RateLimited,
)
from integrations.providers.registry import provider_class
from integrations.quarantine import store_or_quarantine
from integrations.signals import announce_created

logger = logging.getLogger(__name__)

Progress = Callable[[int, int | None], None]

NOT_SYNCABLE = (ProviderAccount.Status.DISABLED, ProviderAccount.Status.REAUTH_REQUIRED)
# Starts of a historical run in a row that store nothing (errors, dead workers) before it fails.
HISTORICAL_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class SyncOutcome:
    """What happened: "succeeded", "failed", "already_running", "not_syncable", or "yielded" (a
    historical run finished a chunk and is queued again for the next)."""

    status: str
    run_id: int | None = None
    message: str = ""


class LostClaim(Exception):
    """Another worker took the account over (this one was presumed dead): stop writing."""


def backoff_seconds(failures: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter, capped; never sooner than the provider's Retry-After."""
    ceiling = min(settings.SYNC_BACKOFF_MAX_SECONDS, settings.SYNC_BACKOFF_BASE_SECONDS * 2 ** max(0, failures - 1))
    delay = random.uniform(ceiling / 2, ceiling)
    return max(delay, retry_after or 0.0)


def month_chunks(since: dt.datetime, until: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """[since, until) cut at the start of every month (UTC), newest first: a historical run's chunks."""
    since, end = since.astimezone(dt.UTC), until.astimezone(dt.UTC)
    chunks = []
    while end > since:
        start = end.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        if start == end:
            start = (start - dt.timedelta(days=1)).replace(day=1)
        chunks.append((max(start, since), end))
        end = start
    return chunks


def _stop_runs(runs: QuerySet[SyncRun], error: str) -> int:
    """Ends runs whose worker is gone: abandoned, except historical ones, which are re-queued to
    resume from their state (dispatched when the account's next sync ends)."""
    now = timezone.now()
    requeued = runs.filter(kind=SyncRun.Kind.HISTORICAL).update(
        status=SyncRun.Status.QUEUED, queued_at=now, claim_token="", error=error)
    return requeued + runs.update(status=SyncRun.Status.ABANDONED, finished_at=now, error=error)


def _stale_before() -> dt.datetime:
    return timezone.now() - dt.timedelta(seconds=settings.SYNC_STALE_CLAIM_SECONDS)


def claim(account_id: int) -> str | None:
    """Claims the account for this worker with one conditional UPDATE; None if someone holds it.

    A claim older than SYNC_STALE_CLAIM_SECONDS is taken over: its holder stopped
    refreshing it, so it is presumed dead (its writes are fenced off by the token).
    """
    token = uuid.uuid4().hex
    claimed = (
        ProviderAccount.objects.filter(pk=account_id)
        .filter(Q(claim_token="") | Q(claimed_at__lt=_stale_before()))
        .exclude(status__in=NOT_SYNCABLE)
        .update(claim_token=token, claimed_at=timezone.now(), status=ProviderAccount.Status.SYNCING)
    )
    if not claimed:
        return None
    # Runs of a previous holder that died are over, whatever they thought.
    _stop_runs(SyncRun.objects.filter(account_id=account_id, status=SyncRun.Status.RUNNING).exclude(claim_token=token),
               "The worker running this sync stopped without finishing; another worker took over.")
    return token


def _save_claimed(account: ProviderAccount, token: str, **fields: object) -> None:
    """Writes account fields only while this worker still holds the claim (and refreshes it)."""
    fields["claimed_at"] = timezone.now()
    if not ProviderAccount.objects.filter(pk=account.pk, claim_token=token).update(**fields):
        raise LostClaim(f"account {account.pk} was taken over by another worker")
    for name, value in fields.items():
        setattr(account, name, value)


def sync_account(account_id: int, *, full: bool = False, progress: Progress | None = None,
                 run_id: int | None = None) -> SyncOutcome:
    """Syncs one account: backfill if it has no cursor (or ``full``), else the delta since its cursor.

    With ``run_id``, runs that QUEUED run (integrations.tasks.request_sync made it) instead:
    its kind decides what is done, and its row becomes the record of this sync. A run that
    is no longer queued (another worker adopted it) is left alone: "already_running".

    Returns at once with "already_running" when another worker holds the account (a queued
    run then stays queued; the holder dispatches it when done). Every batch is stored in one
    transaction with the cursor or page token it advances, so a crash at any point loses
    nothing and duplicates nothing on the next run.
    """
    account = ProviderAccount.objects.select_related("owner").filter(pk=account_id).first()
    if account is None:
        return SyncOutcome("not_syncable", message=f"No account {account_id}")
    queued: SyncRun | None = None
    if run_id is not None:
        queued = SyncRun.objects.filter(pk=run_id, account_id=account_id).first()
        if queued is None or queued.status != SyncRun.Status.QUEUED:
            state = queued.get_status_display().lower() if queued else "missing"
            return SyncOutcome("already_running", run_id, f"Run {run_id} of account {account_id} is {state}")
    if account.status in NOT_SYNCABLE:
        message = f"{account} is {account.get_status_display().lower()}: {account.last_error}"
        if queued is not None:
            SyncRun.objects.filter(pk=queued.pk, status=SyncRun.Status.QUEUED).update(
                status=SyncRun.Status.FAILED, finished_at=timezone.now(), error=message[:4000])
        return SyncOutcome("not_syncable", run_id, message)
    # What a run that leaves the account's health alone (a historical one) restores on release.
    previous_status = account.status if account.status != ProviderAccount.Status.SYNCING else (
        ProviderAccount.Status.CONNECTED)
    token = claim(account_id)
    if token is None:
        return SyncOutcome("already_running", run_id, f"{account} is being synced by another worker")
    if queued is not None and not _adopt(queued, token):
        ProviderAccount.objects.filter(pk=account_id, claim_token=token).update(
            claim_token="", claimed_at=None, status=previous_status)
        return SyncOutcome("already_running", run_id, f"Run {run_id} was taken by another worker")
    account.refresh_from_db()
    with log_context(account_id=account.pk, provider=account.provider):  # on every record logged during the run
        return _Sync(account, token, progress, previous_status).run(full, queued)


def _adopt(run: SyncRun, token: str) -> bool:
    """Queued -> running under this claim, unless another worker adopted the run first."""
    now = timezone.now()
    fields: dict[str, object] = {"status": SyncRun.Status.RUNNING, "claim_token": token}
    if not run.state:  # its first start (a historical run resumed keeps its first start time)
        fields["started_at"] = now
    if not SyncRun.objects.filter(pk=run.pk, status=SyncRun.Status.QUEUED).update(**fields):
        return False
    for name, value in fields.items():
        setattr(run, name, value)
    return True


class _Sync:
    def __init__(self, account: ProviderAccount, token: str, progress: Progress | None,
                 previous_status: str = ProviderAccount.Status.CONNECTED) -> None:
        self.account = account
        self.token = token
        self.progress = progress
        self.previous_status = previous_status
        self.totals = BatchResult()
        self.fetched = 0
        self.failed = 0
        self.run_row: SyncRun | None = None
        self.provider: MessageProvider | None = None
        self.api_calls_before = 0  # a historical run's calls in its earlier chunks
        self.chunks: list[tuple[dt.datetime, dt.datetime]] = []

    def run(self, full: bool, queued: SyncRun | None = None) -> SyncOutcome:
        account = self.account
        if queued is not None and queued.kind == SyncRun.Kind.HISTORICAL:
            return self._historical(queued)
        if queued is not None:
            full = queued.kind == SyncRun.Kind.FULL_RESYNC
        kind = SyncRun.Kind.FULL_RESYNC if full else (
            SyncRun.Kind.DELTA if account.sync_cursor else SyncRun.Kind.INITIAL
        )
        if queued is None:
            self.run_row = SyncRun.objects.create(account=account, kind=kind, claim_token=self.token)
        else:
            self.run_row = queued
            if queued.kind != kind:  # "sync now" of an account without a cursor is its backfill
                queued.kind = kind
                queued.save(update_fields=["kind"])
        try:
            self.provider = provider_class(account.provider)(account)
            try:
                self._authenticate()
                if full:
                    self._reset_for_resync()
                if account.sync_cursor:
                    self._delta()
                else:
                    self._backfill()
            finally:
                self.provider.close()
        except LostClaim as error:
            logger.warning("Sync of account %s abandoned: %s", account.pk, error)
            self._finish(SyncRun.Status.ABANDONED, str(error))
            return SyncOutcome("failed", self.run_row.pk, str(error))
        except BaseException as error:
            message = self._record_failure(error)
            if not isinstance(error, Exception):
                raise  # KeyboardInterrupt / SystemExit: recorded, then let it stop the process
            return SyncOutcome("failed", self.run_row.pk, message)
        self._record_success()
        return SyncOutcome("succeeded", self.run_row.pk, self._summary())

    def _historical(self, run: SyncRun) -> SyncOutcome:
        """One monthly chunk of a historical run, then the account is yielded: the run goes back
        to QUEUED (the caller dispatches it again) unless that was its last chunk."""
        self.run_row = run
        # Totals carry over from the run's earlier chunks.
        self.fetched, self.failed = run.fetched, run.failed
        self.totals = BatchResult(created=run.created, updated=run.updated, skipped=run.skipped)
        self.api_calls_before = run.api_calls
        self.chunks = chunks = month_chunks(run.since, run.until)
        state = {"chunk": 0, "page_token": None, "attempts": 0, **(run.state or {}), "chunks": len(chunks)}
        state["attempts"] += 1  # starts that stored nothing yet, in a row: a crash loop ends
        if state["attempts"] > HISTORICAL_MAX_ATTEMPTS:
            message = (f"Gave up after {HISTORICAL_MAX_ATTEMPTS} attempts in a row that stored nothing "
                       f"(last: {run.error or 'the worker stopped'}). Request the same range again to resume.")
            self._finish(SyncRun.Status.FAILED, message)
            self._release(status=self.previous_status)
            return SyncOutcome("failed", run.pk, message)
        try:
            self._save_state(state)
            self.provider = provider_class(self.account.provider)(self.account)
            try:
                self._authenticate()
                if state["chunk"] < len(chunks):
                    state = self._chunk(chunks, state)
            finally:
                self.provider.close()
        except LostClaim as error:
            # Whoever took the account over re-queued this run: its row is theirs now.
            logger.warning("Historical sync of account %s stopped: %s", self.account.pk, error)
            return SyncOutcome("failed", run.pk, str(error))
        except BaseException as error:
            message = self._record_failure(error)
            if not isinstance(error, Exception):
                raise
            return SyncOutcome("failed", run.pk, message)
        if state["chunk"] >= len(chunks):
            self._finish(SyncRun.Status.SUCCEEDED, "")
            self._release(status=self.previous_status)
            return SyncOutcome("succeeded", run.pk, self._summary())
        self._finish(SyncRun.Status.QUEUED, "", finished_at=None, claim_token="", queued_at=timezone.now())
        self._release(status=self.previous_status)
        return SyncOutcome("yielded", run.pk, f"{state['chunk']} of {len(chunks)} months done; " + self._summary())

    def _chunk(self, chunks: list[tuple[dt.datetime, dt.datetime]], state: dict) -> dict:
        """Fetches the rest of the current chunk, from its page token; returns the new state.
        Each page is stored in one transaction with the state it moves the run to."""
        assert self.provider is not None
        since, until = chunks[state["chunk"]]
        page_token = state["page_token"]
        while True:
            try:
                batch = self.provider.fetch_range(since, until, page_token)
            except CursorExpired as error:
                if page_token is None:
                    raise  # a chunk from its start cannot have a stale position: a provider bug
                logger.info("Historical sync of account %s restarts %s: %s", self.account.pk, state["month"], error)
                page_token = None
                continue
            if batch.next_page_token is None:
                state = {**state, "chunk": state["chunk"] + 1, "page_token": None, "attempts": 0}
            else:
                state = {**state, "page_token": batch.next_page_token, "attempts": 0}
            with transaction.atomic():
                self._store(batch, origin="historical")
                _save_claimed(self.account, self.token)  # fences the state write below
                self._save_state(state)
            self._report(batch, progress=(state["chunk"], len(chunks)))
            if batch.next_page_token is None:
                return state
            page_token = batch.next_page_token

    def _save_state(self, state: dict) -> None:
        assert self.run_row is not None
        chunks = self.chunks
        # The month being fetched (None once done), for whoever shows the run.
        state["month"] = f"{chunks[state['chunk']][0]:%Y-%m}" if state["chunk"] < len(chunks) else None
        if not SyncRun.objects.filter(pk=self.run_row.pk, claim_token=self.token).update(state=state):
            raise LostClaim(f"run {self.run_row.pk} was taken over by another worker")
        self.run_row.state = state

    # --- phases --------------------------------------------------------------------------

    def _authenticate(self) -> None:
        assert self.provider is not None
        before = dict(self.account.credentials)
        self.provider.authenticate()
        if self.account.credentials != before:
            # Refreshed tokens: persisted (encrypted) at once, so a crash later keeps them.
            self.account.save(update_fields=["credentials", "updated_at"])

    def _reset_for_resync(self) -> None:
        with transaction.atomic():
            forget_refs(self.account)
            _save_claimed(self.account, self.token, sync_cursor={}, backfill_state=None)

    def _backfill(self) -> None:
        assert self.provider is not None
        state = self.account.backfill_state or {}
        page_token, pending_cursor = state.get("page_token"), state.get("cursor")
        days = settings.SYNC_BACKFILL_DAYS
        window = BackfillWindow(since=timezone.now() - dt.timedelta(days=days) if days else None)
        # The next page is fetched (and parsed) in a worker thread while this one is stored:
        # the provider's network waits overlap the database's. One fetch in flight at a time,
        # so at most two pages are in memory; leaving the block waits for it.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill-fetch") as fetcher:
            # Each fetch runs in the caller's context, so its log records carry the account and provider.
            upcoming = fetcher.submit(contextvars.copy_context().run, self.provider.fetch_initial, window, page_token)
            while True:
                try:
                    batch = upcoming.result()
                except CursorExpired as error:
                    if page_token is None:
                        raise  # a fresh backfill cannot have a stale position: a provider bug
                    self._cursor_expired(error)
                    return
                if batch.next_page_token is not None:
                    upcoming = fetcher.submit(
                        contextvars.copy_context().run, self.provider.fetch_initial, window, batch.next_page_token
                    )
                pending_cursor = batch.new_cursor if batch.new_cursor is not None else pending_cursor
                with transaction.atomic():
                    self._store(batch, origin="import" if self.provider.connect is not None
                                and self.provider.connect.kind == "upload" else "backfill")
                    if batch.next_page_token is None:
                        _save_claimed(self.account, self.token, sync_cursor=pending_cursor or {}, backfill_state=None)
                    else:
                        _save_claimed(
                            self.account, self.token,
                            backfill_state={"page_token": batch.next_page_token, "cursor": pending_cursor},
                        )
                self._report(batch)
                if batch.next_page_token is None:
                    return
                page_token = batch.next_page_token
                # Stored: not kept while the next page is awaited (it may hold a big message).
                del batch

    def _delta(self) -> None:
        assert self.provider is not None and self.run_row is not None
        cursor = self.account.sync_cursor
        while True:
            try:
                batch = self.provider.fetch_since(cursor)
            except CursorExpired as error:
                self._cursor_expired(error)
                return
            new_cursor = batch.new_cursor if batch.new_cursor is not None else cursor
            with transaction.atomic():
                self._store(batch, origin="delta")
                _save_claimed(self.account, self.token, sync_cursor=new_cursor)
            self._report(batch)
            cursor = new_cursor
            if batch.next_page_token is None:
                break
        if self.account.consecutive_resyncs:
            _save_claimed(self.account, self.token, consecutive_resyncs=0)

    def _cursor_expired(self, error: CursorExpired) -> None:
        """One full resync per expired cursor; too many in a row disables the account."""
        assert self.run_row is not None
        resyncs = self.account.consecutive_resyncs + 1
        limit = settings.SYNC_MAX_CONSECUTIVE_RESYNCS
        if resyncs > limit:
            raise _Disable(
                f"Disabled after {limit} full resyncs in a row: the provider keeps invalidating the sync "
                f"position ({error}). Check the account at the provider, then re-enable it."
            )
        logger.info("Cursor of account %s expired (%s): full resync %s/%s", self.account.pk, error, resyncs, limit)
        _save_claimed(self.account, self.token, consecutive_resyncs=resyncs)
        self.run_row.kind = SyncRun.Kind.FULL_RESYNC
        self.run_row.save(update_fields=["kind"])
        self._reset_for_resync()
        self._backfill()

    def _store(self, batch: Batch, *, origin: str) -> None:
        """Stores a batch in the caller's transaction; its new communications are announced
        (integrations.signals, ``origin`` saying how they came) once that commits."""
        assert self.provider is not None
        merge = Capability.FOLDER_LABELS in self.provider.capabilities
        # A message that cannot be stored is quarantined: the rest of the batch is stored and
        # the cursor advances, so one poison message never stalls the mailbox.
        stored = store_or_quarantine(self.account, batch.messages, merge_labels=merge)
        result = stored.result
        announce_created(self.account, result.created_ids, origin)
        self.failed += stored.quarantined
        if batch.updates:
            result.updated += apply_updates(
                self.account, [(u.ref, u.is_read, u.is_starred, u.labels) for u in batch.updates]
            )
        if batch.deleted_refs:
            result.updated += remove_refs(self.account, batch.deleted_refs)
        if batch.deleted_ref_ranges:
            result.updated += remove_ref_ranges(
                self.account, [(r.prefix, r.first, r.last) for r in batch.deleted_ref_ranges]
            )
        if batch.deleted_ids:
            result.updated += mark_deleted(self.account, batch.deleted_ids)
        self.totals += result
        self.fetched += len(batch.messages)

    def _report(self, batch: Batch, progress: tuple[int, int] | None = None) -> None:
        """Saves the run's counts and progress (``progress``, else the batch's, else messages)."""
        assert self.run_row is not None and self.provider is not None
        run = self.run_row
        run.fetched, run.created, run.updated, run.skipped, run.failed = (
            self.fetched, self.totals.created, self.totals.updated, self.totals.skipped, self.failed
        )
        run.api_calls = self.api_calls_before + self.provider.api_calls
        done, total = progress or batch.progress or (self.fetched, None)
        run.progress_done, run.progress_total = done, total
        run.save(update_fields=["fetched", "created", "updated", "skipped", "failed", "api_calls", "progress_done",
                                "progress_total"])
        if self.progress is not None:
            self.progress(done, total)

    # --- outcome -------------------------------------------------------------------------

    def _summary(self) -> str:
        summary = (f"{self.fetched} fetched, {self.totals.created} created, {self.totals.updated} updated, "
                   f"{self.totals.skipped} unchanged")
        if self.failed:
            summary += f", {self.failed} quarantined (could not be stored; see Quarantined messages)"
        return summary

    def _finish(self, status: str, error: str, **extra: object) -> None:
        """Records the run's outcome, unless it was handed to another worker meanwhile."""
        assert self.run_row is not None
        fields: dict[str, object] = {
            "status": status, "error": error[:4000], "finished_at": timezone.now(), "fetched": self.fetched,
            "created": self.totals.created, "updated": self.totals.updated, "skipped": self.totals.skipped,
            "failed": self.failed, **extra,
        }
        if self.provider is not None:
            fields["api_calls"] = self.api_calls_before + self.provider.api_calls
        SyncRun.objects.filter(pk=self.run_row.pk, claim_token=self.token).update(**fields)
        for name, value in fields.items():
            setattr(self.run_row, name, value)

    def _release(self, **fields: object) -> None:
        fields.update(claim_token="", claimed_at=None)
        ProviderAccount.objects.filter(pk=self.account.pk, claim_token=self.token).update(**fields)

    def _record_success(self) -> None:
        now = timezone.now()
        self._finish(SyncRun.Status.SUCCEEDED, "")
        self._release(
            status=ProviderAccount.Status.CONNECTED, last_error="", last_synced_at=now, consecutive_failures=0,
            next_sync_at=now + dt.timedelta(seconds=self.account.sync_interval),
        )

    def _record_failure(self, error: BaseException) -> str:
        now = timezone.now()
        failures = self.account.consecutive_failures + 1
        status = ProviderAccount.Status.ERROR
        next_sync_at: dt.datetime | None = now + dt.timedelta(seconds=backoff_seconds(failures))
        if isinstance(error, _Disable):
            status, next_sync_at, message = ProviderAccount.Status.DISABLED, None, str(error)
        elif isinstance(error, AuthError) and error.permanent:
            status, next_sync_at = ProviderAccount.Status.REAUTH_REQUIRED, None
            message = (f"{error} Update the account's credentials (reconnect it) to resume syncing; "
                       "no retries until then.")
        elif isinstance(error, RateLimited):
            # Normal weather, not a fault: stay connected and resume from the saved position.
            status = ProviderAccount.Status.CONNECTED
            next_sync_at = now + dt.timedelta(seconds=backoff_seconds(failures, error.retry_after))
            message = f"Rate limited by the provider; resuming at {next_sync_at:%Y-%m-%d %H:%M:%S} UTC. ({error})"
        elif isinstance(error, ProviderError) and error.permanent:
            next_sync_at = None
            message = f"{error} Fix the account's settings, then sync it again."
        elif isinstance(error, ProviderError):
            message = f"{error} Retrying at {next_sync_at:%Y-%m-%d %H:%M:%S} UTC."
        elif isinstance(error, Exception):
            logger.exception("Sync of account %s failed with an unexpected error", self.account.pk)
            message = f"Internal error ({type(error).__name__}); retrying at {next_sync_at:%Y-%m-%d %H:%M:%S} UTC."
        else:
            message, next_sync_at = f"Interrupted ({type(error).__name__}); it resumes on the next sync.", now
        assert self.run_row is not None
        if self.run_row.kind == SyncRun.Kind.HISTORICAL and next_sync_at is not None:
            # Retried from its state once the account's next sync (at next_sync_at, after the
            # backoff) dispatches it; the account's own health is what the error says.
            self._finish(SyncRun.Status.QUEUED, message, finished_at=None, claim_token="", queued_at=next_sync_at)
        else:
            self._finish(SyncRun.Status.FAILED, message)
        self._release(status=status, last_error=message, consecutive_failures=failures, next_sync_at=next_sync_at)
        return message


class _Disable(Exception):
    """Raised inside a sync when the account must be disabled (too many resyncs)."""


def sweep_stale_runs() -> int:
    """Marks runs whose worker died as abandoned, and frees the accounts they held.

    A running sync refreshes its account's claim after every batch; a claim older than
    SYNC_STALE_CLAIM_SECONDS therefore means its worker is gone. A run queued that long on
    a free account lost its task (a busy account's holder dispatches its queued runs when
    done). Returns runs marked.
    """
    stale = _stale_before()
    now = timezone.now()
    dead_accounts = list(
        ProviderAccount.objects.exclude(claim_token="").filter(claimed_at__lt=stale).values_list("pk", "claim_token")
    )
    marked = 0
    for account_id, token in dead_accounts:
        with transaction.atomic():
            freed = ProviderAccount.objects.filter(pk=account_id, claim_token=token).update(
                claim_token="", claimed_at=None, status=ProviderAccount.Status.ERROR, next_sync_at=now,
                last_error="The last sync stalled (its worker stopped responding); it will be retried.",
            )
            if freed:
                marked += _stop_runs(SyncRun.objects.filter(account_id=account_id, status=SyncRun.Status.RUNNING),
                                     "The worker running this sync stopped responding.")
    # Runs left "running" without any claim behind them (a claim released by a takeover).
    marked += _stop_runs(SyncRun.objects.filter(status=SyncRun.Status.RUNNING, started_at__lt=stale).exclude(
        account__claim_token=F("claim_token")), "The worker running this sync stopped.")
    marked += SyncRun.objects.filter(status=SyncRun.Status.QUEUED, queued_at__lt=stale, account__claim_token="").update(
        status=SyncRun.Status.ABANDONED, finished_at=now,
        error="This sync was queued but never started (its task was lost); request it again.",
    )
    return marked
