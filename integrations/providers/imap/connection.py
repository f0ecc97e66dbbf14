"""Connecting and logging in to an IMAP server, and mapping its failures onto ProviderError.

ImapConnection is ImapProvider's base class: it owns the instance's one IMAPClient (opened by
authenticate() or on first use, released by close()), the server's capabilities and the
folder currently EXAMINEd. Every server call is made under ``_errors``, which classifies
imapclient and socket failures once.

Security "none" is refused unless settings allow it (see security.insecure_refusal), before any
connection is made. Passwords log in with UTF-8 AUTHENTICATE PLAIN when offered, and no
exception raised while logging in carries them.
"""
from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from integrations.providers.base import AuthError, MessageProvider, PermanentError, ProviderError, TransientError
from integrations.providers.imap.connect import ImapConnect
from integrations.providers.imap.security import SECURITY_CHOICES, insecure_refusal


class ImapConnection(MessageProvider):
    """The connection half of ImapProvider (see there for ``config`` and ``credentials``):
    it implements ``authenticate()`` and ``close()``; ``api_calls`` counts every server call."""

    connect = ImapConnect()  # a form of settings and a password, tested before it is saved

    def __init__(self, account: Any) -> None:
        super().__init__(account)
        self.client: IMAPClient | None = None
        self.server_capabilities: frozenset[bytes] = frozenset()
        self._selected: tuple[str, dict[bytes, Any]] | None = None

    @property
    def host(self) -> str:
        return str(self.account.config.get("host", ""))

    @property
    def username(self) -> str:
        return str(self.account.config.get("username") or self.account.external_address)

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Maps every imapclient / socket failure onto the provider error family, once."""
        try:
            yield
        except LoginError as error:
            raise AuthError(
                f"The IMAP server {self.host} rejected the login for {self.username} ({_text(error)}).",
                permanent=True,
            ) from None
        except (IMAPClientAbortError, OSError, EOFError) as error:
            self._drop()
            raise TransientError(f"Connection to {self.host} lost while {doing}: {_text(error) or type(error).__name__}")
        except IMAPClientError as error:
            text = _text(error)
            if "AUTHENTICATIONFAILED" in text.upper():
                raise AuthError(f"The IMAP server {self.host} refused the credentials ({text}).", permanent=True) from None
            if "NONEXISTENT" in text.upper() or "doesn't exist" in text or "does not exist" in text:
                raise PermanentError(f"The IMAP folder is missing on {self.host} while {doing} ({text}).") from None
            raise TransientError(f"IMAP error from {self.host} while {doing}: {text}") from None

    def _drop(self) -> None:
        self._selected = None
        client, self.client = self.client, None
        if client is not None:
            _shutdown(client)

    def authenticate(self) -> None:
        if self.client is not None:
            return
        config = self.account.config
        security = config.get("security", "ssl")
        if not self.host or security not in SECURITY_CHOICES:
            raise PermanentError("The IMAP account needs a host and a security of ssl, starttls or none.")
        refusal = insecure_refusal(self.host, security)
        if refusal:
            raise PermanentError(refusal)  # before connecting: nothing is sent in clear text
        port = int(config.get("port") or (993 if security == "ssl" else 143))
        try:
            self.client = self._connect(security, port)
        except ProviderError as error:
            # What led here (imapclient's LoginError, an encoding error holding the password
            # as its .object) stays out of tracebacks, error reports and logs.
            error.__cause__ = error.__context__ = None
            error.__suppress_context__ = True
            raise

    def _connect(self, security: str, port: int) -> IMAPClient:
        context = ssl.create_default_context()
        with self._errors("connecting"):
            try:
                client = IMAPClient(self.host, port=port, ssl=security == "ssl", ssl_context=context,
                                    timeout=settings.IMAP_TIMEOUT_SECONDS)
            except socket.gaierror as error:
                raise TransientError(f"Cannot resolve the IMAP host {self.host}: {error}") from None
            self.api_calls += 1
        try:
            with self._errors("connecting"):
                # IMAP is a dialogue of short lines; with Nagle's algorithm a command sent right
                # after another (AUTHENTICATE's second step) waits for a delayed ACK: 40 ms a time.
                client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                client.normalise_times = False  # aware INTERNALDATEs, not naive local time
                if security == "starttls":
                    client.starttls(context)
            self._login(client)
            with self._errors("reading the server's capabilities"):
                self.server_capabilities = frozenset(client.capabilities())
                if b"QRESYNC" in self.server_capabilities:
                    client.enable("QRESYNC")  # implies CONDSTORE
                elif b"CONDSTORE" in self.server_capabilities:
                    client.enable("CONDSTORE")
        except BaseException:
            _shutdown(client)
            raise
        return client

    def _login(self, client: IMAPClient) -> None:
        """Logs in; every failure is a ProviderError whose text holds no credential."""
        credentials = self.account.credentials
        token, password = credentials.get("access_token"), credentials.get("password")
        login: Callable[[], object]
        if token:
            login = lambda: client.oauth2_login(self.username, token)  # noqa: E731
        elif password:
            login = self._password_login(client, password)
        else:
            raise AuthError("No IMAP password or token is stored for this account.", permanent=True)
        failure = ""
        try:
            with self._errors("logging in"):
                login()
                self.api_calls += 1
        except ProviderError:
            raise
        except Exception as error:  # anything else imaplib may raise mid-login: its text may hold the secret
            failure = type(error).__name__
        if failure:
            raise AuthError(f"Logging in to {self.host} as {self.username} failed ({failure}).", permanent=True)

    def _password_login(self, client: IMAPClient, password: str) -> Callable[[], object]:
        """UTF-8 AUTHENTICATE PLAIN (RFC 4616) when offered: imaplib's LOGIN encodes as ASCII."""
        secret, username = _utf8(password), _utf8(self.username)
        if secret is None or username is None or b"\0" in secret or b"\0" in username:
            # No UTF-8 for it (a lone surrogate), or a NUL, which SASL PLAIN cannot carry.
            raise AuthError("The stored IMAP password (or username) has characters that cannot be sent to a "
                            "server; enter it again.", permanent=True)
        if self._offers_plain(client):
            return lambda: client.sasl_login("PLAIN", _OneResponse(b"\0" + username + b"\0" + secret))
        if secret.isascii() and username.isascii():
            return lambda: client.login(self.username, password)
        raise AuthError(f"The IMAP server {self.host} does not offer AUTHENTICATE PLAIN, which a password or "
                        "username with non-ASCII characters needs (LOGIN is ASCII only).", permanent=True)

    @staticmethod
    def _offers_plain(client: IMAPClient) -> bool:
        # imaplib's own list, read at connect and again after STARTTLS. Not client.capabilities():
        # before login it would cache the pre-login list, hiding CONDSTORE/QRESYNC afterwards.
        return "AUTH=PLAIN" in (client._imap.capabilities or ())  # noqa: SLF001

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.logout()
                self.client = None
            except Exception:  # the server may already be gone: _drop closes the socket regardless
                pass
        self._drop()

    @property
    def condstore(self) -> bool:
        return bool({b"CONDSTORE", b"QRESYNC"} & self.server_capabilities)

    @property
    def qresync(self) -> bool:
        return b"QRESYNC" in self.server_capabilities

    @property
    def gmail(self) -> bool:
        return b"X-GM-EXT-1" in self.server_capabilities

    def _client(self) -> IMAPClient:
        if self.client is None:
            self.authenticate()
        assert self.client is not None
        return self.client

    def _select(self, folder: str, *, fresh: bool = True) -> dict[bytes, Any]:
        """EXAMINEs the folder. ``fresh=False`` reuses this connection's open folder: a
        backfill walks one folder page after page, and the server tells an open session
        of expunges itself, while re-opening costs a round trip and server work each page."""
        if not fresh and self._selected is not None and self._selected[0] == folder and self.client is not None:
            return self._selected[1]
        with self._errors(f"opening {folder}"):
            status = self._client().select_folder(folder, readonly=True)
            self.api_calls += 1
        self._selected = (folder, status)
        return status


class _OneResponse:
    """A SASL mechanism that answers the first challenge only (PLAIN); a second one is aborted."""

    def __init__(self, response: bytes) -> None:
        self.response: bytes | None = response

    def __call__(self, challenge: bytes) -> bytes | None:
        response, self.response = self.response, None
        return response

    def __repr__(self) -> str:
        return "_OneResponse(...)"


def _utf8(text: str) -> bytes | None:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return None


def _shutdown(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except Exception:  # already broken; nothing more to release
        pass


def _text(error: BaseException) -> str:
    text = error.args[0] if error.args else str(error)
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)
