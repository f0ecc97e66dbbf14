"""Tests of the Dovecot test server and its fixtures (real server, no mocks)."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Iterator

import imapclient
import pytest
from imapclient.exceptions import IMAPClientError, LoginError

from tests.dovecot import DovecotServer, _pid_alive, append_many, make_base_dir
from tests.fixtures_dovecot import ImapUser, require_dovecot


def make_message(i: int, body_lines: int = 5) -> bytes:
    body = "".join(f"line {n} of message {i}\r\n" for n in range(body_lines))
    return (
        f"From: sender{i}@example.com\r\n"
        f"To: rcpt@example.com\r\n"
        f"Subject: Message {i}\r\n"
        f"Message-ID: <msg{i}@example.com>\r\n"
        f"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
        f"\r\n{body}"
    ).encode()


@pytest.fixture
def private_server() -> Iterator[DovecotServer]:
    """A second, unshared server for tests that stop/restart it."""
    binary = require_dovecot()
    base = make_base_dir("pytest-dovecot-private-")
    server = DovecotServer(base, binary=binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_login_works(imap_user: ImapUser) -> None:
    client = imap_user.client()
    try:
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
    finally:
        client.logout()


def test_connect_with_plain_imapclient(imap_user: ImapUser) -> None:
    client = imapclient.IMAPClient(imap_user.host, port=imap_user.port, ssl=False)
    try:
        client.login(imap_user.username, imap_user.password)
        assert client.noop()
    finally:
        client.logout()


def test_capabilities_include_condstore_and_qresync(imap_client: imapclient.IMAPClient) -> None:
    caps = set(imap_client.capabilities())
    assert {b"CONDSTORE", b"QRESYNC", b"UIDPLUS", b"SPECIAL-USE"} <= caps


def test_append_and_search(imap_client: imapclient.IMAPClient) -> None:
    imap_client.append("INBOX", make_message(1), flags=[b"\\Seen"])
    imap_client.append("INBOX", make_message(2))
    imap_client.select_folder("INBOX")
    assert len(imap_client.search("ALL")) == 2
    found = imap_client.search(["SUBJECT", "Message 2"])
    assert len(found) == 1
    assert imap_client.search("UNSEEN") == found


def test_sent_folder_has_special_use_flag(imap_client: imapclient.IMAPClient) -> None:
    sent = [name for flags, _, name in imap_client.list_folders() if b"\\Sent" in flags]
    assert sent == ["Sent"]
    assert imap_client.find_special_folder(imapclient.imapclient.SENT) == "Sent"


def test_wrong_password_raises_login_error(imap_user: ImapUser) -> None:
    with pytest.raises(LoginError):
        imap_user.server.client(imap_user.username, imap_user.password + "x")


def test_users_added_and_changed_while_running(dovecot_server: DovecotServer) -> None:
    # Several passwd-file rewrites within one second, with equal file sizes,
    # must all be picked up (Dovecot compares mtime seconds and size).
    dovecot_server.add_user("rapid-a", "pass-aaaa")
    dovecot_server.client("rapid-a", "pass-aaaa").logout()
    dovecot_server.set_password("rapid-a", "pass-bbbb")
    with pytest.raises(LoginError):
        dovecot_server.client("rapid-a", "pass-aaaa")
    dovecot_server.client("rapid-a", "pass-bbbb").logout()
    dovecot_server.add_user("rapid-b", "pass-cccc")
    dovecot_server.client("rapid-b", "pass-cccc").logout()
    dovecot_server.remove_user("rapid-a")
    dovecot_server.remove_user("rapid-b")
    with pytest.raises(LoginError):
        dovecot_server.client("rapid-b", "pass-cccc")


def test_invalid_user_names_rejected(dovecot_server: DovecotServer) -> None:
    with pytest.raises(ValueError):
        dovecot_server.add_user("../evil", "pw")
    with pytest.raises(ValueError):
        dovecot_server.add_user("ok-name", "has:colon")


def test_stop_start_same_base_dir_keeps_mail(private_server: DovecotServer) -> None:
    server = private_server
    server.add_user("persist", "secret")
    client = server.client("persist", "secret")
    client.append("INBOX", make_message(1))
    client.logout()
    port = server.port
    pid = int(server.pid_path.read_text())

    server.stop()
    assert not _pid_alive(pid)
    assert not server.running
    with pytest.raises(OSError):
        socket.create_connection((server.host, port), timeout=1).close()

    server.start()
    assert server.port == port
    client = server.client("persist", "secret")
    assert client.select_folder("INBOX")[b"EXISTS"] == 1
    client.logout()

    # A new instance on the same directory sees the same users and mail.
    server.stop()
    again = DovecotServer(server.base_dir, binary=server.binary)
    again.start()
    try:
        client = again.client("persist", "secret")
        assert client.select_folder("INBOX")[b"EXISTS"] == 1
        client.logout()
    finally:
        again.stop()


def test_restart(private_server: DovecotServer) -> None:
    private_server.add_user("r", "pw")
    private_server.restart()
    private_server.client("r", "pw").logout()


def test_start_failure_reports_log() -> None:
    require_dovecot()
    base = make_base_dir("pytest-dovecot-broken-")
    server = DovecotServer(base, startup_timeout=3)
    try:
        # Occupy the port Dovecot is told to use so that it cannot bind.
        with socket.socket() as blocker:
            blocker.bind((server.host, 0))
            blocker.listen()
            server._port = blocker.getsockname()[1]
            server._prepare_dirs()
            server._write_config()
            with pytest.raises(RuntimeError, match="Address already in use") as excinfo:
                server._spawn_and_wait()
        assert str(server.log_path) in str(excinfo.value)
        assert not server.running
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_append_many_fast_and_correct(imap_client: imapclient.IMAPClient) -> None:
    messages = [make_message(i, body_lines=60) for i in range(500)]
    started = time.monotonic()
    uids = append_many(imap_client, "INBOX", messages, batch_size=128)
    elapsed = time.monotonic() - started

    assert uids == list(range(1, 501))
    assert elapsed < 5, f"append_many took {elapsed:.2f}s for 500 messages"
    imap_client.select_folder("INBOX", readonly=True)
    assert len(imap_client.search("ALL")) == 500
    fetched = imap_client.fetch([uids[0], uids[-1]], ["BODY.PEEK[]"])
    assert fetched[uids[0]][b"BODY[]"] == messages[0]
    assert fetched[uids[-1]][b"BODY[]"] == messages[-1]


def test_append_many_with_flags(imap_client: imapclient.IMAPClient) -> None:
    uids = append_many(imap_client, "Sent", (make_message(i) for i in range(10)), flags=[b"\\Seen"])
    assert len(uids) == 10
    imap_client.select_folder("Sent", readonly=True)
    assert sorted(imap_client.search("SEEN")) == sorted(uids)
    assert append_many(imap_client, "Sent", []) == []


def test_append_many_to_missing_folder_raises(imap_client: imapclient.IMAPClient) -> None:
    with pytest.raises(IMAPClientError, match="TRYCREATE"):
        append_many(imap_client, "NoSuchFolder", [make_message(1)])
