"""Historical range syncs through the engine, with a provider serving a dated mailbox:
monthly chunks newest first, resumable pages, the delta cursor untouched, deltas between chunks."""
from __future__ import annotations

import datetime as dt
import io

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_q.models import OrmQ

import integrations.quarantine as quarantine_module
from conversations.models import Communication
from integrations import tasks
from integrations.models import ProviderAccount, SyncRun
from integrations.providers import registry
from integrations.providers.base import (
    AuthError,
    Batch,
    Capability,
    CursorExpired,
    TransientError,
)
from integrations.sync import HISTORICAL_MAX_ATTEMPTS, claim, month_chunks, sweep_stale_runs, sync_account
from integrations.tasks import request_sync
from tests.factories import message
from tests.test_sync_engine import ScriptedProvider, scripted, scripted_account  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db

UTC = dt.UTC


def at(year: int, month: int, day: int = 1, hour: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, tzinfo=UTC)


class RangeProvider(ScriptedProvider):
    """Deltas and backfills play ``script``; fetch_range serves ``mailbox`` by received_at,
    newest first, ``page_size`` a page, and records every call in ``calls``."""

    key = "ranged"
    capabilities = frozenset({Capability.EMAIL, Capability.DATE_RANGE})
    page_size = 2
    mailbox: list = []
    calls: list[tuple[dt.datetime, dt.datetime, dict | None]] = []
    failures: list[BaseException] = []  # raised by the next fetch_range calls, one each

    def fetch_range(self, since, until, page_token):
        self.api_calls += 1
        self.calls.append((since, until, page_token))
        if self.failures:
            raise self.failures.pop(0)
        inside = sorted((m for m in self.mailbox if since <= m.received_at < until),
                        key=lambda m: m.received_at, reverse=True)
        offset = (page_token or {}).get("offset", 0)
        more = offset + self.page_size < len(inside)
        return Batch(messages=inside[offset:offset + self.page_size],
                     next_page_token={"offset": offset + self.page_size} if more else None,
                     new_cursor={"must": "be ignored"}, progress=(999, 999))


@pytest.fixture
def ranged(monkeypatch):
    monkeypatch.setitem(registry.PROVIDERS, "ranged", ("Ranged", f"{__name__}.RangeProvider"))
    registry.provider_class.cache_clear()
    RangeProvider.script, RangeProvider.mailbox, RangeProvider.calls, RangeProvider.failures = [], [], [], []
    yield RangeProvider
    registry.provider_class.cache_clear()


@pytest.fixture
def account(user, ranged):
    """An account whose backfill is done: it has a delta cursor, and its next delta is not due."""
    return ProviderAccount.objects.create(owner=user, provider="ranged", sync_cursor={"delta": 7},
                                          next_sync_at=timezone.now() + dt.timedelta(hours=1))


def dated(*moments: dt.datetime) -> list:
    return [message(received_at=moment, sent_at=moment) for moment in moments]


def run_to_the_end(account_id: int, run_id: int) -> list[str]:
    outcomes = []
    while True:
        outcome = sync_account(account_id, run_id=run_id)
        outcomes.append(outcome.status)
        if outcome.status != "yielded":
            return outcomes


def test_month_chunks_are_newest_first_and_cut_at_month_starts():
    assert month_chunks(at(2019, 10, 15), at(2020, 1, 1)) == [
        (at(2019, 12), at(2020, 1)), (at(2019, 11), at(2019, 12)), (at(2019, 10, 15), at(2019, 11))]
    assert month_chunks(at(2019, 3, 2), at(2019, 3, 9, 12)) == [(at(2019, 3, 2), at(2019, 3, 9, 12))]
    assert len(month_chunks(at(2019, 1), at(2020, 1))) == 12


