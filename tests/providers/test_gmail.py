"""Gmail provider behaviour against the fake Gmail API (tests/fakes/gmail.py), through the sync engine.

The contract suite (test_contract.py) covers what every provider does; these are Gmail's own:
labels and history, batches with failed parts, rate limits, token refresh, memory bounds.
"""
from __future__ import annotations

import datetime as dt
import logging
import re

import pytest
from django.utils import timezone

from conversations.models import Communication
from integrations.models import ProviderAccount, SyncRun
from integrations.providers.base import Capability, PermanentError
from integrations.providers.gmail import client as client_module
from integrations.providers.gmail.client import QuotaBucket
from integrations.providers.gmail.connect import GMAIL_MODIFY, GMAIL_READONLY
from integrations.providers.gmail.credentials import fresh_credentials
from integrations.providers.gmail.provider import GmailProvider
from integrations.sync import sync_account
from integrations.tasks import request_sync
from tests.providers.gmail_harness import GmailHarness, oauth_credentials
from tests.providers.imap_harness import make_raw

pytestmark = pytest.mark.django_db


@pytest.fixture
def harness(gmail_fake, user) -> GmailHarness:
    return GmailHarness(gmail_fake, user)


@pytest.fixture
def slept(monkeypatch) -> list[float]:
    """The client's sleeps (backoffs, Retry-After, quota), recorded instead of slept."""
    delays: list[float] = []
    monkeypatch.setattr(client_module, "sleep", delays.append)
    return delays


def last_run(account: ProviderAccount) -> SyncRun:
    return SyncRun.objects.filter(account=account).latest("pk")


def stored(account: ProviderAccount, gmail_id: str) -> Communication:
    return Communication.objects.get(account=account, provider_message_id=gmail_id)


def requests_to(fake, pattern: str) -> list[tuple[str, str]]:
    return [(method, path) for method, path in fake.requests if re.search(pattern, path)]


def test_initial_and_delta_sync_store_ids_threads_labels_and_state(harness):
    box = harness.box
    clients = box.add_label("Clients")
    [first] = harness.append_raw([make_raw(subject="Hello")], labels=("INBOX", "UNREAD", clients))
    [reply] = harness.append_raw([make_raw(subject="Re: Hello")], labels=("INBOX", "STARRED"), thread_id=first)
    account = harness.make_account()
    assert sync_account(account.pk).status == "succeeded"
    message = stored(account, first)
    assert (message.labels, message.is_read, message.is_starred) == (["INBOX", "UNREAD", "Clients"], False, False)
    reply_row = stored(account, reply)
    assert reply_row.is_read and reply_row.is_starred
    assert reply_row.conversation_id == message.conversation_id
    account.refresh_from_db()
    assert account.sync_cursor == {"history_id": str(box.history_id)}

    [new] = harness.append_raw([make_raw(subject="Later")])
    assert sync_account(account.pk).status == "succeeded"
    run = last_run(account)
    assert (run.kind, run.fetched, run.created) == ("delta", 1, 1)
    assert stored(account, new).labels == ["INBOX"]


def test_a_no_change_delta_costs_one_request(harness):
    harness.add_messages(3)
    account = harness.make_account()
    sync_account(account.pk)
    harness.fake.requests.clear()
    assert sync_account(account.pk).status == "succeeded"
    assert [path for _method, path in harness.fake.requests] == ["/gmail/v1/users/me/history"]
    assert last_run(account).api_calls == 1


def test_label_changes_replace_the_whole_label_set(harness):
    box = harness.box
    urgent = box.add_label("Urgent")
    [gmail_id] = harness.append_raw([make_raw()], labels=("INBOX", "UNREAD"))
    account = harness.make_account()
    sync_account(account.pk)
    box.label(gmail_id, add=[urgent, "STARRED"], remove=["UNREAD", "INBOX"])
    assert sync_account(account.pk).status == "succeeded"
    message = stored(account, gmail_id)
    assert sorted(message.labels) == ["STARRED", "Urgent"]
    assert message.is_read and message.is_starred
    assert last_run(account).updated == 1


def test_deleted_messages_are_soft_deleted(harness):
    ids = harness.append_raw([make_raw(), make_raw()])
    account = harness.make_account()
    sync_account(account.pk)
    harness.box.delete(ids[0])
    assert sync_account(account.pk).status == "succeeded"
    assert stored(account, ids[0]).deleted_at is not None
    assert stored(account, ids[1]).deleted_at is None


