"""The sync engine's lifecycle with a scripted provider: claims, backoff, health, sweeping."""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest
from django.utils import timezone
from django_q.models import OrmQ, Schedule

from conversations.models import Communication
from integrations import tasks
from integrations.models import ProviderAccount, SyncRun
from integrations.providers import registry
from integrations.providers.base import (
    AuthError,
    BackfillWindow,
    Batch,
    MessageProvider,
    PermanentError,
    RateLimited,
    TransientError,
)
from integrations.sync import backoff_seconds, claim, sweep_stale_runs, sync_account
from tests.factories import message

pytestmark = pytest.mark.django_db


class ScriptedProvider(MessageProvider):
    """Plays back whatever the test put in ``script`` (a list of callables or exceptions)."""

    key = "scripted"
    display_name = "Scripted"
    script: list[Callable[[], Batch] | BaseException] = []
    refreshed_token: str | None = None

    def authenticate(self) -> None:
        if self.refreshed_token:
            self.account.credentials = {**self.account.credentials, "access_token": self.refreshed_token}

    def _next(self) -> Batch:
        self.api_calls += 1
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step()

    def fetch_initial(self, window: BackfillWindow, page_token: dict | None) -> Batch:
        return self._next()

    def fetch_since(self, cursor: dict) -> Batch:
        return self._next()


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setitem(registry.PROVIDERS, "scripted", ("Scripted", f"{__name__}.ScriptedProvider"))
    registry.provider_class.cache_clear()
    ScriptedProvider.script = []
    ScriptedProvider.refreshed_token = None
    yield ScriptedProvider
    registry.provider_class.cache_clear()


@pytest.fixture
def scripted_account(user, scripted):
    return ProviderAccount.objects.create(owner=user, provider="scripted", display_name="S",
                                          credentials={"access_token": "old"})


def page(n: int = 1, *, more: bool = False, cursor: dict | None = None) -> Callable[[], Batch]:
    return lambda: Batch(messages=[message() for _ in range(n)], next_page_token={"p": 1} if more else None,
                         new_cursor=cursor or {"c": 1})


def test_refreshed_tokens_are_saved_encrypted(scripted_account, scripted):
    scripted.refreshed_token = "new-token"
    scripted.script = [page()]
    sync_account(scripted_account.pk)
    assert ProviderAccount.objects.get(pk=scripted_account.pk).credentials["access_token"] == "new-token"


def test_rate_limit_backs_off_honouring_retry_after_and_resumes(scripted_account, scripted):
    scripted.script = [page(2, more=True), RateLimited("429 Too Many Requests", retry_after=900)]
    outcome = sync_account(scripted_account.pk)
    account = ProviderAccount.objects.get(pk=scripted_account.pk)
    assert outcome.status == "failed"
    assert account.status == "connected"  # rate limits are weather, not a fault
    assert "Rate limited" in account.last_error
    assert account.next_sync_at >= timezone.now() + dt.timedelta(seconds=890)
    assert account.backfill_state == {"page_token": {"p": 1}, "cursor": {"c": 1}}
    scripted.script = [page(3)]
    assert sync_account(scripted_account.pk).status == "succeeded"
    assert Communication.objects.count() == 5


def test_transient_errors_back_off_exponentially_with_a_cap(scripted_account, scripted, settings):
    settings.SYNC_BACKOFF_BASE_SECONDS = 60
    settings.SYNC_BACKOFF_MAX_SECONDS = 600
    delays = []
    for _ in range(6):
        scripted.script = [TransientError("connection reset")]
        before = timezone.now()
        sync_account(scripted_account.pk)
        account = ProviderAccount.objects.get(pk=scripted_account.pk)
        delays.append((account.next_sync_at - before).total_seconds())
    assert account.status == "error" and account.consecutive_failures == 6
    assert "connection reset" in account.last_error and "Retrying at" in account.last_error
    assert 30 <= delays[0] <= 61
    assert 240 <= delays[3] <= 481
    assert all(d <= 601 for d in delays)
    scripted.script = [page()]
    sync_account(scripted_account.pk)
    account.refresh_from_db()
    assert (account.status, account.consecutive_failures, account.last_error) == ("connected", 0, "")


