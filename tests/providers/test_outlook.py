"""Outlook provider behaviour against the fake Graph (tests/fakes/graph.py), through the sync engine.

The contract suite (test_contract.py) covers what every provider does; these are Outlook's own:
mapping, delta per folder, moves with immutable ids, deletions, the three ways a delta expires,
token refresh and revocation, throttling, pages failing halfway, attachments, and threading
with another account's copy by RFC headers.
"""
from __future__ import annotations

import datetime as dt
import json
import urllib.parse

import pytest
from django.utils import timezone

from conversations.ingest import store_batch
from conversations.models import Attachment, Communication
from integrations.models import ProviderAccount, SyncRun
from integrations.providers.base import RateLimited
from integrations.providers.outlook import auth
from integrations.providers.outlook import client as client_module
from integrations.providers.outlook.client import Budget, GraphClient
from integrations.sync import sync_account
from tests.factories import message
from tests.providers.outlook_harness import OutlookHarness

pytestmark = pytest.mark.django_db


@pytest.fixture
def harness(graph_fake, user) -> OutlookHarness:
    return OutlookHarness(graph_fake, user)


@pytest.fixture
def slept(monkeypatch) -> list[float]:
    delays: list[float] = []
    monkeypatch.setattr(client_module, "sleep", delays.append)
    return delays


def last_run(account: ProviderAccount) -> SyncRun:
    return SyncRun.objects.filter(account=account).latest("pk")


def stored(account: ProviderAccount, message_id: str) -> Communication:
    return Communication.objects.get(account=account, provider_message_id=message_id)


def test_initial_sync_maps_messages_of_every_folder(harness, graph_fake):
    box = harness.box
    first = box.add(subject="Quote", sender="carol@acme.com", body="<p>Hello <b>Erin</b></p>", html=True,
                    is_read=True, flagged=True, internet_message_id="<quote-1@acme.com>", conversation_id="CONV-1")
    sent = box.add(subject="Re: Quote", sender=harness.email, to="carol@acme.com", folder="SentItems",
                   conversation_id="CONV-1", reply=False)
    box.add(subject="draft", folder="Inbox", is_draft=True)
    account = harness.make_account()
    assert sync_account(account.pk).status == "succeeded"
    quote = stored(account, first)
    assert (quote.rfc_message_id, quote.provider_thread_id, quote.subject) == ("quote-1@acme.com", "CONV-1", "Quote")
    assert "Hello Erin" in quote.body_text and "<b>Erin</b>" in quote.body_html
    assert (quote.labels, quote.is_read, quote.is_starred, quote.direction) == (["Inbox"], True, True, "inbound")
    reply = stored(account, sent)
    assert (reply.labels, reply.direction, reply.conversation_id) == (["SentItems"], "outbound", quote.conversation_id)
    assert Communication.objects.filter(account=account).count() == 2  # the draft is not stored
    account.refresh_from_db()
    assert set(account.sync_cursor["folders"]) == {"Inbox", "SentItems"}
    assert all("delta_link" in link for link in account.sync_cursor["folders"].values())
    deltas = graph_fake.graph_requests("/messages/delta")
    assert deltas and all('IdType="ImmutableId"' in headers["prefer"] and "odata.maxpagesize=" in headers["prefer"]
                          for _method, _path, headers in deltas)
    first_request = urllib.parse.parse_qs(urllib.parse.urlsplit(deltas[0][1]).query)
    assert "internetMessageId" in first_request["$select"][0] and "body" in first_request["$select"][0]


def test_delta_brings_new_mail_read_and_flag_changes_and_deletions(harness):
    first, second, third = harness.add_messages(3)
    account = harness.make_account()
    sync_account(account.pk)
    harness.box.mark(first, is_read=True)
    harness.box.mark(second, flagged=True)
    harness.box.delete(third)
    [new] = harness.add_messages(1)
    assert sync_account(account.pk).status == "succeeded"
    run = last_run(account)
    assert (run.kind, run.fetched, run.created) == ("delta", 1, 1)
    assert stored(account, first).is_read is True
    assert stored(account, second).is_starred is True
    assert stored(account, third).deleted_at is not None
    assert stored(account, new).deleted_at is None
    account.refresh_from_db()
    assert account.communication_count == 3


def test_a_move_between_synced_folders_keeps_the_same_message(harness):
    [moved] = harness.add_messages(1)
    account = harness.make_account(folders=["Inbox", "SentItems", "Archive"])
    sync_account(account.pk)
    before = stored(account, moved)
    harness.box.move(moved, "Archive")
    assert sync_account(account.pk).status == "succeeded"
    after = stored(account, moved)
    assert after.pk == before.pk and after.deleted_at is None
    assert after.labels == ["Archive"]
    assert Communication.objects.filter(account=account).count() == 1
    harness.box.move(moved, "Inbox")  # and back: still one communication
    sync_account(account.pk)
    assert stored(account, moved).labels == ["Inbox"] and stored(account, moved).deleted_at is None


