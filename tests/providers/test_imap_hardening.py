"""IMAP hardening: no message can stop a mailbox or exhaust a worker (against a real Dovecot).

Memory is bounded by settings (PAGE_MAX_BYTES, MESSAGE_MAX_BYTES), never by the largest
message or by what the server says; security "none" is refused before a password can be
sent in clear text; passwords of any script log in (UTF-8 AUTHENTICATE PLAIN) and never
reach an exception; a nonsense INTERNALDATE cannot crash a sync. Nothing mocks imaplib.
"""
from __future__ import annotations

import datetime as dt
import imaplib
import io
import re
import socket
import sys
import time
import traceback
import tracemalloc
import uuid

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from imapclient.response_parser import parse_fetch_response

from conversations.models import Communication
from integrations.models import ProviderAccount, SyncRun
from integrations.providers.base import AuthError, BackfillWindow, PermanentError, RefRange
from integrations.providers.imap import protocol, security
from integrations.providers.imap.provider import ImapProvider
from integrations.sync import sync_account
from tests.dovecot import append_many
from tests.providers.imap_harness import make_raw

pytestmark = pytest.mark.django_db

SEEN = b"\\Seen"
# Every character non-ASCII, so "no character of the password" can be checked literally.
# Built from code points so that no source line shown in a traceback spells it out.
PASSWORD = "".join(map(chr, (0xF1, 0xF8, 0xE7, 0xE9, 0x65E5, 0x672C, 0x8A9E, 0x20AC, 0xDF, 0x446)))
WRONG_PASSWORD = "".join(map(chr, (0xE5, 0xE4, 0xF6, 0x3B1, 0x3B2, 0x3B3, 0x416, 0x6F22, 0x5B57, 0xFC)))


# --- helpers ---------------------------------------------------------------------------------

def make_account(imap_user, owner, *, folders=("INBOX",), password: str | None = None, **config) -> ProviderAccount:
    return ProviderAccount.objects.create(
        owner=owner, provider="imap", display_name="Dovecot", external_address=f"{imap_user.username}@example.org",
        config={"host": imap_user.host, "port": imap_user.port, "security": "none",
                "username": imap_user.username, "folders": list(folders), **config},
        credentials={"password": password or imap_user.password},
    )


def append(imap_user, raws: list[bytes], folder: str = "INBOX") -> list[int]:
    with imap_user.client() as client:
        return append_many(client, folder, raws)


