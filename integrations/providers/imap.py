"""The IMAP provider (imapclient), for any IMAP server including Gmail's.

Cursor: ``{"folders": {name: {"uidvalidity", "last_uid", "highestmodseq"}}}``.
New mail is fetched by UID, in pages bounded by count and by bytes, so memory stays
bounded whatever the mailbox size. With CONDSTORE, flag changes arrive through
CHANGEDSINCE; with QRESYNC, expunged UIDs arrive as VANISHED and are soft-deleted. A
UIDVALIDITY change invalidates the cursor (one full resync; ids based on Message-ID
keep it free of duplicates). Folders are only ever EXAMINEd (read-only) and bodies
fetched with BODY.PEEK, so nothing on the server changes, not even the \\Seen flag.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError
from imapclient.response_parser import parse_fetch_response

from conversations.messages import ParsedMessage
from conversations.parsing import parse_message
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
    TransientError,
)

SECURITY_CHOICES = ("ssl", "starttls", "none")
MAX_PAGE_BYTES = 32 * 1024 * 1024  # a page's messages are held in memory until stored
_SEEN, _FLAGGED, _SENT = b"\\Seen", b"\\Flagged", b"\\Sent"


@dataclasses.dataclass
class FolderState:
    uidvalidity: int
    last_uid: int
    highestmodseq: int = 0

    @classmethod
    def from_json(cls, data: dict[str, int]) -> FolderState:
        return cls(int(data["uidvalidity"]), int(data["last_uid"]), int(data.get("highestmodseq", 0)))


class ImapProvider(MessageProvider):
    """config: host, port, security (ssl|starttls|none), username, folders (optional list).

    credentials: {"password": ...} or {"access_token": ...} (XOAUTH2).
    """

    key = "imap"
    display_name = "IMAP mailbox"
    capabilities = frozenset({Capability.EMAIL, Capability.FLAGS, Capability.DELETIONS, Capability.FOLDER_LABELS})
    page_size = 500  # pages are also capped by bytes (MAX_PAGE_BYTES)

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
            try:
                client.shutdown()
            except Exception:  # already broken; nothing more to release
                pass

    def authenticate(self) -> None:
        if self.client is not None:
            return
        config = self.account.config
        security = config.get("security", "ssl")
        if not self.host or security not in SECURITY_CHOICES:
            raise PermanentError("The IMAP account needs a host and a security of ssl, starttls or none.")
        port = int(config.get("port") or (993 if security == "ssl" else 143))
        context = ssl.create_default_context()
        with self._errors("connecting"):
            try:
                client = IMAPClient(self.host, port=port, ssl=security == "ssl", ssl_context=context,
                                    timeout=settings.IMAP_TIMEOUT_SECONDS)
            except socket.gaierror as error:
                raise TransientError(f"Cannot resolve the IMAP host {self.host}: {error}") from None
            self.api_calls += 1
            client.normalise_times = False  # aware INTERNALDATEs, not naive local time
            if security == "starttls":
                client.starttls(context)
            credentials = self.account.credentials
            if credentials.get("access_token"):
                client.oauth2_login(self.username, credentials["access_token"])
            elif credentials.get("password"):
                client.login(self.username, credentials["password"])
            else:
                raise AuthError("No IMAP password or token is stored for this account.", permanent=True)
            self.api_calls += 1
            self.server_capabilities = frozenset(client.capabilities())
            if b"QRESYNC" in self.server_capabilities:
                client.enable("QRESYNC")  # implies CONDSTORE
            elif b"CONDSTORE" in self.server_capabilities:
                client.enable("CONDSTORE")
            self.client = client

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

    def _bounded(self, uids: list[int], doing: str) -> list[int]:
        """The leading UIDs that fit in one page by count and by bytes (at least one)."""
        uids = uids[: self.page_size]
        if len(uids) <= 1:
            return uids
        with self._errors(doing):
            sizes = self._client().fetch(uids, ["RFC822.SIZE"])
            self.api_calls += 1
        page, total = [], 0
        for uid in uids:
            total += int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
            if page and total > MAX_PAGE_BYTES:
                break
            page.append(uid)
        return page

    def _fetch(self, folder: str, uidvalidity: int, uids: list[int]) -> list[ParsedMessage]:
        if not uids:
            return []
        attributes = ["BODY.PEEK[]", "FLAGS", "INTERNALDATE"]
        if self.gmail:
            attributes += ["X-GM-MSGID", "X-GM-THRID"]
        with self._errors(f"fetching from {folder}"):
            fetched = self._client().fetch(uids, attributes)
            self.api_calls += 1
        messages = []
        for uid in uids:  # the caller's order: newest first in a backfill, oldest first in a delta
            data = fetched.get(uid, {})
            raw = data.get(b"BODY[]")
            if raw is None:
                continue  # expunged between SEARCH and FETCH
            messages.append(self._to_message(folder, uidvalidity, uid, raw, data))
        return messages

    def _to_message(self, folder: str, uidvalidity: int, uid: int, raw: bytes, data: dict[bytes, Any]) -> ParsedMessage:
        flags = data.get(b"FLAGS", ())
        extra: dict[str, Any] = {}
        if self.gmail and data.get(b"X-GM-MSGID"):
            # Gmail's ids are stable across folders and equal (in hex) to the Gmail API ids.
            extra["provider_message_id"] = f"gm:{int(data[b'X-GM-MSGID']):x}"
            extra["provider_thread_id"] = f"{int(data[b'X-GM-THRID']):x}" if data.get(b"X-GM-THRID") else ""
        message = parse_message(raw, provider_message_id=extra.pop("provider_message_id", ""))
        internal_date = data.get(b"INTERNALDATE")
        if isinstance(internal_date, dt.datetime) and internal_date.tzinfo is not None:
            extra["received_at"] = internal_date.astimezone(dt.UTC)
        return dataclasses.replace(
            message,
            labels=(folder,),
            ref=f"{folder}:{uidvalidity}:{uid}",
            is_read=_SEEN in flags,
            is_starred=_FLAGGED in flags,
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
        """UIDs under ``below``, newest first; the search window grows until a page is full."""
        if below <= 1:
            return []
        span = self.page_size * 2
        while True:
            low = max(1, below - span)
            criteria: list[Any] = ["UID", f"{low}:{below - 1}"]
            if window.since is not None:
                criteria += ["SINCE", window.since.date()]
            # RFC 3501: a range may include the highest UID even outside it; filter again.
            uids = sorted((u for u in self._search_uids(criteria, f"searching {folder}") if low <= u < below),
                          reverse=True)
            if len(uids) >= self.page_size or low == 1:
                return uids
            span *= 8

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
            if self.condstore and state.highestmodseq and current.highestmodseq > state.highestmodseq:
                self._changes_since(folder, state, batch)
                state.highestmodseq = current.highestmodseq
            elif self.condstore and not state.highestmodseq:
                # A cursor made without CONDSTORE (or from a NOMODSEQ mailbox): start tracking
                # flag changes from now on, instead of never.
                state.highestmodseq = current.highestmodseq
            if budget > 0 and current.last_uid > state.last_uid:
                new_uids = self._search_uids(["UID", f"{state.last_uid + 1}:*"], f"searching {folder}")
                new_uids = sorted(u for u in new_uids if u > state.last_uid)
                page = self._bounded(new_uids, f"sizing messages in {folder}")
                batch.messages.extend(self._fetch(folder, state.uidvalidity, page))
                budget -= len(page)
                if page:
                    state.last_uid = max(page)
                if len(page) < len(new_uids):
                    batch.next_page_token = {"more": folder}
                else:
                    state.last_uid = max(state.last_uid, current.last_uid)
            elif current.last_uid > state.last_uid:
                batch.next_page_token = {"more": folder}
            if not self.condstore:
                state.highestmodseq = 0
            folders[folder] = state
        batch.new_cursor = {"folders": {name: dataclasses.asdict(s) for name, s in folders.items()}}
        return batch

    def _changes_since(self, folder: str, state: FolderState, batch: Batch) -> None:
        """Flag changes (CONDSTORE) and, with QRESYNC, expunges since the stored HIGHESTMODSEQ."""
        if state.last_uid < 1:
            return
        modifiers = [f"CHANGEDSINCE {state.highestmodseq}"] + (["VANISHED"] if self.qresync else [])
        client = self._client()
        with self._errors(f"reading changes in {folder}"):
            changed = _fetch_range(client, f"1:{state.last_uid}", "FLAGS", modifiers)
            self.api_calls += 1
            vanished = client._imap.untagged_responses.pop("VANISHED", [])  # noqa: SLF001  imapclient does not parse it
        for uid, data in changed.items():
            if uid <= state.last_uid and b"FLAGS" in data:
                flags = data[b"FLAGS"]
                batch.updates.append(MessageUpdate(f"{folder}:{state.uidvalidity}:{uid}", _SEEN in flags,
                                                   _FLAGGED in flags))
        for uid in _parse_vanished(vanished):
            batch.deleted_refs.append(f"{folder}:{state.uidvalidity}:{uid}")


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


def _parse_vanished(responses: list[Any]) -> list[int]:
    """UIDs from untagged "VANISHED (EARLIER) 3:5,9" responses."""
    uids: list[int] = []
    for response in responses:
        text = response.decode() if isinstance(response, bytes) else str(response)
        text = text.replace("(EARLIER)", "").strip()
        for part in filter(None, text.split(",")):
            if ":" in part:
                start, end = (int(x) for x in part.split(":"))
                uids.extend(range(min(start, end), max(start, end) + 1))
            elif part.strip().isdigit():
                uids.append(int(part))
    return uids


def _text(error: BaseException) -> str:
    text = error.args[0] if error.args else str(error)
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)