def test_a_move_out_of_the_synced_folders_is_a_deletion(harness):
    [moved] = harness.add_messages(1)
    account = harness.make_account()
    sync_account(account.pk)
    harness.box.move(moved, "Archive")
    sync_account(account.pk)
    assert stored(account, moved).deleted_at is not None


@pytest.mark.parametrize("mode", ["gone", "syncStateNotFound", "resyncRequired"])
def test_an_expired_delta_runs_one_full_resync(harness, mode):
    harness.add_messages(3)
    account = harness.make_account()
    sync_account(account.pk)
    harness.box.expire_deltas(mode)
    harness.add_messages(1)
    assert sync_account(account.pk).status == "succeeded"
    run = last_run(account)
    assert (run.kind, run.created) == ("full_resync", 1)
    assert Communication.objects.filter(account=account).count() == 4
    account.refresh_from_db()
    assert account.consecutive_resyncs == 1


def test_an_expired_access_token_is_refreshed_once_and_persisted(harness, graph_fake):
    harness.add_messages(2)
    account = harness.make_account()
    graph_fake.expire_access_tokens(harness.email)  # the cached token is refused: a 401, then a forced refresh
    before = account.credentials["token_cache"]
    tokens_before = graph_fake.counts["token"]
    assert sync_account(account.pk).status == "succeeded"
    account.refresh_from_db()
    assert account.credentials["token_cache"] != before
    assert graph_fake.counts["token"] == tokens_before + 1
    assert sync_account(account.pk).status == "succeeded"  # the new token is used from the cache
    assert graph_fake.counts["token"] == tokens_before + 1


def test_a_refresh_waits_for_the_lock_and_reuses_the_token_refreshed_meanwhile(harness, graph_fake):
    account = harness.make_account()
    stale = ProviderAccount.objects.get(pk=account.pk)
    cache = json.loads(stale.credentials["token_cache"])
    cache["AccessToken"] = {}
    stale.credentials = {**stale.credentials, "token_cache": json.dumps(cache)}  # this copy's token ran out
    first = auth.access_token(ProviderAccount.objects.get(pk=account.pk), force=True)  # another worker refreshed
    tokens = graph_fake.counts["token"]
    assert auth.access_token(stale) == first  # re-read under the lock: no second refresh
    assert graph_fake.counts["token"] == tokens


def test_a_revoked_refresh_token_requires_reconnecting(harness):
    harness.add_messages(1)
    account = harness.make_account()
    harness.break_auth()
    assert sync_account(account.pk).status == "failed"
    account.refresh_from_db()
    assert account.status == "reauth_required"
    assert account.last_error.startswith("Reconnect Outlook: access was revoked or expired. (invalid_grant)")
    assert "fake-rt" not in account.last_error and "fake-at" not in account.last_error


def test_a_short_retry_after_is_waited_out(harness, graph_fake, slept):
    harness.add_messages(2)
    account = harness.make_account()
    graph_fake.fail("GET", r"/messages/delta", 429, times=2, headers={"Retry-After": "3"})
    assert sync_account(account.pk).status == "succeeded"
    assert slept == [3.0, 3.0]
    assert Communication.objects.filter(account=account).count() == 2


def test_a_long_throttle_pauses_the_account_and_resumes_from_the_saved_link(harness, graph_fake, slept,
                                                                             monkeypatch):
    from integrations.providers.outlook.provider import OutlookProvider

    monkeypatch.setattr(OutlookProvider, "page_size", 2)
    harness.add_messages(3)
    account = harness.make_account()
    sync_account(account.pk)
    harness.add_messages(5)
    graph_fake.fail("GET", r"skiptoken", 503, times=1, headers={"Retry-After": "120"})
    assert sync_account(account.pk).status == "failed"
    account.refresh_from_db()
    assert account.status == "connected" and "Rate limited" in account.last_error
    assert account.next_sync_at >= timezone.now() + dt.timedelta(seconds=110)
    assert "next_link" in account.sync_cursor["folders"]["Inbox"]  # the first page was stored with its link
    assert Communication.objects.filter(account=account).count() == 5
    assert sync_account(account.pk).status == "succeeded"
    assert Communication.objects.filter(account=account).count() == 8
    assert last_run(account).created == 3