def test_chunks_run_newest_first_one_per_task_and_leave_the_cursor_alone(account, ranged):
    inside = dated(at(2019, 10, 20), at(2019, 11, 3), at(2019, 11, 4), at(2019, 11, 5), at(2019, 12, 31, 23))
    ranged.mailbox = [*inside, *dated(at(2019, 10, 14, 23), at(2020, 1, 1))]  # just outside
    run = request_sync(account, kind="historical", since=at(2019, 10, 15), until=at(2020, 1, 1))

    assert sync_account(account.pk, run_id=run.pk).status == "yielded"
    run.refresh_from_db()
    account.refresh_from_db()
    assert (run.status, run.claim_token, run.fetched, run.progress_done, run.progress_total) == (
        "queued", "", 1, 1, 3)
    assert run.state == {"chunk": 1, "chunks": 3, "page_token": None, "attempts": 0, "month": "2019-11"}
    assert (account.claim_token, account.status) == ("", "connected")  # yielded between chunks

    assert run_to_the_end(account.pk, run.pk) == ["yielded", "succeeded"]
    assert [(since, until) for since, until, _ in ranged.calls] == [
        (at(2019, 12), at(2020, 1)), (at(2019, 11), at(2019, 12)), (at(2019, 11), at(2019, 12)),
        (at(2019, 10, 15), at(2019, 11))]
    run.refresh_from_db()
    assert (run.status, run.fetched, run.created, run.progress_done, run.progress_total) == (
        "succeeded", 5, 5, 3, 3)
    assert run.finished_at is not None and run.api_calls == 4 and run.state["month"] is None
    assert set(Communication.objects.values_list("provider_message_id", flat=True)) == {
        m.provider_message_id for m in inside}
    account.refresh_from_db()
    assert account.sync_cursor == {"delta": 7} and account.backfill_state is None
    assert account.next_sync_at > timezone.now() + dt.timedelta(minutes=50)  # the schedule is untouched
    assert SyncRun.objects.count() == 1


def test_messages_already_stored_stay_single(account, ranged):
    mailbox = dated(at(2019, 5, 1), at(2019, 5, 2), at(2019, 6, 1))
    ranged.script = [lambda: Batch(messages=mailbox[:2], new_cursor={"delta": 8})]
    sync_account(account.pk)
    ranged.mailbox = mailbox
    run = request_sync(account, kind="historical", since=dt.date(2019, 1, 1), until=dt.date(2020, 1, 1))
    run_to_the_end(account.pk, run.pk)
    run.refresh_from_db()
    assert (run.status, run.fetched, run.created, run.skipped) == ("succeeded", 3, 1, 2)
    assert Communication.objects.count() == 3


def test_a_task_runs_a_due_delta_between_two_chunks(account, ranged, django_capture_on_commit_callbacks):
    ranged.mailbox = dated(at(2019, 11, 5), at(2019, 12, 5))
    with django_capture_on_commit_callbacks(execute=True):
        run = request_sync(account, kind="historical", since=at(2019, 11), until=at(2020, 1))
    ProviderAccount.objects.filter(pk=account.pk).update(next_sync_at=timezone.now())  # the delta is due
    new_mail = message()
    ranged.script = [lambda: Batch(messages=[new_mail], new_cursor={"delta": 8})]

    first_task = OrmQ.objects.get().task["args"]
    assert tasks.run_sync(*first_task).startswith("yielded: 1 of 2 months done")
    delta = SyncRun.objects.exclude(pk=run.pk).get()
    assert (delta.kind, delta.status, delta.fetched) == ("delta", "succeeded", 1)
    run.refresh_from_db()
    assert run.status == "queued" and run.state["chunk"] == 1  # the delta left it alone
    account.refresh_from_db()
    assert account.sync_cursor == {"delta": 8} and account.next_sync_at > timezone.now()
    # Then the historical run's next chunk is queued (once: the delta's own dispatch found it).
    next_task = OrmQ.objects.order_by("pk").last().task["args"]
    assert tuple(next_task) == (account.pk, False, run.pk) and OrmQ.objects.count() == 2
    assert tasks.run_sync(*next_task).startswith("succeeded")
    assert Communication.objects.count() == 3
    account.refresh_from_db()
    assert account.sync_cursor == {"delta": 8}


def test_a_scheduled_delta_bouncing_off_a_historical_chunk_stays_due(account, ranged):
    ranged.mailbox = dated(at(2019, 11, 5), at(2019, 12, 5))
    run = request_sync(account, kind="historical", since=at(2019, 11), until=at(2020, 1))
    lease = timezone.now() + dt.timedelta(minutes=30)  # what the scheduler's tick set
    ProviderAccount.objects.filter(pk=account.pk).update(next_sync_at=lease)

    def scheduled_delta_arrives(done, total):
        assert tasks.run_sync(account.pk).startswith("already_running")

    assert sync_account(account.pk, run_id=run.pk, progress=scheduled_delta_arrives).status == "yielded"
    account.refresh_from_db()
    assert account.next_sync_at <= timezone.now() and tasks.delta_due(account.pk)