def test_backoff_is_jittered():
    assert len({round(backoff_seconds(3), 3) for _ in range(20)}) > 1


def test_permanent_error_stops_scheduling(scripted_account, scripted):
    scripted.script = [PermanentError("Folder Archive does not exist.")]
    sync_account(scripted_account.pk)
    account = ProviderAccount.objects.get(pk=scripted_account.pk)
    assert account.status == "error" and account.next_sync_at is None
    assert "Folder Archive does not exist. Fix the account's settings" in account.last_error


def test_transient_auth_error_is_retried(scripted_account, scripted):
    scripted.script = [AuthError("token endpoint timed out", permanent=False)]
    sync_account(scripted_account.pk)
    account = ProviderAccount.objects.get(pk=scripted_account.pk)
    assert account.status == "error" and account.next_sync_at is not None


def test_unexpected_exception_is_recorded_not_leaked(scripted_account, scripted):
    scripted.script = [ValueError("password=hunter2 in a bug message")]
    outcome = sync_account(scripted_account.pk)
    account = ProviderAccount.objects.get(pk=scripted_account.pk)
    run = SyncRun.objects.get()
    assert outcome.status == "failed" and run.status == "failed"
    assert "Internal error (ValueError)" in account.last_error
    assert "hunter2" not in account.last_error and "hunter2" not in run.error


def test_concurrent_call_returns_already_running(scripted_account, scripted):
    token = claim(scripted_account.pk)
    assert token
    outcome = sync_account(scripted_account.pk)
    assert outcome.status == "already_running"
    assert not SyncRun.objects.exists()


def test_stale_claim_is_taken_over_and_its_run_abandoned(scripted_account, scripted, settings):
    old_token = claim(scripted_account.pk)
    dead_run = SyncRun.objects.create(account=scripted_account, kind="delta", claim_token=old_token)
    ProviderAccount.objects.filter(pk=scripted_account.pk).update(
        claimed_at=timezone.now() - dt.timedelta(seconds=settings.SYNC_STALE_CLAIM_SECONDS + 5)
    )
    scripted.script = [page()]
    assert sync_account(scripted_account.pk).status == "succeeded"
    dead_run.refresh_from_db()
    assert dead_run.status == "abandoned" and "another worker took over" in dead_run.error


def test_a_worker_that_lost_its_claim_writes_nothing(scripted_account, scripted):
    def taken_over(done, total):
        # Another worker took the account over (this one was presumed dead) after page one.
        ProviderAccount.objects.filter(pk=scripted_account.pk).update(claim_token="someone-else")

    scripted.script = [page(2, more=True), page(3)]
    outcome = sync_account(scripted_account.pk, progress=taken_over)
    assert outcome.status == "failed"
    assert Communication.objects.count() == 2  # page two was not written
    assert SyncRun.objects.get().status == "abandoned"
    account = ProviderAccount.objects.get(pk=scripted_account.pk)
    assert account.claim_token == "someone-else" and account.backfill_state["page_token"] == {"p": 1}


def test_sweeper_marks_dead_runs_and_frees_the_account(scripted_account, settings):
    token = claim(scripted_account.pk)
    run = SyncRun.objects.create(account=scripted_account, kind="delta", claim_token=token)
    assert sweep_stale_runs() == 0
    ProviderAccount.objects.filter(pk=scripted_account.pk).update(
        claimed_at=timezone.now() - dt.timedelta(seconds=settings.SYNC_STALE_CLAIM_SECONDS + 5)
    )
    assert sweep_stale_runs() == 1
    run.refresh_from_db()
    account = ProviderAccount.objects.get(pk=scripted_account.pk)
    assert run.status == "abandoned" and run.finished_at is not None
    assert account.claim_token == "" and account.status == "error" and "stalled" in account.last_error
    assert account.next_sync_at <= timezone.now()


