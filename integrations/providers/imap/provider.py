"""ImapProvider: the IMAP backfill (newest first), delta and historical date range, on top of
ImapConnection.

Cursor: ``{"folders": {name: {"uidvalidity", "last_uid", "highestmodseq", ...}}}``.
New mail is fetched by UID, in pages bounded by count and by bytes (settings.PAGE_MAX_BYTES);
a message over settings.MESSAGE_MAX_BYTES is recorded from its headers alone, so memory is
bounded by settings, not by the mailbox or its largest message. With CONDSTORE, flag
changes arrive through CHANGEDSINCE, a bounded number of messages at a time; with QRESYNC,
expunged UIDs arrive as VANISHED ranges and are soft-deleted. A UIDVALIDITY change
invalidates the cursor (one full resync; ids based on Message-ID keep it free of
duplicates). A historical range is searched by day (UID SEARCH SINCE/BEFORE) and kept exactly
by INTERNALDATE; it never reads or moves the cursor. Folders are only ever EXAMINEd (read-only)
and bodies fetched with BODY.PEEK, so nothing on the server changes, not even the \\Seen flag.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from django.conf import settings
from imapclient.response_parser import parse_fetch_response

from conversations.messages import ParsedMessage
from conversations.parsing import parse_headers_only, parse_message
from integrations.providers.base import (
    BackfillWindow,
    Batch,
    Capability,
    Cursor,
    CursorExpired,
    MessageUpdate,
    PageToken,
    PermanentError,
    RefRange,
)
from integrations.providers.imap.connection import ImapConnection
from integrations.providers.imap.protocol import (
    FLAGGED,
    SEEN,
    SENT,
    FolderState,
    fetch_range,
    header_part,
    non_negative,
    parse_vanished,
    received_within,
    search_dates,
    state_from_status,
    utc_internal_date,
)

# How much of the header block of a message over MESSAGE_MAX_BYTES is fetched: real headers
# are a few KB; a mail loop can stack up megabytes of Received lines.
HEADERS_MAX_BYTES = 256 * 1024
# UIDs one UID SEARCH may span. Its answer is a single line, and imaplib refuses lines over
# 1 MB (imaplib._MAXLINE) with an error that would recur on every retry; 50,000 UIDs of
# ten digits are 550 KB.
MAX_SEARCH_SPAN = 50_000


class ImapProvider(ImapConnection):
    """config: host, port, security (ssl|starttls|none), username, folders (optional list).

    credentials: {"password": ...} or {"access_token": ...} (XOAUTH2).
    """

    key = "imap"
    display_name = "IMAP mailbox"
    capabilities = frozenset({Capability.EMAIL, Capability.FLAGS, Capability.DELETIONS, Capability.FOLDER_LABELS,
                              Capability.DATE_RANGE, Capability.MARK_READ})
    page_size = 500  # pages are also capped by bytes (settings.PAGE_MAX_BYTES)
    # Messages one CHANGEDSINCE fetch may cover (parsed, about 30 MB at most), and the flag
    # updates one batch collects before the rest of a scan goes to the next call.
    changes_window = 50_000

    # --- the one write: \Seen, when task write-back asks ------------------------------------

    def mark_read(self, refs: list[str]) -> None:
        """Sets \\Seen on each ref ("folder:uidvalidity:uid"), selecting its folder read-write.

        A folder recreated since the sync (another UIDVALIDITY) is refused: its UIDs name other
        messages now.
        """
        for ref in refs:
            folder, uidvalidity, uid = ref.rsplit(":", 2)
            with self._errors(f"marking message {uid} of {folder} as read"):
                status = self._client().select_folder(folder, readonly=False)
                self._selected = None  # no longer the EXAMINEd folder a backfill may reuse
                if int(status.get(b"UIDVALIDITY", 0)) != int(uidvalidity):
                    raise PermanentError(f"The folder {folder} was recreated since the message was synced "
                                         "(its UIDVALIDITY changed): sync again, then mark it.")
                self._client().add_flags([int(uid)], [SEEN])
                self.api_calls += 2

    # --- folders -----------------------------------------------------------------------

    def folders(self) -> list[str]:
        """The configured folders, else INBOX and the folder flagged \\Sent (RFC 6154)."""
        configured = self.account.config.get("folders")
        if configured:
            return list(configured)
        with self._errors("listing folders"):
            listed = self._client().list_folders()
            self.api_calls += 1
        sent = [name for flags, _delimiter, name in listed if SENT in flags]
        return ["INBOX", *sent[:1]]

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
        return self._fit(uids, self._sizes(uids, doing))

    def _sizes(self, uids: list[int], doing: str, extra: tuple[str, ...] = ()) -> dict[int, Any]:
        """One FETCH of RFC822.SIZE (and ``extra`` items) for ``uids``."""
        if not uids:
            return {}
        with self._errors(doing):
            sizes = self._client().fetch(uids, ["RFC822.SIZE", *extra])
            self.api_calls += 1
        return sizes

    def _fit(self, uids: list[int], sizes: dict[int, Any]) -> dict[int, int | None]:
        """The leading ``uids`` that fit in one page (see _bounded), from their fetched sizes."""
        page_limit, message_limit = settings.PAGE_MAX_BYTES, settings.MESSAGE_MAX_BYTES
        page: dict[int, int | None] = {}
        total = 0
        for uid in uids:
            size = non_negative(sizes.get(uid, {}).get(b"RFC822.SIZE"))
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
            raw = data.get(b"BODY[]") if size is None else header_part(data)
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
        received_at = utc_internal_date(data.get(b"INTERNALDATE")) or message.received_at or message.sent_at
        return dataclasses.replace(
            message,
            labels=(folder,),
            ref=f"{folder}:{uidvalidity}:{uid}",
            is_read=SEEN in flags,
            is_starred=FLAGGED in flags,
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
            dates = ["SINCE", window.since.date()] if window.since is not None else []
            uids = self._uids_below(token["below"], folder, dates)
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
            folders[folder] = dataclasses.asdict(state_from_status(status))
            total += int(status.get(b"EXISTS", 0))
        return {"order": order, "folders": folders, "index": 0,
                "below": folders[order[0]]["last_uid"] + 1 if order else 1, "done": 0, "total": total}

    def _uids_below(self, below: int, folder: str, dates: list[Any]) -> list[int]:
        """UIDs under ``below`` matching the SEARCH criteria ``dates`` (SINCE/BEFORE), newest
        first: a page's worth or more, unless fewer are left.

        Searched in UID windows that grow while they come back sparse, each at most
        MAX_SEARCH_SPAN wide so that no answer outgrows a response line.
        """
        found: list[int] = []
        span, high = min(self.page_size * 2, MAX_SEARCH_SPAN), below - 1
        while high >= 1 and len(found) < self.page_size:
            low = max(1, high - span + 1)
            criteria: list[Any] = ["UID", f"{low}:{high}", *dates]
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

    # --- historical range: newest first, never the cursor --------------------------------------

    def fetch_range(self, since: dt.datetime, until: dt.datetime, page_token: PageToken | None) -> Batch:
        """One page of the messages whose INTERNALDATE is in [since, until), folder by folder,
        highest UID first. UID SEARCH SINCE/BEFORE over widened days (see search_dates) finds
        the candidates; their INTERNALDATEs, fetched with the sizes, keep the exact range.
        Token: the folder ``order`` and ``index``, and the folder's ``uidvalidity`` and the UID
        its next page is ``below`` (None before its first page)."""
        token = dict(page_token) if page_token else {
            "order": self.folders(), "index": 0, "uidvalidity": None, "below": None}
        dates = search_dates(since, until)
        while token["index"] < len(token["order"]):
            folder = token["order"][token["index"]]
            status = self._select(folder, fresh=token["below"] is None)
            uidvalidity = int(status[b"UIDVALIDITY"])
            if token["below"] is None:
                token.update(uidvalidity=uidvalidity, below=int(status.get(b"UIDNEXT", 1)))
            elif uidvalidity != token["uidvalidity"]:
                raise CursorExpired(f"UIDVALIDITY of {folder} changed during a historical sync")
            candidates = self._uids_below(token["below"], folder, dates)[: self.page_size]
            if not candidates:
                token.update(index=token["index"] + 1, uidvalidity=None, below=None)
                continue
            found = self._sizes(candidates, f"sizing messages in {folder}", ("INTERNALDATE",))
            inside = [uid for uid in candidates if received_within(found.get(uid, {}), since, until)]
            page = self._fit(inside, found)
            # Past every candidate, unless the page was cut by bytes before the last one inside.
            below = min(page) if len(page) < len(inside) else min(candidates)
            return Batch(messages=self._fetch(folder, uidvalidity, page), next_page_token={**token, "below": below})
        return Batch()

    # --- delta -------------------------------------------------------------------------------

    def fetch_since(self, cursor: Cursor) -> Batch:
        folders = {name: FolderState.from_json(data) for name, data in cursor.get("folders", {}).items()}
        for folder in self.folders():
            folders.setdefault(folder, None)  # type: ignore[arg-type]  # newly configured folder
        batch = Batch()
        budget = self.page_size
        for folder, state in folders.items():
            status = self._select(folder)
            current = state_from_status(status)
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
        changed = fetch_range(client, f"{start}:{end}", "FLAGS", modifiers)
        self.api_calls += 1
        vanished = client._imap.untagged_responses.pop("VANISHED", [])  # noqa: SLF001  imapclient does not parse it
        for uid, data in changed.items():
            if start <= uid <= end and b"FLAGS" in data:
                flags = data[b"FLAGS"]
                batch.updates.append(MessageUpdate(f"{folder}:{state.uidvalidity}:{uid}", SEEN in flags,
                                                   FLAGGED in flags))
        prefix = f"{folder}:{state.uidvalidity}:"
        batch.deleted_ref_ranges += [RefRange(prefix, first, last)
                                     for first, last in parse_vanished(vanished, state.last_uid)]

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