def test_a_long_delta_comes_in_several_batches_each_advancing_the_cursor(harness, monkeypatch):
    monkeypatch.setattr(GmailProvider, "page_size", 3)
    harness.add_messages(2)
    account = harness.make_account()
    sync_account(account.pk)
    harness.add_messages(8)
    cursors: list[dict] = []
    real_store = SyncRun.save

    def record(run, *args, **kwargs):  # each reported batch: the cursor stored with it
        cursors.append(ProviderAccount.objects.get(pk=account.pk).sync_cursor)
        return real_store(run, *args, **kwargs)

    monkeypatch.setattr(SyncRun, "save", record)
    assert sync_account(account.pk).status == "succeeded"
    assert Communication.objects.filter(account=account).count() == 10
    history_ids = [int(cursor["history_id"]) for cursor in cursors if cursor]
    assert len(set(history_ids)) >= 3 and history_ids == sorted(history_ids)
    account.refresh_from_db()
    assert account.sync_cursor == {"history_id": str(harness.box.history_id)}


def test_an_expired_history_id_runs_one_full_resync_not_a_loop(harness):
    harness.add_messages(4)
    account = harness.make_account()
    sync_account(account.pk)
    harness.expire_cursor()
    harness.fake.requests.clear()
    outcome = sync_account(account.pk)
    assert outcome.status == "succeeded", outcome
    assert last_run(account).kind == "full_resync" and last_run(account).created == 0
    assert len(requests_to(harness.fake, r"/history$")) == 1
    assert Communication.objects.filter(account=account).count() == 4
    account.refresh_from_db()
    assert account.sync_cursor == {"history_id": str(harness.box.history_id)}
    assert sync_account(account.pk).status == "succeeded" and last_run(account).kind == "delta"


def test_a_revoked_token_requires_reauth_with_a_reconnect_message(harness):
    harness.add_messages(1)
    account = harness.make_account()
    sync_account(account.pk)
    harness.fake.revoke(harness.email)
    assert sync_account(account.pk).status == "failed"
    account.refresh_from_db()
    assert account.status == "reauth_required"
    assert account.last_error.startswith("Reconnect Gmail: access was revoked or expired.")
    assert harness.fake.client_secret not in account.last_error


def test_a_batch_keeps_its_good_parts_retries_429_parts_and_skips_404_parts(harness, monkeypatch, slept, caplog):
    ids = harness.append_raw([make_raw() for _ in range(6)])
    gone, throttled = ids[1], ids[3]
    real_sized = GmailProvider._sized

    def delete_after_listing(provider, listed, within=None):
        sized = real_sized(provider, listed, within)
        harness.box.delete(gone)  # between sizing and the raw fetch: its part answers 404
        return sized

    monkeypatch.setattr(GmailProvider, "_sized", delete_after_listing)
    harness.fake.fail("GET", rf"/messages/{throttled}$", 429, times=2, retry_after=1)
    account = harness.make_account()
    with caplog.at_level(logging.INFO, logger="integrations.providers.gmail.provider"):
        assert sync_account(account.pk).status == "succeeded"
    assert set(Communication.objects.filter(account=account).values_list("provider_message_id", flat=True)) == (
        set(ids) - {gone})
    assert f"Gmail message {gone} of account {account.pk} skipped: deleted since it was listed" in caplog.text
    assert slept.count(1.0) == 2  # Retry-After honoured before each retry of the throttled part
    # The throttled part was retried alone: two batches of one part besides the sizing and raw ones.
    assert harness.fake.batch_parts == 6 + 2 + 6


@pytest.mark.parametrize(("status", "reason"), [(429, "rateLimitExceeded"), (403, "userRateLimitExceeded"),
                                                (403, "rateLimitExceeded")])
def test_rate_limits_back_off_with_retry_after_then_resume(harness, slept, status, reason):
    harness.add_messages(3)
    account = harness.make_account()
    harness.fake.fail("GET", r"/messages$", status, reason=reason, retry_after=2)
    assert sync_account(account.pk).status == "succeeded"
    assert 2.0 in slept and Communication.objects.filter(account=account).count() == 3


