"""request_sync, the one "sync now" service: validation, refusals, queued runs and their adoption."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone
from django_q.models import OrmQ

from conversations.models import Communication
from integrations import tasks
from integrations.models import ProviderAccount, SyncRun
from integrations.providers.base import Batch, Capability
from integrations.sync import claim, sweep_stale_runs, sync_account
from integrations.tasks import NotSyncable, SyncInProgress, request_sync
from tests.factories import message
from tests.test_sync_engine import page, scripted, scripted_account  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


@pytest.fixture
def ranged(scripted, monkeypatch):  # noqa: F811
    monkeypatch.setattr(scripted, "capabilities", frozenset({Capability.EMAIL, Capability.DATE_RANGE}))
    return scripted


def queued_tasks() -> list[tuple]:
    return [tuple(task.task["args"]) for task in OrmQ.objects.order_by("pk")]


def test_a_request_queues_a_run_and_its_task(scripted_account, django_capture_on_commit_callbacks):  # noqa: F811
    with django_capture_on_commit_callbacks(execute=True):
        run = request_sync(scripted_account, kind="delta")
    assert (run.status, run.kind, run.account_id) == ("queued", "delta", scripted_account.pk)
    assert run.queued_at is not None and run.since is None and run.until is None
    assert queued_tasks() == [(scripted_account.pk, False, run.pk)]


def test_the_task_adopts_the_queued_run(scripted_account, scripted):  # noqa: F811
    run = request_sync(scripted_account, kind="delta")
    scripted.script = [page(2)]
    assert tasks.run_sync(scripted_account.pk, False, run.pk).startswith("succeeded: 2 fetched")
    assert SyncRun.objects.count() == 1
    run.refresh_from_db()
    # No cursor yet: "sync now" is the backfill, and the run says so.
    assert (run.status, run.kind, run.fetched, run.claim_token != "") == ("succeeded", "initial", 2, True)
    assert run.finished_at >= run.started_at >= run.queued_at
    account = ProviderAccount.objects.get(pk=scripted_account.pk)
    assert account.status == "connected" and account.claim_token == ""


def test_a_full_request_runs_a_full_resync(scripted_account, scripted):  # noqa: F811
    mailbox = [message(), message()]
    scripted.script = [lambda: Batch(messages=mailbox, new_cursor={"c": 1})]
    sync_account(scripted_account.pk)
    run = request_sync(scripted_account, kind="full")
    scripted.script = [lambda: Batch(messages=mailbox, new_cursor={"c": 2})]
    sync_account(scripted_account.pk, run_id=run.pk)
    run.refresh_from_db()
    assert (run.kind, run.status, run.skipped) == ("full_resync", "succeeded", 2)
    assert Communication.objects.count() == 2


def test_a_task_for_a_run_no_longer_queued_does_nothing(scripted_account, scripted):  # noqa: F811
    run = request_sync(scripted_account, kind="delta")
    scripted.script = [page(1)]
    assert sync_account(scripted_account.pk, run_id=run.pk).status == "succeeded"
    outcome = sync_account(scripted_account.pk, run_id=run.pk)  # a second task for the same run
    assert outcome.status == "already_running" and "succeeded" in outcome.message
    assert SyncRun.objects.count() == 1 and Communication.objects.count() == 1


@pytest.mark.parametrize("status", ["disabled", "reauth_required"])
def test_an_account_needing_attention_is_refused_with_its_reason(scripted_account, status):  # noqa: F811
    ProviderAccount.objects.filter(pk=scripted_account.pk).update(status=status,
                                                                 last_error="The password was rejected.")
    with pytest.raises(NotSyncable, match="The password was rejected"):
        request_sync(scripted_account, kind="delta")
    assert not SyncRun.objects.exists()


def test_a_queued_run_of_an_account_that_then_needs_attention_fails_with_the_reason(scripted_account):  # noqa: F811
    run = request_sync(scripted_account, kind="delta")
    ProviderAccount.objects.filter(pk=scripted_account.pk).update(status="reauth_required",
                                                                 last_error="Token revoked.")
    assert tasks.run_sync(scripted_account.pk, False, run.pk).startswith("not_syncable")
    run.refresh_from_db()
    assert run.status == "failed" and "Token revoked." in run.error


def test_a_second_request_while_one_is_queued_or_running_is_refused(scripted_account, scripted):  # noqa: F811
    first = request_sync(scripted_account, kind="delta")
    with pytest.raises(SyncInProgress) as refused:
        request_sync(scripted_account, kind="full")
    assert refused.value.run == first and "queued" in str(refused.value)
    SyncRun.objects.filter(pk=first.pk).update(status="succeeded")
    running = SyncRun.objects.create(account=scripted_account, kind="delta")  # a scheduled sync
    with pytest.raises(SyncInProgress) as refused:
        request_sync(scripted_account, kind="delta")
    assert refused.value.run == running and "running" in str(refused.value)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "everything"}, "Unknown sync kind 'everything'"),
    ({"kind": "historical", "since": dt.date(2019, 1, 1)}, "needs both since and until"),
    ({"kind": "historical", "since": dt.date(2020, 1, 1), "until": dt.date(2019, 1, 1)}, "since before until"),
    ({"kind": "historical", "since": dt.date(2019, 1, 1), "until": dt.date(2019, 1, 1)}, "since before until"),
    ({"kind": "historical", "since": dt.datetime(2019, 1, 1), "until": dt.date(2020, 1, 1)}, "timezone-aware"),
    ({"kind": "historical", "since": "2019-01-01", "until": dt.date(2020, 1, 1)}, "a date or an aware"),
    ({"kind": "delta", "since": dt.date(2019, 1, 1)}, "historical syncs only"),
])
def test_bad_requests_are_refused_with_a_clear_message(scripted_account, ranged, kwargs, message):  # noqa: F811
    with pytest.raises(ValueError, match=message):
        request_sync(scripted_account, **kwargs)
    assert not SyncRun.objects.exists()


def test_historical_needs_a_provider_with_the_date_range_capability(scripted_account):  # noqa: F811
    with pytest.raises(ValueError, match=r"Scripted provider \(scripted\) cannot fetch a date range"):
        request_sync(scripted_account, kind="historical", since=dt.date(2019, 1, 1), until=dt.date(2020, 1, 1))


def test_a_historical_request_records_its_range_in_utc(scripted_account, ranged, settings):  # noqa: F811
    settings.TIME_ZONE = "Europe/Paris"
    until = dt.datetime(2020, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=5)))
    run = request_sync(scripted_account, kind="historical", since=dt.date(2019, 1, 1), until=until)
    run.refresh_from_db()
    assert (run.kind, run.status) == ("historical", "queued")
    assert run.since == dt.datetime(2018, 12, 31, 23, tzinfo=dt.UTC)  # midnight in Paris
    assert run.until == dt.datetime(2020, 1, 1, 7, tzinfo=dt.UTC)


def test_a_run_queued_behind_a_busy_account_is_dispatched_when_the_holder_finishes(
        scripted_account, scripted, django_capture_on_commit_callbacks):  # noqa: F811
    token = claim(scripted_account.pk)  # a scheduled sync holds the account
    SyncRun.objects.create(account=scripted_account, kind="delta", claim_token=token)
    with pytest.raises(SyncInProgress):
        request_sync(scripted_account, kind="delta")
    # Requested between the claim and the holder's run row: queued, and its task bounces.
    SyncRun.objects.filter(claim_token=token).delete()
    run = request_sync(scripted_account, kind="delta")
    assert sync_account(scripted_account.pk, run_id=run.pk).status == "already_running"
    run.refresh_from_db()
    assert run.status == "queued"
    ProviderAccount.objects.filter(pk=scripted_account.pk).update(claim_token="", claimed_at=None)
    scripted.script = [page(1)]
    before = OrmQ.objects.count()
    tasks.run_sync(scripted_account.pk)  # the next sync of the account, when it ends, dispatches it
    assert OrmQ.objects.count() == before + 1
    assert queued_tasks()[-1] == (scripted_account.pk, False, run.pk)
    scripted.script = [page(1)]
    assert tasks.run_sync(*queued_tasks()[-1]).startswith("succeeded")
    run.refresh_from_db()
    assert run.status == "succeeded"


def test_the_sweeper_abandons_queued_runs_whose_task_was_lost(scripted_account, user, scripted, settings):  # noqa: F811
    stale = timezone.now() - dt.timedelta(seconds=settings.SYNC_STALE_CLAIM_SECONDS + 5)
    lost = request_sync(scripted_account, kind="delta")
    busy_account = ProviderAccount.objects.create(owner=user, provider="scripted")
    waiting = request_sync(busy_account, kind="delta")
    claim(busy_account.pk)  # a long backfill: its queued run waits for it, it is not lost
    fresh_account = ProviderAccount.objects.create(owner=user, provider="scripted")
    fresh = request_sync(fresh_account, kind="delta")
    SyncRun.objects.filter(pk__in=[lost.pk, waiting.pk]).update(queued_at=stale)
    assert sweep_stale_runs() == 1
    lost.refresh_from_db()
    assert lost.status == "abandoned" and "never started" in lost.error and lost.finished_at is not None
    assert SyncRun.objects.get(pk=waiting.pk).status == "queued"
    assert SyncRun.objects.get(pk=fresh.pk).status == "queued"
    request_sync(scripted_account, kind="delta")  # no longer blocked


def test_scheduled_syncs_still_create_their_own_runs(scripted_account, scripted):  # noqa: F811
    scripted.script = [page(1)]
    assert tasks.run_sync(scripted_account.pk).startswith("succeeded")
    assert SyncRun.objects.get().kind == "initial"


@pytest.mark.django_db(transaction=True)
def test_two_simultaneous_requests_queue_one_run(scripted_account):  # noqa: F811
    if connection.vendor == "sqlite":
        # The second writer gets "database table is locked" at once from the shared in-memory
        # test database instead of waiting: never a second run, but not the refusal either.
        pytest.skip("needs a database whose writers wait for each other's locks")
    barrier = threading.Barrier(2)
    results: list[object] = []

    def request() -> None:
        try:
            barrier.wait()
            results.append(request_sync(scripted_account, kind="delta"))
        except Exception as error:  # noqa: BLE001  the refusal is the result
            results.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(type(r).__name__ for r in results) == ["SyncInProgress", "SyncRun"]
    assert SyncRun.objects.filter(status="queued").count() == 1
