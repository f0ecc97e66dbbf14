"""The IMAP provider (imapclient), for any IMAP server including Gmail's.

Cursor: ``{"folders": {name: {"uidvalidity", "last_uid", "highestmodseq", ...}}}``.
New mail is fetched by UID, in pages bounded by count and by bytes (settings.PAGE_MAX_BYTES);
a message over settings.MESSAGE_MAX_BYTES is recorded from its headers alone, so memory is
bounded by settings, not by the mailbox or its largest message. With CONDSTORE, flag
changes arrive through CHANGEDSINCE, a bounded number of messages at a time; with QRESYNC,
expunged UIDs arrive as VANISHED ranges and are soft-deleted. A UIDVALIDITY change
invalidates the cursor (one full resync; ids based on Message-ID keep it free of
duplicates). Folders are only ever EXAMINEd (read-only) and bodies fetched with
BODY.PEEK, so nothing on the server changes, not even the \\Seen flag.

Security "none" is refused unless settings allow it (see insecure_refusal), before any
connection is made. Passwords log in with UTF-8 AUTHENTICATE PLAIN when offered, and no
exception raised while logging in carries them.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError
from imapclient.response_parser import parse_fetch_response

from conversations.messages import ParsedMessage
from conversations.parsing import parse_headers_only, parse_message
from integrations.providers.base import (
    AuthError,
    BackfillWindow,
    Batch,
    Capability,
    Cursor,
    CursorExpired,
    MessageProvider,
    MessageUpdate,
    PageToken,
    PermanentError,
    ProviderError,
    RefRange,
    TransientError,
)

SECURITY_CHOICES = ("ssl", "starttls", "none")
# How much of the header block of a message over MESSAGE_MAX_BYTES is fetched: real headers
# are a few KB; a mail loop can stack up megabytes of Received lines.
HEADERS_MAX_BYTES = 256 * 1024
# UIDs one UID SEARCH may span. Its answer is a single line, and imaplib refuses lines over
# 1 MB (imaplib._MAXLINE) with an error that would recur on every retry; 50,000 UIDs of
# ten digits are 550 KB.
MAX_SEARCH_SPAN = 50_000
_PLAUSIBLE_YEARS = range(1970, 2201)
_SEEN, _FLAGGED, _SENT = b"\\Seen", b"\\Flagged", b"\\Sent"


@dataclasses.dataclass
class FolderState:
    """Where a folder's delta stands. While flag changes are read window by window,
    ``changes_from`` is the UID the next window starts at and ``changes_modseq`` the
    HIGHESTMODSEQ the folder moves to once the last window is read (0, 0 otherwise)."""

    uidvalidity: int
    last_uid: int
    highestmodseq: int = 0
    changes_from: int = 0
    changes_modseq: int = 0

    @classmethod
    def from_json(cls, data: dict[str, int]) -> FolderState:
        return cls(int(data["uidvalidity"]), int(data["last_uid"]), int(data.get("highestmodseq", 0)),
                   int(data.get("changes_from", 0)), int(data.get("changes_modseq", 0)))


def insecure_refusal(host: str, security: str) -> str | None:
    """Why ``host`` may not be used with security "none" (None if it may, or if TLS is used).

    Without TLS the password crosses the network in clear text, and whoever can edit an
    account's host (a staff user) could point it at a server of theirs and collect the
    owner's password. Allowed only with settings.ALLOW_INSECURE_IMAP, or in DEBUG for a
    loopback host (a local test server).
    """
    if security != "none" or settings.ALLOW_INSECURE_IMAP or (settings.DEBUG and _is_loopback(host)):
        return None
    return (f'Security "none" would send the password to {host} in clear text: use ssl or starttls. '
            "Only for a trusted network, an administrator can allow it with ALLOW_INSECURE_IMAP=true.")


def _is_loopback(host: str) -> bool:
    """A literal loopback address or "localhost"; names are not resolved (DNS can change)."""
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class ImapProvider(MessageProvider):
    """config: host, port, security (ssl|starttls|none), username, folders (optional list).

    credentials: {"password": ...} or {"access_token": ...} (XOAUTH2).
    """

    key = "imap"
    display_name = "IMAP mailbox"
    capabilities = frozenset({Capability.EMAIL, Capability.FLAGS, Capability.DELETIONS, Capability.FOLDER_LABELS})
    page_size = 500  # pages are also capped by bytes (settings.PAGE_MAX_BYTES)
    # Messages one CHANGEDSINCE fetch may cover (parsed, about 30 MB at most), and the flag
    # updates one batch collects before the rest of a scan goes to the next call.
    changes_window = 50_000

    def __init__(self, account: Any) -> None:
        super().__init__(account)
        self.client: IMAPClient | None = None
        self.server_capabilities: frozenset[bytes] = frozenset()
        self._selected: tuple[str, dict[bytes, Any]] | None = None

    # --- connection --------------------------------------------------------------------

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

    # --- folders -----------------------------------------------------------------------

    def folders(self) -> list[str]:
        """The configured folders, else INBOX and the folder flagged \\Sent (RFC 6154)."""
        configured = self.account.config.get("folders")
        if configured:
            return list(configured)
        with self._errors("listing folders"):
            listed = self._client().list_folders()
            self.api_calls += 1
        sent = [name for flags, _delimiter, name in listed if _SENT in flags]
        return ["INBOX", *sent[:1]]

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

    # --- fetching ----------------------------------------------------------------------

    def _search_uids(self, criteria: list[Any], doing: str) -> list[int]:
        with self._errors(doing):
            found = self._client().search(criteria)
            self.api_calls += 1
        return list(found)

    def _bounded(self, uids: list[int], doing: str) -> dict[int, int | None]:
        """The leading UIDs that fit in one page, each mapped to its size if only its headers
        are to be fetched (it is over settings.MESSAGE_MAX_BYTES), else to None.

        A page holds at most ``page_size`` messages and settings.PAGE_MAX_BYTES of them, except
        that a message up to MESSAGE_MAX_BYTES may fill a page alone; a headers-only message
        counts for the header bytes it may bring. Both settings are read here, per page.
        """
        uids = uids[: self.page_size]
        if not uids:
            return {}
        with self._errors(doing):
            sizes = self._client().fetch(uids, ["RFC822.SIZE"])
            self.api_calls += 1
        page_limit, message_limit = settings.PAGE_MAX_BYTES, settings.MESSAGE_MAX_BYTES
        page: dict[int, int | None] = {}
        total = 0
        for uid in uids:
            size = _non_negative(sizes.get(uid, {}).get(b"RFC822.SIZE"))
            # No size: expunged since the SEARCH (the FETCH then returns nothing).
            oversized = size is not None and size > message_limit
            cost = min(size or 0, HEADERS_MAX_BYTES) if oversized else (size or 0)
            if page and total + cost > page_limit:
                break
            page[uid] = size if oversized else None
            total += cost
        return page

    def _fetch(self, folder: str, uidvalidity: int, page: dict[int, int | None]) -> list[ParsedMessage]:
        """The messages of a page from _bounded, in its order (newest first in a backfill,
        oldest first in a delta). Oversized ones are fetched as headers only, never whole."""
        whole = [uid for uid, size in page.items() if size is None]
        headers_only = [uid for uid, size in page.items() if size is not None]
        common = ["FLAGS", "INTERNALDATE"] + (["X-GM-MSGID", "X-GM-THRID"] if self.gmail else [])
        fetched: dict[int, Any] = {}
        with self._errors(f"fetching from {folder}"):
            for uids, part in ((whole, "BODY.PEEK[]"), (headers_only, f"BODY.PEEK[HEADER]<0.{HEADERS_MAX_BYTES}>")):
                if uids:
                    fetched.update(self._client().fetch(uids, [part, *common]))
                    self.api_calls += 1
        messages = []
        for uid, size in page.items():
            data = fetched.get(uid, {})
            raw = data.get(b"BODY[]") if size is None else _header_part(data)
            if raw is None:
                continue  # expunged between SEARCH and FETCH
            messages.append(self._to_message(folder, uidvalidity, uid, raw, data, headers_only_size=size))
        return messages

    def _to_message(self, folder: str, uidvalidity: int, uid: int, raw: bytes, data: dict[bytes, Any],
                    *, headers_only_size: int | None = None) -> ParsedMessage:
        """``raw`` is the whole message, or with ``headers_only_size`` (its full size) only its headers."""
        flags = data.get(b"FLAGS", ())
        extra: dict[str, Any] = {}
        if self.gmail and data.get(b"X-GM-MSGID"):
            # Gmail's ids are stable across folders and equal (in hex) to the Gmail API ids.
            extra["provider_message_id"] = f"gm:{int(data[b'X-GM-MSGID']):x}"
            extra["provider_thread_id"] = f"{int(data[b'X-GM-THRID']):x}" if data.get(b"X-GM-THRID") else ""
        provider_message_id = extra.pop("provider_message_id", "")
        if headers_only_size is None:
            message = parse_message(raw, provider_message_id=provider_message_id)
        else:
            why = (f"message of {headers_only_size:,} bytes is over MESSAGE_MAX_BYTES "
                   f"({settings.MESSAGE_MAX_BYTES:,})")
            message = parse_headers_only(raw, headers_only_size, provider_message_id=provider_message_id, why=why)
        # A nonsense INTERNALDATE (year 9999 west of UTC overflows) falls back to the headers.
        received_at = _utc_internal_date(data.get(b"INTERNALDATE")) or message.received_at or message.sent_at
        return dataclasses.replace(
            message,
            labels=(folder,),
            ref=f"{folder}:{uidvalidity}:{uid}",
            is_read=_SEEN in flags,
            is_starred=_FLAGGED in flags,
            received_at=received_at,
            **extra,
        )

    # --- backfill: newest first ------------------------------------------------------------

    def fetch_initial(self, window: BackfillWindow, page_token: PageToken | None) -> Batch:
        token = page_token or self._start_backfill()
        order: list[str] = token["order"]
        while token["index"] < len(order):
            folder = order[token["index"]]
            state = FolderState.from_json(token["folders"][folder])
            status = self._select(folder, fresh=False)
            if int(status[b"UIDVALIDITY"]) != state.uidvalidity:
                # Reset under a resumed backfill: the refs stored so far name dead UIDs.
                raise CursorExpired(f"UIDVALIDITY of {folder} changed during the backfill")
            uids = self._uids_below(token["below"], window, folder)
            if not uids:
                token = {**token, "index": token["index"] + 1}
                if token["index"] < len(order):
                    token["below"] = token["folders"][order[token["index"]]]["last_uid"] + 1
                continue
            page = self._bounded(uids, f"sizing messages in {folder}")
            messages = self._fetch(folder, state.uidvalidity, page)
            token = {**token, "below": min(page), "done": token["done"] + len(page)}
            return Batch(
                messages=messages,
                next_page_token=token,
                new_cursor={"folders": token["folders"]},
                progress=(token["done"], token["total"]),
            )
        return Batch(next_page_token=None, new_cursor={"folders": token["folders"]},
                     progress=(token["done"], token["total"]))

    def _start_backfill(self) -> PageToken:
        """Snapshots every folder's UIDVALIDITY/UIDNEXT/HIGHESTMODSEQ: the delta starts there."""
        folders: dict[str, dict[str, int]] = {}
        total = 0
        order = self.folders()
        for folder in order:
            status = self._select(folder)
            folders[folder] = dataclasses.asdict(_state_from_status(status))
            total += int(status.get(b"EXISTS", 0))
        return {"order": order, "folders": folders, "index": 0,
                "below": folders[order[0]]["last_uid"] + 1 if order else 1, "done": 0, "total": total}

    def _uids_below(self, below: int, window: BackfillWindow, folder: str) -> list[int]:
        """UIDs under ``below``, newest first: a page's worth or more, unless fewer are left.

        Searched in UID windows that grow while they come back sparse, each at most
        MAX_SEARCH_SPAN wide so that no answer outgrows a response line.
        """
        found: list[int] = []
        span, high = min(self.page_size * 2, MAX_SEARCH_SPAN), below - 1
        while high >= 1 and len(found) < self.page_size:
            low = max(1, high - span + 1)
            criteria: list[Any] = ["UID", f"{low}:{high}"]
            if window.since is not None:
                criteria += ["SINCE", window.since.date()]
            # RFC 3501: a range may include the highest UID even outside it; filter again.
            found += sorted((u for u in self._search_uids(criteria, f"searching {folder}") if low <= u <= high),
                            reverse=True)
            high, span = low - 1, min(span * 8, MAX_SEARCH_SPAN)
        return found

    def _uids_from(self, first: int, last: int, folder: str) -> tuple[list[int], int]:
        """UIDs in ``first..last``, oldest first, a page's worth or more unless fewer are left,
        and the UID the search got up to (windows as in _uids_below)."""
        found: list[int] = []
        span, low = min(self.page_size * 2, MAX_SEARCH_SPAN), first
        while low <= last and len(found) < self.page_size:
            high = min(last, low + span - 1)
            found += sorted(u for u in self._search_uids(["UID", f"{low}:{high}"], f"searching {folder}")
                            if low <= u <= high)
            low, span = high + 1, min(span * 8, MAX_SEARCH_SPAN)
        return found, low - 1

    # --- delta -------------------------------------------------------------------------------

    def fetch_since(self, cursor: Cursor) -> Batch:
        folders = {name: FolderState.from_json(data) for name, data in cursor.get("folders", {}).items()}
        for folder in self.folders():
            folders.setdefault(folder, None)  # type: ignore[arg-type]  # newly configured folder
        batch = Batch()
        budget = self.page_size
        for folder, state in folders.items():
            status = self._select(folder)
            current = _state_from_status(status)
            if state is None:
                state = FolderState(current.uidvalidity, 0, current.highestmodseq)
            if current.uidvalidity != state.uidvalidity:
                raise CursorExpired(
                    f"UIDVALIDITY of {folder} changed from {state.uidvalidity} to {current.uidvalidity}"
                )
            if self.condstore and state.highestmodseq and (
                state.changes_from or current.highestmodseq > state.highestmodseq
            ):
                if not state.changes_from:
                    state.changes_modseq = current.highestmodseq
                if self._changes_since(folder, state, int(status.get(b"EXISTS", 0)), batch):
                    state.highestmodseq, state.changes_from, state.changes_modseq = state.changes_modseq, 0, 0
                else:
                    batch.next_page_token = {"more": folder}
            elif self.condstore and not state.highestmodseq:
                # A cursor made without CONDSTORE (or from a NOMODSEQ mailbox): start tracking
                # flag changes from now on, instead of never.
                state.highestmodseq = current.highestmodseq
            if budget > 0 and current.last_uid > state.last_uid:
                new_uids, searched_to = self._uids_from(state.last_uid + 1, current.last_uid, folder)
                page = self._bounded(new_uids, f"sizing messages in {folder}")
                batch.messages.extend(self._fetch(folder, state.uidvalidity, page))
                budget -= len(page)
                if len(page) < len(new_uids):
                    state.last_uid = max(page)
                    batch.next_page_token = {"more": folder}
                elif searched_to < current.last_uid:
                    state.last_uid = searched_to
                    batch.next_page_token = {"more": folder}
                else:
                    state.last_uid = current.last_uid
            elif current.last_uid > state.last_uid:
                batch.next_page_token = {"more": folder}
            if not self.condstore:
                state.highestmodseq = state.changes_from = state.changes_modseq = 0
            folders[folder] = state
        batch.new_cursor = {"folders": {name: dataclasses.asdict(s) for name, s in folders.items()}}
        return batch

    def _changes_since(self, folder: str, state: FolderState, exists: int, batch: Batch) -> bool:
        """Flag changes (CONDSTORE) and, with QRESYNC, expunges since the stored HIGHESTMODSEQ.

        Read in UID windows of at most ``changes_window`` messages, from ``state.changes_from``
        on, until the window reaching ``state.last_uid`` (True) or until ``changes_window``
        updates are collected (False; ``state.changes_from`` says where to go on): "mark all
        as read" on a million messages must not come back as one answer or one batch.
        """
        start, first_seq = max(1, state.changes_from), None
        collected = len(batch.updates)
        with self._errors(f"reading changes in {folder}"):
            while start <= state.last_uid:
                if len(batch.updates) - collected >= self.changes_window:
                    state.changes_from = start
                    return False
                end, next_seq = state.last_uid, None
                if exists > self.changes_window:
                    if first_seq is None:
                        first_seq = 1 if start == 1 else self._seq_after(start - 1, exists)
                    last_seq = first_seq + self.changes_window - 1
                    uid = self._uids_at([last_seq]).get(last_seq) if last_seq < exists else None
                    if uid is not None:
                        end, next_seq = max(start, min(uid, state.last_uid)), last_seq + 1
                self._read_changes(folder, state, start, end, batch)
                start, first_seq = end + 1, next_seq
        state.changes_from = 0
        return True

    def _read_changes(self, folder: str, state: FolderState, start: int, end: int, batch: Batch) -> None:
        modifiers = [f"CHANGEDSINCE {state.highestmodseq}"] + (["VANISHED"] if self.qresync else [])
        client = self._client()
        changed = _fetch_range(client, f"{start}:{end}", "FLAGS", modifiers)
        self.api_calls += 1
        vanished = client._imap.untagged_responses.pop("VANISHED", [])  # noqa: SLF001  imapclient does not parse it
        for uid, data in changed.items():
            if start <= uid <= end and b"FLAGS" in data:
                flags = data[b"FLAGS"]
                batch.updates.append(MessageUpdate(f"{folder}:{state.uidvalidity}:{uid}", _SEEN in flags,
                                                   _FLAGGED in flags))
        prefix = f"{folder}:{state.uidvalidity}:"
        batch.deleted_ref_ranges += [RefRange(prefix, first, last)
                                     for first, last in _parse_vanished(vanished, state.last_uid)]

    def _seq_after(self, uid: int, exists: int) -> int:
        """The sequence number of the first message with a UID above ``uid`` (exists + 1 if none)."""
        found = self._client().fetch([uid], ["UID"])
        self.api_calls += 1
        if uid in found and isinstance(found[uid].get(b"SEQ"), int):
            return int(found[uid][b"SEQ"]) + 1
        low, high = 1, exists + 1  # gone since: binary search by sequence number
        while low < high:
            middle = (low + high) // 2
            at = self._uids_at([middle]).get(middle)
            if at is None or at > uid:
                high = middle
            else:
                low = middle + 1
        return low

    def _uids_at(self, seqs: list[int]) -> dict[int, int]:
        """Sequence number -> UID (a FETCH by sequence number, which imapclient does not offer)."""
        client = self._client()
        typ, data = client._imap.fetch(",".join(map(str, seqs)), "(UID)")  # noqa: SLF001
        self.api_calls += 1
        client._checkok("fetch", typ, data)  # noqa: SLF001
        parsed = parse_fetch_response([d for d in data if d is not None], client.normalise_times, False)
        return {seq: int(item[b"UID"]) for seq, item in parsed.items() if isinstance(item.get(b"UID"), int)}