def test_enqueue_due_syncs_leases_each_due_account_once(user, scripted, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER}
    due = ProviderAccount.objects.create(owner=user, provider="scripted", next_sync_at=timezone.now())
    ProviderAccount.objects.create(owner=user, provider="scripted",
                                   next_sync_at=timezone.now() + dt.timedelta(hours=1))
    ProviderAccount.objects.create(owner=user, provider="scripted", next_sync_at=None, status="error")
    ProviderAccount.objects.create(owner=user, provider="scripted", next_sync_at=timezone.now(), status="disabled")
    before = OrmQ.objects.count()
    assert tasks.enqueue_due_syncs() == 1
    assert tasks.enqueue_due_syncs() == 0  # leased: the next tick does not queue it again
    assert OrmQ.objects.count() == before + 1
    due.refresh_from_db()
    assert due.next_sync_at > timezone.now() + dt.timedelta(minutes=5)


def test_run_sync_task_runs_the_engine(scripted_account, scripted):
    scripted.script = [page(2)]
    assert tasks.run_sync(scripted_account.pk).startswith("succeeded: 2 fetched, 2 created")


def test_schedule_is_created_once():
    tasks.ensure_schedule()
    tasks.ensure_schedule()
    schedule = Schedule.objects.get(name=tasks.SCHEDULE_NAME)
    assert schedule.func == "integrations.tasks.enqueue_due_syncs"
    assert schedule.schedule_type == Schedule.MINUTES and schedule.minutes == 1


def test_schedule_exists_after_migrate():
    assert Schedule.objects.filter(name=tasks.SCHEDULE_NAME).count() == 1


def test_admin_sync_now_enqueues(admin_client, scripted_account, django_capture_on_commit_callbacks):
    ProviderAccount.objects.create(owner=scripted_account.owner, provider="scripted", status="reauth_required")
    before = OrmQ.objects.count()
    with django_capture_on_commit_callbacks(execute=True):  # the task is queued once the run is committed
        response = admin_client.post(
            "/admin/integrations/provideraccount/",
            {"action": "sync_now", "_selected_action": list(ProviderAccount.objects.values_list("pk", flat=True))},
            follow=True,
        )
    assert response.status_code == 200
    assert OrmQ.objects.count() == before + 1
    assert SyncRun.objects.filter(account=scripted_account, status=SyncRun.Status.QUEUED).count() == 1
    text = response.content.decode()
    assert "Queued a sync of 1 account(s)." in text and "need attention first" in text
    again = admin_client.post(
        "/admin/integrations/provideraccount/",
        {"action": "sync_now", "_selected_action": [scripted_account.pk]}, follow=True,
    ).content.decode()
    assert "1 account(s) already have a sync queued or running." in again
    assert OrmQ.objects.count() == before + 1


# --- manage.py sync ---------------------------------------------------------------------------

import io  # noqa: E402

from django.core.management import CommandError, call_command  # noqa: E402


def test_sync_command_runs_inline(scripted_account, scripted):
    scripted.script = [page(3)]
    out = io.StringIO()
    call_command("sync", "--account", str(scripted_account.pk), stdout=out, stderr=io.StringIO())
    assert f"Account {scripted_account.pk}: succeeded: 3 fetched, 3 created" in out.getvalue()
    assert Communication.objects.count() == 3


def test_sync_command_full_forgets_the_cursor(scripted_account, scripted):
    scripted.script = [page(2)]
    sync_account(scripted_account.pk)
    scripted.script = [page(1)]
    call_command("sync", "--account", str(scripted_account.pk), "--full", stdout=io.StringIO(),
                 stderr=io.StringIO())
    assert SyncRun.objects.latest("pk").kind == "full_resync"