def test_a_long_retry_after_reschedules_the_account_and_the_next_sync_resumes(harness, slept):
    harness.add_messages(3)
    account = harness.make_account()
    harness.fake.fail("GET", r"/messages$", 429, retry_after=600)
    before = timezone.now()
    assert sync_account(account.pk).status == "failed"
    account.refresh_from_db()
    assert account.status == "connected" and "Rate limited" in account.last_error
    assert account.next_sync_at >= before + dt.timedelta(seconds=600)
    assert not [delay for delay in slept if delay >= 600]  # not slept through: rescheduled
    assert sync_account(account.pk).status == "succeeded"
    assert Communication.objects.filter(account=account).count() == 3


def test_a_token_about_to_expire_is_refreshed_under_the_lock_and_saved(harness):
    harness.add_messages(1)
    account = harness.make_account()
    credentials = dict(account.credentials, expiry=(timezone.now() + dt.timedelta(minutes=2)).isoformat())
    ProviderAccount.objects.filter(pk=account.pk).update(credentials=credentials)
    assert sync_account(account.pk).status == "succeeded"
    assert len(requests_to(harness.fake, r"^/token$")) == 1
    account.refresh_from_db()
    assert account.credentials["access_token"] != credentials["access_token"]
    assert dt.datetime.fromisoformat(account.credentials["expiry"]) > timezone.now() + dt.timedelta(minutes=50)
    assert account.credentials["refresh_token"] == credentials["refresh_token"]


def test_a_token_refreshed_by_another_worker_meanwhile_is_not_refreshed_again(harness):
    account = harness.make_account()
    stale = dict(account.credentials, expiry=(timezone.now() + dt.timedelta(minutes=1)).isoformat())
    account.credentials = stale  # what this worker read before another one refreshed it
    fresh = oauth_credentials(harness.fake.issue_tokens(harness.email))
    ProviderAccount.objects.filter(pk=account.pk).update(credentials=fresh)
    credentials = fresh_credentials(account)
    assert credentials.token == fresh["access_token"] and account.credentials == fresh
    assert not requests_to(harness.fake, r"^/token$")


def test_an_access_token_rejected_early_is_refreshed_once_and_the_call_retried(harness):
    harness.add_messages(2)
    account = harness.make_account()
    sync_account(account.pk)
    harness.fake.expire_access_tokens(harness.email)
    harness.add_messages(1)
    assert sync_account(account.pk).status == "succeeded"
    assert len(requests_to(harness.fake, r"^/token$")) == 1
    assert Communication.objects.filter(account=account).count() == 3


def test_a_historical_range_fetches_only_messages_received_inside_it(harness):
    box = harness.box
    account = harness.make_account()
    sync_account(account.pk)  # empty mailbox: cursor set
    when = [dt.datetime(2025, 3, 10, tzinfo=dt.UTC), dt.datetime(2025, 4, 2, tzinfo=dt.UTC),
            dt.datetime(2025, 5, 1, tzinfo=dt.UTC), dt.datetime(2025, 6, 1, tzinfo=dt.UTC)]
    ids = [box.add(make_raw(), internal_date=moment) for moment in when]
    cursor = ProviderAccount.objects.get(pk=account.pk).sync_cursor
    run = request_sync(account, kind="historical", since=when[0], until=when[2])
    outcome = sync_account(account.pk, run_id=run.pk)
    while outcome.status == "yielded":
        outcome = sync_account(account.pk, run_id=run.pk)
    assert outcome.status == "succeeded", outcome
    assert set(Communication.objects.filter(account=account).values_list("provider_message_id", flat=True)) == {
        ids[0], ids[1]}
    assert stored(account, ids[1]).received_at == when[1]
    assert ProviderAccount.objects.get(pk=account.pk).sync_cursor == cursor


def test_drafts_spam_and_trash_are_not_stored(harness):
    [kept] = harness.append_raw([make_raw()])
    harness.append_raw([make_raw()], labels=("DRAFT",))
    harness.append_raw([make_raw()], labels=("SPAM",))
    account = harness.make_account()
    sync_account(account.pk)
    harness.append_raw([make_raw()], labels=("DRAFT",))
    sync_account(account.pk)
    assert list(Communication.objects.filter(account=account).values_list("provider_message_id", flat=True)) == [kept]


