"""pytest plugin: a real Dovecot IMAP server per session and a fresh user per test.

Load with ``pytest_plugins = ["tests.fixtures_dovecot"]`` in the top-level
conftest.  Without Dovecot installed (or not running as root) the fixtures
skip, except under CI (``CI=true``) where they fail: CI must exercise the real
server.
"""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import imapclient
import pytest

from tests.dovecot import DovecotServer, find_dovecot, make_base_dir

__all__ = ["ImapUser", "require_dovecot"]


def require_dovecot() -> str:
    """Return the dovecot binary path, or skip (fail under ``CI=true``).

    Call from a fixture or test that needs a Dovecot server of its own.
    """
    binary = find_dovecot()
    problem = None
    if binary is None:
        problem = "Dovecot is not installed (apt-get install dovecot-imapd)"
    elif os.geteuid() != 0:
        problem = "Dovecot test server needs root (it drops privileges itself)"
    if problem is None:
        assert binary is not None
        return binary
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{problem}; it is required under CI", pytrace=False)
    pytest.skip(problem)


@dataclass(frozen=True)
class ImapUser:
    """Credentials of a mailbox on :attr:`server` (plaintext IMAP, no TLS)."""

    username: str
    password: str
    host: str
    port: int
    server: DovecotServer

    def client(self) -> imapclient.IMAPClient:
        """A new logged-in connection; the caller must ``logout()`` it."""
        return self.server.client(self.username, self.password)


@pytest.fixture(scope="session")
def dovecot_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """One running Dovecot for the whole session, stopped and removed at the end.

    The server directory is created under ``/tmp`` rather than by
    ``tmp_path_factory`` because pytest keeps its temp root at mode 0700 and
    Dovecot's unprivileged processes must traverse the path.  The Dovecot log
    is copied into a ``tmp_path_factory`` directory at teardown for
    post-mortems.

    Tests that restart or stop the server must leave it running.
    """
    binary = require_dovecot()
    base = make_base_dir("pytest-dovecot-")
    server = DovecotServer(base, binary=binary)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            if server.log_path.exists():
                logs = tmp_path_factory.mktemp("dovecot-log")
                shutil.copy2(server.log_path, logs / server.log_path.name)
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def imap_user(dovecot_server: DovecotServer) -> Iterator[ImapUser]:
    """A brand-new user (empty mailbox, random password) on the session server.

    The login is removed after the test; its mail stays until session end.
    ``imap_user.port`` survives ``server.restart()`` (the port is kept while free).
    """
    username = f"u{uuid.uuid4().hex[:16]}"
    password = secrets.token_urlsafe(18)
    dovecot_server.add_user(username, password)
    yield ImapUser(
        username=username,
        password=password,
        host=dovecot_server.host,
        port=dovecot_server.port,
        server=dovecot_server,
    )
    if username in dovecot_server.users:
        # Nobody logs in as this random user again, so don't wait for Dovecot.
        dovecot_server.remove_user(username, wait=False)


@pytest.fixture
def imap_client(imap_user: ImapUser) -> Iterator[imapclient.IMAPClient]:
    """A logged-in client for :func:`imap_user`, logged out after the test."""
    client = imap_user.client()
    yield client
    try:
        client.logout()
    except Exception:  # noqa: BLE001 - the test may have closed it already
        pass