def test_a_crash_mid_chunk_resumes_from_the_page_token(account, ranged, monkeypatch):
    ranged.mailbox = dated(*(at(2019, 3, day) for day in range(1, 6)))
    run = request_sync(account, kind="historical", since=at(2019, 3), until=at(2019, 4))
    real_store = quarantine_module.store_batch
    calls = {"n": 0}

    def crash_on_second_page(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionResetError("worker lost its database")
        return real_store(*args, **kwargs)

    monkeypatch.setattr(quarantine_module, "store_batch", crash_on_second_page)
    assert sync_account(account.pk, run_id=run.pk).status == "failed"
    run.refresh_from_db()
    account.refresh_from_db()
    # Back in the queue from its state, for after the account's backoff.
    assert (run.status, run.state["page_token"], run.state["attempts"]) == ("queued", {"offset": 2}, 0)
    assert "Internal error" in run.error and run.queued_at == account.next_sync_at > timezone.now()
    assert tasks.dispatch_queued_runs(account.pk) == 0  # not before its retry time
    assert Communication.objects.count() == 2 and account.sync_cursor == {"delta": 7}

    monkeypatch.setattr(quarantine_module, "store_batch", real_store)
    ranged.calls.clear()
    assert run_to_the_end(account.pk, run.pk) == ["succeeded"]
    assert [token for _, _, token in ranged.calls] == [{"offset": 2}, {"offset": 4}]
    run.refresh_from_db()
    assert (run.status, run.fetched, run.created, run.error) == ("succeeded", 5, 5, "")
    assert Communication.objects.count() == 5


def test_a_worker_dying_mid_chunk_leaves_the_run_to_resume(account, ranged, settings):
    ranged.mailbox = dated(*(at(2019, 3, day) for day in range(1, 6)))
    run = request_sync(account, kind="historical", since=at(2019, 3), until=at(2019, 4))

    def die(done, total):
        raise SystemExit("killed")  # recorded and re-raised, like a worker stopped mid-chunk

    with pytest.raises(SystemExit):
        sync_account(account.pk, run_id=run.pk, progress=die)
    run.refresh_from_db()
    assert run.status == "queued" and run.state["page_token"] == {"offset": 2}
    # A harder death: the run is left "running" under a claim nobody refreshes.
    token = claim(account.pk)
    SyncRun.objects.filter(pk=run.pk).update(status="running", claim_token=token)
    ProviderAccount.objects.filter(pk=account.pk).update(
        claimed_at=timezone.now() - dt.timedelta(seconds=settings.SYNC_STALE_CLAIM_SECONDS + 5))
    assert sweep_stale_runs() == 1
    run.refresh_from_db()
    assert run.status == "queued" and run.finished_at is None  # not abandoned: re-queued
    assert run_to_the_end(account.pk, run.pk) == ["succeeded"]
    assert Communication.objects.count() == 5


def test_a_takeover_re_queues_a_historical_run_and_the_stale_worker_writes_nothing(account, ranged):
    ranged.mailbox = dated(*(at(2019, 3, day) for day in range(1, 6)))
    run = request_sync(account, kind="historical", since=at(2019, 3), until=at(2019, 4))

    def taken_over(done, total):
        ProviderAccount.objects.filter(pk=account.pk).update(claim_token="")
        assert claim(account.pk)  # another worker, presuming this one dead

    assert sync_account(account.pk, run_id=run.pk, progress=taken_over).status == "failed"
    run.refresh_from_db()
    assert run.status == "queued" and run.state["page_token"] == {"offset": 2} and run.claim_token == ""
    assert Communication.objects.count() == 2


def test_a_changed_position_restarts_the_chunk_and_repeated_failures_give_up(account, ranged):
    ranged.mailbox = dated(*(at(2019, 3, day) for day in range(1, 6)))
    run = request_sync(account, kind="historical", since=at(2019, 3), until=at(2019, 4))
    SyncRun.objects.filter(pk=run.pk).update(state={"chunk": 0, "page_token": {"offset": 2}})
    ranged.failures = [CursorExpired("UIDVALIDITY of INBOX changed")]
    assert run_to_the_end(account.pk, run.pk) == ["succeeded"]
    assert [token for _, _, token in ranged.calls] == [{"offset": 2}, None, {"offset": 2}, {"offset": 4}]
    assert Communication.objects.count() == 5

    again = request_sync(account, kind="historical", since=at(2019, 3), until=at(2019, 4))
    for attempt in range(HISTORICAL_MAX_ATTEMPTS):
        ranged.failures = [TransientError("connection reset")]
        assert sync_account(account.pk, run_id=again.pk).status == "failed"
        again.refresh_from_db()
        assert again.status == "queued" and again.state["attempts"] == attempt + 1
        ProviderAccount.objects.filter(pk=account.pk).update(status="connected")
    assert sync_account(account.pk, run_id=again.pk).status == "failed"
    again.refresh_from_db()
    assert again.status == "failed" and "Gave up after 5 attempts" in again.error
    assert "connection reset" in again.error
    account.refresh_from_db()
    assert account.claim_token == ""


def test_a_permanent_error_fails_the_run_and_asking_again_resumes_it(account, ranged):
    ranged.mailbox = dated(at(2019, 2, 3), at(2019, 3, 3), at(2019, 3, 4), at(2019, 3, 5))
    run = request_sync(account, kind="historical", since=at(2019, 2), until=at(2019, 4))
    assert sync_account(account.pk, run_id=run.pk).status == "yielded"  # March
    ranged.failures = [AuthError("password rejected", permanent=True)]
    assert sync_account(account.pk, run_id=run.pk).status == "failed"
    run.refresh_from_db()
    account.refresh_from_db()
    assert run.status == "failed" and account.status == "reauth_required"
    ProviderAccount.objects.filter(pk=account.pk).update(status="connected", last_error="")
    again = request_sync(account, kind="historical", since=at(2019, 2), until=at(2019, 4))
    assert again.state["chunk"] == 1  # February: March was done
    ranged.calls.clear()
    assert run_to_the_end(account.pk, again.pk) == ["succeeded"]
    assert [(since, until) for since, until, _ in ranged.calls] == [(at(2019, 2), at(2019, 3))]
    assert Communication.objects.count() == 4


def test_a_historical_run_leaves_the_account_health_as_it_found_it(account, ranged):
    ProviderAccount.objects.filter(pk=account.pk).update(status="error", last_error="Delta failed: timeout",
                                                         consecutive_failures=2)
    ranged.mailbox = dated(at(2019, 3, 3))
    run = request_sync(account, kind="historical", since=at(2019, 3), until=at(2019, 4))
    assert run_to_the_end(account.pk, run.pk) == ["succeeded"]
    account.refresh_from_db()
    assert (account.status, account.last_error, account.consecutive_failures) == (
        "error", "Delta failed: timeout", 2)


def test_sync_command_runs_a_historical_range_inline(account, ranged):
    ranged.mailbox = dated(at(2019, 1, 5), at(2019, 2, 5), at(2019, 2, 6), at(2018, 12, 31))
    out = io.StringIO()
    call_command("sync", "--account", str(account.pk), "--since", "2019-01-01", "--until", "2019-03-01",
                 stdout=out, stderr=io.StringIO())
    assert f"Account {account.pk}: succeeded: 3 fetched, 3 created" in out.getvalue()
    run = SyncRun.objects.get()
    assert (run.kind, run.since, run.until, run.progress_done) == ("historical", at(2019, 1), at(2019, 3), 2)
    assert not OrmQ.objects.exists()  # inline: no task queued
    account.refresh_from_db()
    assert account.sync_cursor == {"delta": 7}


def test_sync_command_refuses_a_provider_without_date_ranges(user, scripted_account):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="cannot fetch a date range"):
        call_command("sync", "--account", str(scripted_account.pk), "--since", "2019-01-01",
                     "--until", "2019-03-01", stdout=io.StringIO(), stderr=io.StringIO())


