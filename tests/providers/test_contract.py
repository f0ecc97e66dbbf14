"""The contract every MessageProvider must pass, run through the sync engine.

Each provider supplies only a harness (tests/providers/<key>_harness.py): how to make an
account, add messages, invalidate the cursor and break the credentials.
"""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

import integrations.quarantine as quarantine_module
import integrations.sync as sync_module
from conversations.models import Communication, MessageRef
from integrations.accounts import save_credentials
from integrations.models import ProviderAccount, SyncRun
from integrations.providers.base import Capability
from integrations.providers.registry import provider_class
from integrations.sync import sync_account
from integrations.tasks import enqueue_due_syncs, request_sync

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["imap", "mbox", "gmail", "outlook", "twilio"])
def harness(request, user, tmp_path, monkeypatch):
    monkeypatch.setattr(provider_class(request.param), "page_size", 4)
    if request.param == "twilio":
        from tests.providers.twilio_harness import TwilioHarness

        return TwilioHarness(request.getfixturevalue("twilio_fake"), user)
    if request.param == "outlook":
        from tests.providers.outlook_harness import OutlookHarness

        return OutlookHarness(request.getfixturevalue("graph_fake"), user)
    if request.param == "gmail":
        from tests.providers.gmail_harness import GmailHarness

        return GmailHarness(request.getfixturevalue("gmail_fake"), user)
    if request.param == "imap":
        from tests.providers.imap_harness import ImapHarness

        return ImapHarness(request.getfixturevalue("imap_user"), user)
    from tests.providers.mbox_harness import MboxHarness

    return MboxHarness(tmp_path / "export.mbox", user)


def last_run(account: ProviderAccount) -> SyncRun:
    return SyncRun.objects.filter(account=account).latest("pk")


def test_initial_backfill_pages_through_everything(harness):
    harness.add_messages(10)
    account = harness.make_account()
    outcome = sync_account(account.pk)
    assert outcome.status == "succeeded", outcome
    run = last_run(account)
    assert (run.kind, run.status, run.fetched, run.created) == ("initial", "succeeded", 10, 10)
    assert run.api_calls > 0 and run.finished_at is not None
    account.refresh_from_db()
    assert account.sync_cursor and account.backfill_state is None
    assert account.status == "connected" and account.last_synced_at is not None
    assert account.next_sync_at > timezone.now()
    assert Communication.objects.filter(account=account).count() == 10


def test_delta_fetches_only_what_is_new(harness):
    harness.add_messages(5)
    account = harness.make_account()
    sync_account(account.pk)
    harness.add_messages(6)
    sync_account(account.pk)
    run = last_run(account)
    assert (run.kind, run.fetched, run.created) == ("delta", 6, 6)
    assert Communication.objects.filter(account=account).count() == 11


def test_delta_with_nothing_new_fetches_nothing(harness):
    harness.add_messages(3)
    account = harness.make_account()
    sync_account(account.pk)
    sync_account(account.pk)
    run = last_run(account)
    assert (run.kind, run.status, run.fetched, run.created) == ("delta", "succeeded", 0, 0)


def test_expired_cursor_runs_one_full_resync_without_duplicates(harness):
    harness.add_messages(6)
    account = harness.make_account()
    sync_account(account.pk)
    harness.expire_cursor()
    outcome = sync_account(account.pk)
    assert outcome.status == "succeeded", outcome
    run = last_run(account)
    assert run.kind == "full_resync" and run.created == 0
    assert Communication.objects.filter(account=account).count() == 6
    account.refresh_from_db()
    assert account.consecutive_resyncs == 1
    sync_account(account.pk)  # a normal delta afterwards resets the count
    account.refresh_from_db()
    assert last_run(account).kind == "delta" and account.consecutive_resyncs == 0


def test_repeated_cursor_expiry_disables_the_account(harness, settings):
    settings.SYNC_MAX_CONSECUTIVE_RESYNCS = 2
    harness.add_messages(4)
    account = harness.make_account()
    sync_account(account.pk)
    for _ in range(2):
        harness.expire_cursor()
        assert sync_account(account.pk).status == "succeeded"
    harness.expire_cursor()
    outcome = sync_account(account.pk)
    account.refresh_from_db()
    assert outcome.status == "failed"
    assert account.status == "disabled" and "2 full resyncs in a row" in account.last_error
    assert account.next_sync_at is None
    assert sync_account(account.pk).status == "not_syncable"
    assert Communication.objects.filter(account=account).count() == 4


def test_auth_failure_requires_reauth_and_stops_retrying(harness):
    if not harness.supports_auth:
        pytest.skip("this provider has no credentials")
    harness.add_messages(2)
    account = harness.make_account()
    harness.break_auth()
    outcome = sync_account(account.pk)
    account.refresh_from_db()
    assert outcome.status == "failed"
    assert account.status == "reauth_required"
    assert getattr(harness, "auth_error_text", "rejected the login") in account.last_error
    assert "Update the account's credentials" in account.last_error
    assert account.next_sync_at is None
    ProviderAccount.objects.filter(pk=account.pk).update(next_sync_at=timezone.now())
    assert enqueue_due_syncs() == 0  # no retry storm: the scheduler leaves it alone
    assert sync_account(account.pk).status == "not_syncable"
    assert SyncRun.objects.filter(account=account).count() == 1
    if hasattr(harness, "restore_auth"):
        harness.restore_auth(account)
    else:
        harness.user.server.set_password(harness.user.username, harness.user.password)
        save_credentials(account, {"password": harness.user.password})
    assert sync_account(account.pk).status == "succeeded"
    account.refresh_from_db()
    assert account.status == "connected" and account.last_error == ""