def sized_raw(size: int, marker: str = "", **kwargs) -> bytes:
    """A message of exactly ``size`` bytes whose body repeats ``marker`` (lines of 76)."""
    head = make_raw(body="", **kwargs)
    line = ((marker or "x") * 80)[:76] + "\r\n"
    body = (line * (size // len(line) + 1)).encode()
    return head + body[: size - len(head)]


def pid(raw: bytes) -> str:
    from conversations.parsing import parse_message

    return parse_message(raw).provider_message_id


def backfill_pages(account: ProviderAccount) -> list:
    """Every fetch_initial batch of a fresh backfill, in order."""
    pages, token = [], None
    with ImapProvider(account) as provider:
        while True:
            batch = provider.fetch_initial(BackfillWindow(), token)
            pages.append(batch)
            token = batch.next_page_token
            if token is None:
                return pages


def deltas(account: ProviderAccount, cursor: dict, between=None) -> list:
    """fetch_since until the provider says there is no more; ``between(i)`` runs after call i."""
    batches = []
    with ImapProvider(account) as provider:
        for i in range(1000):
            batch = provider.fetch_since(cursor)
            batches.append(batch)
            cursor = batch.new_cursor
            if batch.next_page_token is None:
                return batches
            if between is not None:
                between(i)
    raise AssertionError("fetch_since never finished")


_LOGGED_OUT = r"imap\({user}\)<[^>]*><[^>]*>: Info: Disconnected: Logged out in=(\d+) out=(\d+)"


def bytes_sent_per_session(server, username: str) -> list[int]:
    """What Dovecot sent in each finished session of ``username`` (its own logout log line)."""
    logins = re.compile(rf"Login: user=<{re.escape(username)}>")
    logouts = re.compile(_LOGGED_OUT.format(user=re.escape(username)))
    deadline = time.monotonic() + 10
    while True:
        text = server.log_path.read_text(errors="replace")
        sent = [int(match.group(2)) for match in logouts.finditer(text)]
        if len(sent) >= len(logins.findall(text)) or time.monotonic() > deadline:
            return sent
        time.sleep(0.05)


def chain(error: BaseException) -> list[BaseException]:
    """The exception and everything reachable through __cause__ / __context__."""
    seen: list[BaseException] = []
    todo = [error]
    while todo:
        current = todo.pop()
        if current is None or any(current is s for s in seen):
            continue
        seen.append(current)
        todo += [current.__cause__, current.__context__]
    return seen


def assert_no_password_character(error: BaseException, password: str) -> None:
    texts = ["".join(traceback.format_exception(error))]
    for each in chain(error):
        texts += [str(each), repr(each), *(repr(arg) for arg in each.args)]
    for text in texts:
        leaked = {character for character in password if character in text}
        assert not leaked, f"password characters {leaked!r} in {text!r}"
    assert error.__cause__ is None and error.__context__ is None


class ListeningSocket:
    """A plain TCP listener that records whether anyone connected (no IMAP spoken)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]

    def connections(self) -> int:
        count = 0
        while True:
            try:
                connection, _ = self.sock.accept()
            except (TimeoutError, socket.timeout):
                return count
            connection.close()
            count += 1

    def close(self) -> None:
        self.sock.close()


# --- 1. memory bounded by settings ------------------------------------------------------------------

def test_backfill_pages_are_bounded_by_the_page_max_bytes_setting(imap_user, user, settings):
    raws = [sized_raw(3000) for _ in range(10)]
    append(imap_user, raws)
    account = make_account(imap_user, user)
    settings.PAGE_MAX_BYTES = 10_000  # read when paging, so a test (or an operator) can lower it

    pages = backfill_pages(account)

    filled = [page for page in pages if page.messages]
    assert [len(page.messages) for page in filled] == [3, 3, 3, 1]
    assert all(sum(m.raw_size for m in page.messages) <= 10_000 for page in filled)
    assert {m.provider_message_id for page in filled for m in page.messages} == {pid(r) for r in raws}
    assert [page.progress[0] for page in filled] == [3, 6, 9, 10]


def test_a_page_holds_one_message_up_to_message_max_bytes_on_its_own(imap_user, user, settings):
    small_old, large, small_new = sized_raw(2000), sized_raw(50_000, marker="LARGE"), sized_raw(2000)
    append(imap_user, [small_old, large, small_new])
    account = make_account(imap_user, user)
    settings.PAGE_MAX_BYTES, settings.MESSAGE_MAX_BYTES = 10_000, 100_000

    pages = [page for page in backfill_pages(account) if page.messages]

    assert [[m.provider_message_id for m in page.messages] for page in pages] == [
        [pid(small_new)], [pid(large)], [pid(small_old)]
    ]
    whole = pages[1].messages[0]
    assert "LARGE" in whole.body_text and not whole.warnings  # under MESSAGE_MAX_BYTES: parsed whole
    assert whole.raw_size == len(large)


def test_messages_over_message_max_bytes_are_stored_from_their_headers_without_fetching_them(
    imap_user, user, settings, dovecot_server
):
    before = sized_raw(1500, subject="Before")
    huge = sized_raw(60_000, marker="HUGEBODY", subject="Huge attachment")
    after = sized_raw(1500, subject="After")
    uids = append(imap_user, [before, huge, after])
    account = make_account(imap_user, user)
    settings.MESSAGE_MAX_BYTES = 8_000

    outcome = sync_account(account.pk)

    assert outcome.status == "succeeded", outcome
    run = SyncRun.objects.filter(account=account).latest("pk")
    assert (run.fetched, run.created) == (3, 3)
    row = Communication.objects.get(account=account, provider_message_id=pid(huge))  # the id a whole fetch gives
    assert row.subject == "Huge attachment" and row.participants.exists()
    assert row.raw_size == len(huge)
    assert row.body_text == "" and "HUGEBODY" not in row.body_html
    assert any("stored headers only" in warning and "60,000" in warning for warning in row.parse_warnings)
    assert "Before" in Communication.objects.get(provider_message_id=pid(before)).subject
    account.refresh_from_db()
    assert account.sync_cursor["folders"]["INBOX"]["last_uid"] == uids[-1]

    # A delta: a second huge message among new mail, the cursor moves past it.
    later_huge, later = sized_raw(30_000, marker="LATERBODY"), sized_raw(1000)
    new_uids = append(imap_user, [later_huge, later])
    assert sync_account(account.pk).status == "succeeded"
    row = Communication.objects.get(account=account, provider_message_id=pid(later_huge))
    assert row.raw_size == len(later_huge) and row.body_text == ""
    account.refresh_from_db()
    assert account.sync_cursor["folders"]["INBOX"]["last_uid"] == new_uids[-1]

    # Dovecot never sent a whole huge message: every session of this user stayed under its size.
    sent = bytes_sent_per_session(dovecot_server, imap_user.username)
    assert sent and max(sent) < 30_000, sent
    with imap_user.client() as client:  # BODY.PEEK[HEADER]: nothing was marked read
        client.select_folder("INBOX", readonly=True)
        assert not any(SEEN in data[b"FLAGS"] for data in client.fetch(uids + new_uids, ["FLAGS"]).values())

    # With a higher limit a full resync fetches them whole under the same ids: no duplicates.
    settings.MESSAGE_MAX_BYTES = 1_000_000
    assert sync_account(account.pk, full=True).status == "succeeded"
    assert Communication.objects.filter(account=account).count() == 5


def test_a_huge_header_block_is_fetched_only_up_to_a_bound(imap_user, user, settings, dovecot_server):
    received = "".join(f"Received: from relay{i}.example.net by mx.example.org; hop {i:06d}\r\n" for i in range(6000))
    raw = make_raw(subject="Looped", extra_headers=received, body="tiny")
    assert len(raw) > 400_000
    append(imap_user, [raw])
    account = make_account(imap_user, user)
    settings.MESSAGE_MAX_BYTES = 100_000

    assert sync_account(account.pk).status == "succeeded"

    row = Communication.objects.get(account=account)
    assert row.raw_size == len(raw) and row.subject == "Looped"
    assert max(bytes_sent_per_session(dovecot_server, imap_user.username)) < 300_000


def test_a_delta_never_asks_for_more_uids_than_one_response_line_holds(imap_user, user, monkeypatch):
    """imaplib refuses response lines over imaplib._MAXLINE (1 MB, about 140,000 UIDs in one
    SEARCH answer): an account that fell that far behind would fail every delta for good. The
    limit is lowered here so that 600 new UIDs are "too many" for one answer."""
    append(imap_user, [make_raw()])
    account = make_account(imap_user, user)
    assert sync_account(account.pk).status == "succeeded"
    new = [make_raw() for _ in range(600)]
    append(imap_user, new)
    monkeypatch.setattr(ImapProvider, "page_size", 50)
    monkeypatch.setattr(imaplib, "_MAXLINE", 1500)

    outcome = sync_account(account.pk)

    assert outcome.status == "succeeded", outcome
    assert Communication.objects.filter(account=account).count() == 601
    account.refresh_from_db()
    assert account.sync_cursor["folders"]["INBOX"]["last_uid"] == 601


def test_flag_changes_of_a_large_folder_arrive_in_bounded_batches(imap_user, user, monkeypatch):
    raws = [make_raw() for _ in range(40)]
    uids = append(imap_user, raws)
    account = make_account(imap_user, user)
    assert sync_account(account.pk).status == "succeeded"
    account.refresh_from_db()
    cursor = account.sync_cursor
    with imap_user.client() as client:
        client.select_folder("INBOX")
        client.add_flags(uids, [SEEN])  # "mark all as read"
    monkeypatch.setattr(ImapProvider, "changes_window", 8)

    expunged = [*uids[:3], uids[15]]

    def expunge_some(i: int) -> None:
        # After two windows of 8: earlier messages disappear, the last one read among them,
        # so the next window is found by sequence number again.
        if i == 1:
            with imap_user.client() as client:
                client.select_folder("INBOX")
                client.delete_messages(expunged)
                client.expunge()

    batches = deltas(account, cursor, between=expunge_some)

    assert len(batches) >= 5
    assert all(len(batch.updates) <= 8 for batch in batches)
    read = {update.ref.rsplit(":", 1)[1] for batch in batches for update in batch.updates if update.is_read}
    assert {int(uid) for uid in read} >= set(uids) - set(expunged)  # every message still there was reported
    final = batches[-1].new_cursor["folders"]["INBOX"]
    assert final["highestmodseq"] > cursor["folders"]["INBOX"]["highestmodseq"]


def test_few_changes_in_a_large_folder_are_read_window_by_window_in_one_batch(imap_user, user, monkeypatch):
    uids = append(imap_user, [make_raw() for _ in range(40)])
    account = make_account(imap_user, user)
    assert sync_account(account.pk).status == "succeeded"
    account.refresh_from_db()
    with imap_user.client() as client:
        client.select_folder("INBOX")
        client.add_flags([uids[2], uids[20], uids[39]], [SEEN])
        client.delete_messages([uids[10], uids[30]])
        client.expunge()
    monkeypatch.setattr(ImapProvider, "changes_window", 8)

    batches = deltas(account, account.sync_cursor)

    assert len(batches) == 1
    assert sorted(int(u.ref.rsplit(":", 1)[1]) for u in batches[0].updates) == [uids[2], uids[20], uids[39]]
    assert [(r.first, r.last) for r in batches[0].deleted_ref_ranges] == [(uids[10], uids[10]), (uids[30], uids[30])]
    state = batches[0].new_cursor["folders"]["INBOX"]
    assert state["changes_from"] == 0
    assert state["highestmodseq"] > account.sync_cursor["folders"]["INBOX"]["highestmodseq"]


# --- VANISHED: ranges, never expanded ------------------------------------------------------------------

def test_vanished_ranges_are_parsed_into_clamped_ranges_without_expanding_them():
    tracemalloc.start()
    try:
        ranges = protocol.parse_vanished([b"(EARLIER) 1:20000000", b"7", b"4294967295:90,3:5,junk,5:x"],
                                          last_uid=1000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000  # 20 million UIDs as ints would be hundreds of MB
    assert ranges == [(1, 1000)]  # 3:5, 7 and 90:4294967295 merge into the clamped 1:1000

    ranges = protocol.parse_vanished([b"(EARLIER) 9:3,12,14:15,2000:3000"], last_uid=20)
    assert ranges == [(3, 9), (12, 12), (14, 15)]
    assert protocol.parse_vanished([b"0:0", b"", b"(EARLIER)"], last_uid=20) == []


def test_expunges_become_ref_ranges(imap_user, user):
    raws = [make_raw() for _ in range(6)]
    uids = append(imap_user, raws)
    account = make_account(imap_user, user)
    assert sync_account(account.pk).status == "succeeded"
    account.refresh_from_db()
    validity = account.sync_cursor["folders"]["INBOX"]["uidvalidity"]
    with imap_user.client() as client:
        client.select_folder("INBOX")
        client.delete_messages([uids[1], uids[2], uids[4]])
        client.expunge()

    batches = deltas(account, account.sync_cursor)

    assert not any(batch.deleted_refs for batch in batches)
    ranges = [r for batch in batches for r in batch.deleted_ref_ranges]
    prefix = f"INBOX:{validity}:"
    assert ranges == [RefRange(prefix, uids[1], uids[2]), RefRange(prefix, uids[4], uids[4])]
    assert sync_account(account.pk).status == "succeeded"
    gone = Communication.objects.filter(account=account, deleted_at__isnull=False)
    assert set(gone.values_list("provider_message_id", flat=True)) == {pid(raws[i]) for i in (1, 2, 4)}


# --- 2. security "none" ------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "localhost", "LOCALHOST.", "::1", "[::1]"])
def test_loopback_hosts_may_skip_tls_in_debug_only(host, settings):
    settings.ALLOW_INSECURE_IMAP = False
    settings.DEBUG = True
    assert security.insecure_refusal(host, "none") is None
    settings.DEBUG = False
    assert "ALLOW_INSECURE_IMAP" in security.insecure_refusal(host, "none")
    assert security.insecure_refusal(host, "ssl") is None and security.insecure_refusal(host, "starttls") is None


@pytest.mark.parametrize("host", ["imap.example.org", "10.0.0.1", "127.0.0.1.nip.io", "localhost.example.org",
                                  "::ffff:10.0.0.1", "0.0.0.0"])
def test_other_hosts_need_allow_insecure_imap_even_in_debug(host, settings):
    settings.ALLOW_INSECURE_IMAP, settings.DEBUG = False, True
    refusal = security.insecure_refusal(host, "none")
    assert refusal and host in refusal and "ssl or starttls" in refusal
    settings.ALLOW_INSECURE_IMAP = True
    assert security.insecure_refusal(host, "none") is None


def test_security_none_is_refused_before_connecting(imap_user, user, settings):
    listener = ListeningSocket()
    try:
        settings.ALLOW_INSECURE_IMAP, settings.DEBUG = False, False
        account = make_account(imap_user, user, port=listener.port)
        with pytest.raises(PermanentError) as refused:
            ImapProvider(account).authenticate()
        assert "clear text" in str(refused.value) and "ALLOW_INSECURE_IMAP" in str(refused.value)
        assert listener.connections() == 0  # nothing was sent anywhere

        account.config = {**account.config, "host": "192.0.2.1"}  # not loopback: refused even in DEBUG
        settings.DEBUG = True
        with pytest.raises(PermanentError):
            ImapProvider(account).authenticate()
    finally:
        listener.close()

    # Through the engine: a settings error, no retries until someone fixes it.
    settings.DEBUG = False
    account = make_account(imap_user, user)
    assert sync_account(account.pk).status == "failed"
    account.refresh_from_db()
    assert account.status == "error" and account.next_sync_at is None
    assert "ALLOW_INSECURE_IMAP" in account.last_error

    settings.DEBUG = True  # a local test server in development
    with ImapProvider(make_account(imap_user, user)) as provider:
        provider.authenticate()
        assert provider.client is not None


def test_add_imap_account_refuses_security_none_and_saves_nothing(imap_user, user, settings, monkeypatch):
    settings.ALLOW_INSECURE_IMAP, settings.DEBUG = False, False
    listener = ListeningSocket()
    monkeypatch.setattr(sys, "stdin", io.StringIO(imap_user.password + "\n"))
    try:
        with pytest.raises(CommandError, match="clear text") as refused:
            call_command("add_imap_account", "--owner", user.username, "--host", "127.0.0.1",
                         "--port", str(listener.port), "--security", "none", "--username", imap_user.username,
                         "--password-stdin", stdout=io.StringIO(), stderr=io.StringIO())
        assert "ALLOW_INSECURE_IMAP" in str(refused.value)
        assert listener.connections() == 0
    finally:
        listener.close()
    assert not ProviderAccount.objects.exists()


# --- 3. passwords beyond ASCII ---------------------------------------------------------------------------

@pytest.fixture
def unicode_user(dovecot_server, imap_user):
    """imap_user's mailbox under a second login whose password is all non-ASCII."""
    from tests.fixtures_dovecot import ImapUser

    name = f"u{uuid.uuid4().hex[:16]}"
    dovecot_server.add_user(name, PASSWORD)
    yield ImapUser(username=name, password=PASSWORD, host=imap_user.host, port=imap_user.port, server=dovecot_server)
    dovecot_server.remove_user(name, wait=False)


def test_a_non_ascii_password_logs_in_with_utf8(unicode_user, user):
    account = make_account(unicode_user, user, password=PASSWORD)
    with ImapProvider(account) as provider:
        provider.authenticate()
        assert provider.client is not None and provider.condstore  # logged in, capabilities read after login
    assert sync_account(account.pk).status == "succeeded"


def test_the_connection_sends_small_commands_without_delay(unicode_user, user):
    # Nagle's algorithm holds a command sent right after another (AUTHENTICATE's second step)
    # for a delayed ACK: 40 ms on every sync. The socket must not use it.
    import socket

    account = make_account(unicode_user, user, password=PASSWORD)
    with ImapProvider(account) as provider:
        provider.authenticate()
        assert provider.client.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_a_wrong_non_ascii_password_is_an_auth_error_that_shows_none_of_it(unicode_user, user):
    account = make_account(unicode_user, user, password=WRONG_PASSWORD)
    with pytest.raises(AuthError) as failed:
        ImapProvider(account).authenticate()
    assert failed.value.permanent
    assert unicode_user.username in str(failed.value)
    assert_no_password_character(failed.value, WRONG_PASSWORD)

    outcome = sync_account(account.pk)
    account.refresh_from_db()
    assert outcome.status == "failed" and account.status == "reauth_required"
    assert not any(character in account.last_error for character in WRONG_PASSWORD)


def test_an_unencodable_password_is_an_auth_error_that_shows_none_of_it(unicode_user, user):
    broken = PASSWORD[:4] + "\ud800" + PASSWORD[4:]  # a lone surrogate: no UTF-8 for it
    for password in (broken, "nul\x00" + PASSWORD):
        account = make_account(unicode_user, user, password=password)
        with pytest.raises(AuthError) as failed:
            ImapProvider(account).authenticate()
        assert failed.value.permanent and "enter it again" in str(failed.value)
        assert_no_password_character(failed.value, password.replace("nul", ""))


def test_without_authenticate_plain_an_ascii_password_uses_login(imap_user, unicode_user, user, monkeypatch):
    """A server that does not offer AUTH=PLAIN (Dovecot does: the provider is told it does not)."""
    monkeypatch.setattr(ImapProvider, "_offers_plain", staticmethod(lambda client: False))
    with ImapProvider(make_account(imap_user, user)) as provider:
        provider.authenticate()
        assert provider.client is not None
    with pytest.raises(AuthError) as failed:
        ImapProvider(make_account(unicode_user, user, password=PASSWORD)).authenticate()
    assert failed.value.permanent and "AUTHENTICATE PLAIN" in str(failed.value)
    assert_no_password_character(failed.value, PASSWORD)


def test_add_imap_account_with_a_non_ascii_password(unicode_user, user, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    out = io.StringIO()
    call_command("add_imap_account", "--owner", user.username, "--host", unicode_user.host,
                 "--port", str(unicode_user.port), "--security", "none", "--username", unicode_user.username,
                 "--password-stdin", stdout=out, stderr=io.StringIO())
    assert ProviderAccount.objects.get(pk=int(out.getvalue())).credentials == {"password": PASSWORD}


# --- 4. INTERNALDATE out of range --------------------------------------------------------------------

def test_an_internaldate_in_year_9999_falls_back_to_the_date_header(user):
    """Dovecot replaces an APPEND date in the future with the current time (and reports it in
    UTC), so it cannot be made to send this: the FETCH line is parsed by imapclient's own
    parser, exactly as a server's answer would be, and handed to the provider."""
    raw = make_raw(subject="From the far future")
    line = b'7 (UID 7 FLAGS (\\Seen) INTERNALDATE "31-Dec-9999 23:00:00 -0500" BODY[] {%d}' % len(raw)
    fetched = parse_fetch_response([(line, raw), b")"], False, True)
    data = fetched[7]
    assert data[b"INTERNALDATE"].year == 9999  # what imapclient gives (normalise_times=False)
    account = ProviderAccount(owner=user, provider="imap", config={"host": "imap.example.org"})

    message = ImapProvider(account)._to_message("INBOX", 3, 7, data[b"BODY[]"], data)

    assert message.received_at == message.sent_at  # the Date header, not year 9999
    assert message.received_at.year == 2026

    early = dt.datetime(1, 1, 1, 0, 30, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert protocol.utc_internal_date(early) is None  # underflows in UTC
    west = dt.timezone(dt.timedelta(hours=-5))
    assert protocol.utc_internal_date(dt.datetime(9999, 12, 31, 23, tzinfo=west)) is None
    assert protocol.utc_internal_date(dt.datetime(2026, 10, 2, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == \
        dt.datetime(2026, 10, 2, 10, tzinfo=dt.UTC)
    assert protocol.utc_internal_date(dt.datetime(2026, 10, 2, 12)) is None  # naive: unknown zone
    assert protocol.utc_internal_date("31-Dec-9999") is None