# --- IMAP, against the real Dovecot ---------------------------------------------------------

def zone(hours: float) -> dt.timezone:
    return dt.timezone(dt.timedelta(hours=hours))


def imap_account(imap_user, owner, folders: list[str]) -> ProviderAccount:
    return ProviderAccount.objects.create(
        owner=owner, provider="imap", display_name="Dovecot", external_address=f"{imap_user.username}@example.org",
        config={"host": imap_user.host, "port": imap_user.port, "security": "none", "username": imap_user.username,
                "folders": folders},
        credentials={"password": imap_user.password},
    )


def append_dated(imap_user, folder: str, moments: list[dt.datetime]) -> dict[dt.datetime, str]:
    """One message per moment, appended with that INTERNALDATE; returns moment -> Message-ID."""
    from tests.providers.imap_harness import make_raw

    ids = {}
    with imap_user.client() as client:
        if not client.folder_exists(folder):
            client.create_folder(folder)
        for moment in moments:
            ids[moment] = f"{moment:%Y%m%d%H%M%S%z}.{folder}@acme.com"
            client.append(folder, make_raw(message_id=ids[moment]), msg_time=moment)
    return ids


def test_imap_range_is_exact_by_internaldate_newest_month_first(imap_user, user, monkeypatch):
    from integrations.providers.imap.provider import ImapProvider

    monkeypatch.setattr(ImapProvider, "page_size", 2)
    inside = [
        dt.datetime(2019, 11, 30, 23, 30, tzinfo=zone(-5)),  # December 1st in UTC
        dt.datetime(2019, 12, 1, 0, 30, tzinfo=zone(2)),  # November 30th in UTC
        dt.datetime(2019, 12, 31, 23, 59, 59, tzinfo=UTC),
        dt.datetime(2019, 11, 1, 0, 0, tzinfo=UTC),
        dt.datetime(2019, 11, 15, 12, tzinfo=zone(14)),
        dt.datetime(2019, 12, 10, 8, tzinfo=zone(-12)),
    ]
    outside = [
        dt.datetime(2019, 10, 31, 23, 59, 59, tzinfo=UTC),
        dt.datetime(2020, 1, 1, 0, 0, tzinfo=UTC),
        dt.datetime(2019, 11, 1, 9, 0, tzinfo=zone(10)),  # October 31st, 23:00 in UTC
        dt.datetime(2019, 6, 1, tzinfo=UTC),
    ]
    inbox = append_dated(imap_user, "INBOX", inside[:4] + outside)
    archive = append_dated(imap_user, "Archive", inside[4:])
    account = imap_account(imap_user, user, ["INBOX", "Archive"])
    run = request_sync(account, kind="historical", since=dt.date(2019, 11, 1), until=dt.date(2020, 1, 1))

    seen: list[int] = []
    outcomes = []
    while not outcomes or outcomes[-1] == "yielded":
        outcomes.append(sync_account(account.pk, run_id=run.pk, progress=lambda done, total: seen.append(done)).status)
    assert outcomes == ["yielded", "succeeded"]
    stored = dict(Communication.objects.values_list("rfc_message_id", "received_at"))
    expected = {inbox[m] for m in inside[:4]} | {archive[m] for m in inside[4:]}
    assert set(stored) == expected
    assert all(stored[key] for key in expected)
    december = {key for key, moment in stored.items() if moment >= at(2019, 12)}
    first_chunk = set(Communication.objects.order_by("pk").values_list("rfc_message_id", flat=True)[:len(december)])
    assert first_chunk == december  # newest month first
    run.refresh_from_db()
    account.refresh_from_db()
    assert (run.status, run.fetched, run.progress_done, run.progress_total) == ("succeeded", 6, 2, 2)
    assert seen == sorted(seen) and len(seen) >= 4  # pages of two
    assert account.sync_cursor == {} and account.backfill_state is None  # no cursor made or moved