def _fetch_range(client: IMAPClient, uid_range: str, attributes: str, modifiers: list[str]) -> dict[int, Any]:
    """UID FETCH over a range: imapclient 4.1's fetch() only accepts explicit UID lists."""
    tag = client._imap._command("UID", "FETCH", uid_range, f"({attributes})", f"({' '.join(modifiers)})")  # noqa: SLF001
    typ, data = client._imap._command_complete("FETCH", tag)  # noqa: SLF001
    client._checkok("fetch", typ, data)  # noqa: SLF001
    typ, data = client._imap._untagged_response(typ, data, "FETCH")  # noqa: SLF001
    return parse_fetch_response(data, client.normalise_times, True)


def _state_from_status(status: dict[bytes, Any]) -> FolderState:
    return FolderState(
        uidvalidity=int(status[b"UIDVALIDITY"]),
        last_uid=int(status.get(b"UIDNEXT", 1)) - 1,
        highestmodseq=int(status.get(b"HIGHESTMODSEQ", 0) or 0),
    )


def _parse_vanished(responses: list[Any], last_uid: int) -> list[tuple[int, int]]:
    """UID ranges from untagged "VANISHED (EARLIER) 3:5,9" responses, clamped to 1..last_uid,
    sorted and merged. Never expanded: a server may well say 1:4294967295."""
    spans: list[tuple[int, int]] = []
    for response in responses:
        if not isinstance(response, (bytes, str)):
            continue  # not a uid-set (a literal, say): nothing to read
        text = response.decode("ascii", "replace") if isinstance(response, bytes) else response
        for part in text.replace("(EARLIER)", " ").replace(" ", ",").split(","):
            first, _, last = part.partition(":")
            last = last or first
            if not (_is_uid(first) and _is_uid(last)):
                continue
            low, high = sorted((int(first), int(last)))
            low, high = max(low, 1), min(high, last_uid)
            if low <= high:
                spans.append((low, high))
    merged: list[tuple[int, int]] = []
    for low, high in sorted(spans):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _is_uid(text: str) -> bool:
    return 0 < len(text) <= 10 and text.isascii() and text.isdigit()  # UIDs are 32-bit


def _header_part(data: dict[bytes, Any]) -> bytes | None:
    """The header block of a BODY.PEEK[HEADER]<0.n> answer (the server names it BODY[HEADER]<0>)."""
    for key, value in data.items():
        if isinstance(key, bytes) and key.startswith(b"BODY[HEADER]") and isinstance(value, bytes):
            return value
    return None


def _non_negative(value: Any) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


def _utc_internal_date(value: Any) -> dt.datetime | None:
    """An INTERNALDATE in UTC, or None if it is missing, naive or out of range (year 9999 at
    -0500 is past datetime.max in UTC; a +9999 offset is no offset at all)."""
    if not isinstance(value, dt.datetime):
        return None
    try:
        if value.utcoffset() is None:
            return None
        utc = value.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        return None
    return utc if utc.year in _PLAUSIBLE_YEARS else None


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