def test_sync_command_all_skips_accounts_needing_attention_and_reports_failures(user, scripted):
    ok = ProviderAccount.objects.create(owner=user, provider="scripted")
    ProviderAccount.objects.create(owner=user, provider="scripted", status="reauth_required")
    broken = ProviderAccount.objects.create(owner=user, provider="scripted")
    scripted.script = [page(1), TransientError("server unavailable")]
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 of 2 account"):
        call_command("sync", "--all", stdout=out, stderr=io.StringIO())
    assert f"Account {ok.pk}: succeeded" in out.getvalue()
    assert f"Account {broken.pk}: failed: server unavailable" in out.getvalue()


def test_sync_command_unknown_account():
    with pytest.raises(CommandError, match="No account with id 424242"):
        call_command("sync", "--account", "424242")


def test_position_lost_during_a_resumed_backfill_restarts_it_once(scripted_account, scripted):
    from integrations.providers.base import CursorExpired

    scripted.script = [page(2, more=True), CursorExpired("UIDVALIDITY of INBOX changed during the backfill"),
                       page(3)]
    assert sync_account(scripted_account.pk).status == "succeeded"
    account = ProviderAccount.objects.get(pk=scripted_account.pk)
    run = SyncRun.objects.get()
    assert run.kind == "full_resync" and account.consecutive_resyncs == 1
    assert account.backfill_state is None and account.sync_cursor == {"c": 1}
    assert Communication.objects.count() == 5


def test_admin_re_enable_action(admin_client, user, scripted):
    disabled = ProviderAccount.objects.create(owner=user, provider="scripted", status="disabled",
                                              last_error="Disabled after 5 full resyncs", consecutive_resyncs=6,
                                              next_sync_at=None)
    waiting = ProviderAccount.objects.create(owner=user, provider="scripted", status="reauth_required")
    admin_client.post("/admin/integrations/provideraccount/",
                      {"action": "enable", "_selected_action": [disabled.pk, waiting.pk]})
    disabled.refresh_from_db()
    waiting.refresh_from_db()
    assert (disabled.status, disabled.last_error, disabled.consecutive_resyncs) == ("connected", "", 0)
    assert disabled.next_sync_at is not None
    assert waiting.status == "reauth_required"


def test_new_communications_are_announced_after_commit_with_their_origin(scripted_account, scripted,
                                                                         django_capture_on_commit_callbacks):
    from conversations.models import Communication
    from integrations.signals import communications_created

    heard: list[tuple[int, list[int], str]] = []

    def receiver(sender, account, communication_ids, origin, **kwargs):
        heard.append((account.pk, communication_ids, origin))

    def broken(**kwargs):
        raise RuntimeError("a receiver's bug")

    communications_created.connect(receiver)
    communications_created.connect(broken)
    try:
        scripted.script = [page(2, more=True), page(1), page(0), page(1)]
        with django_capture_on_commit_callbacks() as pending:
            assert sync_account(scripted_account.pk).status == "succeeded"  # backfill: two pages
        assert heard == [] and pending  # nothing is sent before its transaction commits
        for callback in pending:
            callback()
        with django_capture_on_commit_callbacks(execute=True):
            assert sync_account(scripted_account.pk).status == "succeeded"  # delta, nothing new
            assert sync_account(scripted_account.pk).status == "succeeded"  # delta, one new
    finally:
        communications_created.disconnect(receiver)
        communications_created.disconnect(broken)
    ids = list(Communication.objects.order_by("pk").values_list("pk", flat=True))
    assert heard == [(scripted_account.pk, ids[:2], "backfill"), (scripted_account.pk, ids[2:3], "backfill"),
                     (scripted_account.pk, ids[3:], "delta")]


def test_an_unknown_origin_is_a_bug(scripted_account):
    from integrations.signals import announce_created

    with pytest.raises(ValueError, match="origin"):
        announce_created(scripted_account, [1], "sideways")