def test_imap_range_resumes_mid_chunk_and_leaves_stored_mail_single(imap_user, user, monkeypatch):
    from integrations.providers.imap.provider import ImapProvider

    monkeypatch.setattr(ImapProvider, "page_size", 2)
    moments = [dt.datetime(2019, 3, day, 9, tzinfo=UTC) for day in range(1, 8)]
    append_dated(imap_user, "INBOX", moments)
    account = imap_account(imap_user, user, ["INBOX"])
    assert sync_account(account.pk).status == "succeeded"  # the backfill already has everything
    account.refresh_from_db()
    cursor = account.sync_cursor
    Communication.objects.filter(received_at__lt=at(2019, 3, 4)).delete()  # as if never fetched

    def crash_after_first_page(done, total):
        raise SystemExit("worker stopped")

    run = request_sync(account, kind="historical", since=dt.date(2019, 1, 1), until=dt.date(2019, 4, 1))
    with pytest.raises(SystemExit):
        sync_account(account.pk, run_id=run.pk, progress=crash_after_first_page)
    run.refresh_from_db()
    assert run.status == "queued" and run.state["page_token"]["below"] > 1
    assert run_to_the_end(account.pk, run.pk) == ["yielded", "yielded", "succeeded"]  # March, February, January
    run.refresh_from_db()
    assert (run.fetched, run.created, run.skipped) == (7, 3, 4)
    assert Communication.objects.count() == 7
    account.refresh_from_db()
    assert account.sync_cursor == cursor


def test_sync_command_all_with_a_range_takes_the_accounts_that_can_do_it(account, ranged, scripted_account):
    ranged.mailbox = dated(at(2019, 1, 5))
    out = io.StringIO()
    call_command("sync", "--all", "--since", "2019-01-01", "--until", "2019-02-01", stdout=out, stderr=io.StringIO())
    assert f"Account {account.pk}: succeeded: 1 fetched" in out.getvalue()
    assert f"Account {scripted_account.pk}" not in out.getvalue()