def test_a_page_failing_halfway_is_read_again_from_its_link(harness, graph_fake, monkeypatch):
    from integrations.providers.outlook.provider import OutlookProvider

    monkeypatch.setattr(OutlookProvider, "page_size", 2)
    harness.add_messages(2)
    account = harness.make_account()
    sync_account(account.pk)
    harness.add_messages(2)
    harness.add_messages(1, attachments=[("a.txt", "text/plain", b"hello")])
    harness.add_messages(1)
    graph_fake.fail("POST", r"\$batch", 500, times=4)  # the attachments of the second page cannot be read
    assert sync_account(account.pk).status == "failed"
    account.refresh_from_db()
    assert Communication.objects.filter(account=account).count() == 4
    assert sync_account(account.pk).status == "succeeded"
    assert Communication.objects.filter(account=account).count() == 6
    assert last_run(account).created == 2


def test_attachments_metadata_through_batch_and_content_up_to_the_cap(harness, graph_fake, settings):
    settings.ATTACHMENT_MAX_BYTES = 1000
    [with_files] = harness.add_messages(1, attachments=[("notes.txt", "text/plain", b"small file"),
                                                        ("big.bin", "application/octet-stream", b"x" * 5000)])
    harness.add_messages(3)
    account = harness.make_account()
    assert sync_account(account.pk).status == "succeeded"
    files = {a.filename: a for a in Attachment.objects.filter(communication=stored(account, with_files))}
    assert files["notes.txt"].is_stored and files["notes.txt"].size == 10
    assert not files["big.bin"].is_stored and files["big.bin"].size == 5000
    assert len(graph_fake.graph_requests(r"/attachments\?")) == 1  # inside one $batch
    assert len(graph_fake.graph_requests(r"/attachments/[^/]+/\$value")) == 1  # only the small one's content


def test_an_outlook_reply_joins_the_thread_first_synced_from_imap(harness, user, graph_fake):
    imap = ProviderAccount.objects.create(owner=user, provider="imap", display_name="IMAP",
                                          external_address=harness.email, config={"email": harness.email})
    store_batch(imap, [message(rfc_message_id="original-77@acme.com", subject="Proposal",
                               provider_thread_id="")])
    imap_thread = Communication.objects.get(account=imap).conversation_id
    # Sent from Outlook: in Sent Items, with no internetMessageHeaders; only its MIME says what it answers.
    sent = harness.box.add(subject="Re: Proposal", sender=harness.email, to="carol@acme.com", folder="SentItems",
                           in_reply_to="<original-77@acme.com>", references="<original-77@acme.com>")
    # Received in Outlook: its internetMessageHeaders carry the references.
    received = harness.box.add(subject="Re: Re: Proposal", in_reply_to=f"<{sent}@x>",
                               references="<original-77@acme.com>")
    harness.box.add(subject="Unrelated")
    account = harness.make_account()
    assert sync_account(account.pk).status == "succeeded"
    reply = stored(account, sent)
    assert reply.in_reply_to == "original-77@acme.com" and reply.conversation_id == imap_thread
    assert stored(account, received).conversation_id == imap_thread
    assert len(graph_fake.graph_requests(r"/\$value$")) == 1  # only the sent reply needed its MIME


def test_a_historical_range_lists_with_a_received_date_filter(harness, graph_fake):
    now = timezone.now()
    old = harness.box.add(subject="old", received=now - dt.timedelta(days=40))
    harness.box.add(subject="older", received=now - dt.timedelta(days=90))
    harness.box.add(subject="new")
    account = harness.make_account()
    from integrations.providers.outlook.provider import OutlookProvider

    with OutlookProvider(account) as provider:
        provider.authenticate()
        batch = provider.fetch_range(now - dt.timedelta(days=60), now - dt.timedelta(days=30), None)
        while batch.next_page_token is not None:
            more = provider.fetch_range(now - dt.timedelta(days=60), now - dt.timedelta(days=30),
                                        batch.next_page_token)
            batch.messages += more.messages
            batch.next_page_token = more.next_page_token
    assert [m.provider_message_id for m in batch.messages] == [old]
    listed = graph_fake.graph_requests(r"/mailFolders/Inbox/messages\?")
    assert "receivedDateTime ge" in urllib.parse.unquote(listed[0][1])


def test_the_budget_pauses_a_mailbox_that_used_it(harness, settings):
    settings.OUTLOOK_REQUESTS_PER_10_MINUTES = 10
    account = harness.make_account()
    client = GraphClient(account)
    for _ in range(10):
        client.get("me")
    with pytest.raises(RateLimited) as raised:
        for _ in range(30):
            client.get("me")
    assert raised.value.retry_after > client_module.MAX_INLINE_WAIT_SECONDS


def test_the_budget_refills_at_its_rate():
    budget = Budget(600, 600.0)
    assert budget.take() == 0.0
    budget.tokens = 0.0
    assert 0.9 < budget.take() <= 1.0