def test_a_message_over_message_max_bytes_is_stored_from_its_headers(harness, settings):
    settings.MESSAGE_MAX_BYTES = 4096
    [big] = harness.append_raw([make_raw(subject="Huge", body="x" * 10_000)])
    account = harness.make_account()
    requests: list[str] = []
    real_batch = harness.fake._batch

    def record(headers, body):
        requests.extend(re.findall(rb"GET (\S+) HTTP", body))
        return real_batch(headers, body)

    harness.fake._batch = record
    try:
        assert sync_account(account.pk).status == "succeeded"
    finally:
        del harness.fake._batch
    message = stored(account, big)
    assert message.subject == "Huge" and message.body_text == ""
    assert any("stored headers only" in warning for warning in message.parse_warnings)
    assert not [r for r in requests if big.encode() in r and b"format=raw" in r]


def test_raw_batches_never_bring_more_than_the_byte_cap(harness, settings):
    settings.PAGE_MAX_BYTES = 64 * 1024
    ids = harness.append_raw([make_raw(body="y" * 9000) for _ in range(20)] + [make_raw(body="z" * 100_000)])
    sizes = {gmail_id: harness.box.get(gmail_id).size for gmail_id in ids}
    raw_batches: list[int] = []
    real_batch = harness.fake._batch

    def record(headers, body):
        raw = re.findall(rb"GET /gmail/v1/users/me/messages/(\w+)\?format=raw", body)
        if raw:
            raw_batches.append(sum(sizes[gmail_id.decode()] for gmail_id in raw))
        return real_batch(headers, body)

    harness.fake._batch = record
    account = harness.make_account()
    try:
        assert sync_account(account.pk).status == "succeeded"
    finally:
        del harness.fake._batch
    assert Communication.objects.filter(account=account).count() == 21
    assert len(raw_batches) >= 3 and max(raw_batches) <= 64 * 1024
    # The 100 KB message, too big for a batch, came alone through a plain GET.
    big = max(sizes, key=sizes.get)
    assert requests_to(harness.fake, rf"/messages/{big}$")


def test_resyncing_stores_nothing_twice(harness):
    harness.add_messages(5)
    account = harness.make_account()
    sync_account(account.pk)
    assert sync_account(account.pk, full=True).status == "succeeded"
    run = last_run(account)
    assert (run.kind, run.fetched, run.created) == ("full_resync", 5, 0)
    assert Communication.objects.filter(account=account).count() == 5


def test_the_quota_bucket_paces_calls_in_units(slept):
    bucket = QuotaBucket(100)
    bucket.take(60)
    bucket.take(40)
    assert slept == []
    bucket.take(250)  # a batch of 50 gets: allowed into debt, then waited off
    assert slept and 2.4 <= slept[-1] <= 2.6


# --- write-back: the one change, only with gmail.modify -----------------------------------------

def test_mark_read_without_gmail_modify_says_to_reconnect_and_changes_nothing(harness):
    [unread] = harness.append_raw([make_raw()], labels=("INBOX", "UNREAD"))
    account = harness.make_account()  # signed in read-only
    blocker = GmailProvider.missing_grant(account, Capability.MARK_READ)
    assert "read-only access" in blocker and "reconnect it" in blocker
    with GmailProvider(account) as provider, pytest.raises(PermanentError, match="read-only access"):
        provider.mark_read([unread])
    assert harness.box.modify_requests == [] and "UNREAD" in harness.box.get(unread).labels


def test_mark_read_when_google_withdrew_the_permission(harness):
    [unread] = harness.append_raw([make_raw()], labels=("INBOX", "UNREAD"))
    account = harness.make_account()
    # The stored grant says gmail.modify, but the token Google honours no longer carries it.
    account.credentials = {**account.credentials, "scopes": [GMAIL_READONLY, GMAIL_MODIFY]}
    with GmailProvider(account) as provider, pytest.raises(PermanentError, match="Reconnect the account and allow"):
        provider.mark_read([unread])
    assert "UNREAD" in harness.box.get(unread).labels


def test_mark_read_of_a_message_deleted_since_the_sync(harness):
    [gone] = harness.append_raw([make_raw()], labels=("INBOX", "UNREAD"))
    account = harness.make_account()
    harness.allow_mark_read(account)
    harness.box.delete(gone)
    with GmailProvider(account) as provider, pytest.raises(PermanentError, match="no longer in the Gmail mailbox"):
        provider.mark_read([gone])


def test_a_service_account_mailbox_cannot_mark_read(harness):
    account = harness.make_account()
    account.credentials = {"kind": "service_account", "service_account_info": {}, "subject": harness.email}
    assert "service account" in GmailProvider.missing_grant(account, Capability.MARK_READ)
    assert GmailProvider.missing_grant(account, Capability.EMAIL) is None