def test_malformed_item_is_stored_with_warnings(harness):
    harness.add_messages(1)
    harness.add_malformed()
    account = harness.make_account()
    assert sync_account(account.pk).status == "succeeded"
    stored = Communication.objects.filter(account=account)
    assert stored.count() == 2
    broken = stored.exclude(parse_warnings=[]).get()
    assert any("unreadable Date" in w for w in broken.parse_warnings)


def test_a_crash_midway_loses_nothing_and_duplicates_nothing(harness, monkeypatch):
    harness.add_messages(10)
    account = harness.make_account()
    real_store = quarantine_module.store_batch
    calls = {"n": 0}

    def crash_on_second_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ConnectionResetError("worker lost its database")
        return real_store(*args, **kwargs)

    monkeypatch.setattr(quarantine_module, "store_batch", crash_on_second_batch)
    assert sync_account(account.pk).status == "failed"
    account.refresh_from_db()
    assert account.status == "error" and account.backfill_state is not None
    assert Communication.objects.filter(account=account).count() == 4
    monkeypatch.setattr(quarantine_module, "store_batch", real_store)
    assert sync_account(account.pk).status == "succeeded"
    assert Communication.objects.filter(account=account).count() == 10
    assert last_run(account).created == 6


def test_progress_is_reported_per_batch(harness):
    harness.add_messages(9)
    account = harness.make_account()
    seen: list[tuple[int, int | None]] = []
    sync_account(account.pk, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) >= 3
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)
    assert seen[-1][0] == seen[-1][1]
    run = last_run(account)  # what the status API shows while it runs
    assert (run.progress_done, run.progress_total) == seen[-1]


def test_a_historical_range_leaves_the_cursor_and_stores_nothing_twice(harness):
    harness.add_messages(5)
    account = harness.make_account()
    if Capability.DATE_RANGE not in provider_class(account.provider).capabilities:
        pytest.skip("this provider has no date-range fetch")
    assert sync_account(account.pk).status == "succeeded"
    account.refresh_from_db()
    cursor = account.sync_cursor
    forgotten = list(Communication.objects.filter(account=account).order_by("pk").values_list("pk", flat=True)[:2])
    Communication.objects.filter(pk__in=forgotten).delete()
    now = timezone.now()  # the harnesses' messages arrived just now
    run = request_sync(account, kind="historical", since=now - dt.timedelta(days=1), until=now + dt.timedelta(days=1))
    outcome = sync_account(account.pk, run_id=run.pk)
    while outcome.status == "yielded":
        outcome = sync_account(account.pk, run_id=run.pk)
    assert outcome.status == "succeeded", outcome
    run.refresh_from_db()
    assert (run.kind, run.fetched, run.created, run.skipped) == ("historical", 5, 2, 3)
    assert Communication.objects.filter(account=account).count() == 5
    account.refresh_from_db()
    assert account.sync_cursor == cursor
    harness.add_messages(2)
    sync_account(account.pk)
    assert (last_run(account).kind, last_run(account).fetched) == ("delta", 2)


def test_mark_read_changes_only_the_messages_asked_for(harness):
    """The one write (Capability.MARK_READ), once the user allowed it: exactly the asked message
    becomes read at the provider, the others stay unread, and a later sync sees it read."""
    account = harness.make_account()
    provider = provider_class(account.provider)
    if Capability.MARK_READ not in provider.capabilities:
        pytest.skip(f"{account.provider} cannot mark messages read")
    harness.add_unread(3)
    harness.allow_mark_read(account)
    assert provider.missing_grant(account, Capability.MARK_READ) is None
    sync_account(account.pk)
    middle = Communication.objects.filter(account=account).order_by("sent_at")[1]
    refs = list(MessageRef.objects.filter(communication=middle).values_list("ref", flat=True))
    with provider(account) as connection:
        connection.mark_read(refs)
    assert harness.read_states() == [False, True, False]
    sync_account(account.pk)
    assert [c.is_read for c in Communication.objects.filter(account=account).order_by("sent_at")] == [
        False, True, False]


def test_the_provider_is_never_changed(harness):
    harness.add_messages(3)
    account = harness.make_account()
    before = _snapshot(harness)
    sync_account(account.pk)
    assert _snapshot(harness) == before


def _snapshot(harness) -> object:
    if hasattr(harness, "snapshot"):
        return harness.snapshot()
    if hasattr(harness, "path"):
        return harness.path.read_bytes()
    with harness.connection() as client:
        client.select_folder(harness.folder, readonly=True)
        return sorted((uid, tuple(sorted(data[b"FLAGS"]))) for uid, data in
                      client.fetch(client.search(["ALL"]), ["FLAGS"]).items())