def test_at_most_four_requests_per_mailbox_at_once(harness):
    account = harness.make_account()
    client = GraphClient(account)
    assert client.semaphore is GraphClient(account).semaphore  # shared by every client of the mailbox
    assert client.semaphore._value == client_module.MAX_CONCURRENT == 4


def test_nothing_in_the_mailbox_is_changed(harness, graph_fake):
    harness.add_messages(3, attachments=[("a.txt", "text/plain", b"a")])
    account = harness.make_account()
    sync_account(account.pk)
    assert {method for method, _path, _headers in graph_fake.graph_requests()} <= {"GET", "POST"}
    posts = [path for method, path, _headers in graph_fake.graph_requests() if method == "POST"]
    assert posts and all(path.endswith("/$batch") for path in posts)


# --- write-back: marking messages read (Capability.MARK_READ) ------------------------------------

def test_mark_read_without_mail_readwrite_says_to_reconnect_and_changes_nothing(harness, graph_fake):
    from integrations.providers.base import Capability, PermanentError
    from integrations.providers.outlook.provider import OutlookProvider

    unread = harness.box.add(subject="Task")
    account = harness.make_account()  # signed in read-only
    blocker = OutlookProvider.missing_grant(account, Capability.MARK_READ)
    assert "read-only access" in blocker and "reconnect it" in blocker
    graph_fake.requests.clear()
    with OutlookProvider(account) as provider, pytest.raises(PermanentError, match="read-only access"):
        provider.mark_read([f"Inbox:{unread}"])
    assert graph_fake.graph_requests() == [] and harness.box.messages[unread].fields["isRead"] is False


def test_an_account_stored_before_scopes_were_recorded_is_read_only(harness):
    from integrations.providers.base import Capability
    from integrations.providers.outlook.provider import OutlookProvider

    account = harness.make_account()
    account.credentials = {key: value for key, value in account.credentials.items() if key != "scopes"}
    assert auth.stored_scopes(account.credentials) == auth.SCOPES
    assert "read-only access" in OutlookProvider.missing_grant(account, Capability.MARK_READ)


def test_mark_read_when_microsoft_withdrew_the_permission(harness, graph_fake):
    from integrations.providers.base import PermanentError
    from integrations.providers.outlook.provider import OutlookProvider

    unread = harness.box.add(subject="Task")
    account = harness.make_account()
    # The stored grant says Mail.ReadWrite, but the token Graph honours no longer carries it.
    account.credentials = {**account.credentials, "scopes": [*auth.SCOPES, auth.MAIL_READ_WRITE]}
    with OutlookProvider(account) as provider, pytest.raises(PermanentError, match="Reconnect the account and allow"):
        provider.mark_read([f"Inbox:{unread}"])
    assert [r[0] for r in graph_fake.graph_requests("/me/messages/")] == ["PATCH"]
    assert harness.box.messages[unread].fields["isRead"] is False


def test_mark_read_of_a_message_deleted_since_the_sync(harness):
    from integrations.providers.base import PermanentError
    from integrations.providers.outlook.provider import OutlookProvider

    gone = harness.box.add(subject="Task")
    account = harness.make_account()
    harness.allow_mark_read(account)
    harness.box.delete(gone)
    with OutlookProvider(account) as provider, pytest.raises(PermanentError, match="no longer in the Outlook mailbox"):
        provider.mark_read([f"Inbox:{gone}"])


def test_mark_read_is_retried_when_throttled_and_changes_only_isread(harness, graph_fake, slept):
    from integrations.providers.outlook.provider import OutlookProvider

    unread = harness.box.add(subject="Task", flagged=True)
    account = harness.make_account()
    harness.allow_mark_read(account)
    before = dict(harness.box.messages[unread].fields)
    graph_fake.fail("PATCH", "/me/messages/", 429, headers={"Retry-After": "2"})
    with OutlookProvider(account) as provider:
        provider.mark_read([f"SentItems:{unread}"])  # the id is immutable: the folder part does not matter
    assert slept == [2.0]
    patches = graph_fake.graph_requests("/me/messages/")
    assert [r[0] for r in patches] == ["PATCH", "PATCH"]
    assert harness.box.messages[unread].fields == {**before, "isRead": True}


def test_a_refresh_asks_for_the_scopes_the_account_was_granted(harness, graph_fake):
    """Graph refuses the access token (401): msal refreshes it asking for the stored scopes, so the
    new token still carries Mail.ReadWrite and the PATCH goes through."""
    from integrations.providers.outlook.provider import OutlookProvider

    unread = harness.box.add(subject="Task")
    account = harness.make_account()
    harness.allow_mark_read(account)
    graph_fake.expire_access_tokens(harness.email)
    with OutlookProvider(account) as provider:
        provider.mark_read([f"Inbox:{unread}"])
    assert graph_fake.counts["token"] >= 1 and harness.box.messages[unread].fields["isRead"] is True
