"""GmailProvider: the Gmail API backfill (newest first), history delta and historical date range.

Ids: a message's Gmail id is both its ``provider_message_id`` and its ``ref`` (label changes find
it by ref), ``threadId`` its thread id; labels are its whole ``labelIds`` set, system labels by id
(INBOX, SENT, CATEGORY_UPDATES...) and user labels by name. ``is_read``/``is_starred`` come from
UNREAD/STARRED. Drafts are never stored; SPAM and TRASH are left out of backfills (Gmail lists
them only when asked) and out of added messages.

Memory: a raw message may be 25-50 MB, and the library holds a batch's whole answer several
times over while decoding it. So every listed page is first sized with cheap ``format=minimal``
batches (``sizeEstimate``, which also gives labels and dates, to skip drafts before fetching),
and then fetched so that
- one engine page holds at most settings.PAGE_MAX_BYTES of raw messages (the engine keeps two);
- one raw batch request holds at most RAW_BATCH_PARTS messages and batch_max_bytes() of them;
- a message too big for a batch but within settings.MESSAGE_MAX_BYTES is fetched alone;
- a message over MESSAGE_MAX_BYTES is fetched with ``format=metadata`` and stored headers-only.
Cost with list pages of 500: 1 list + 5 sizing + ~10 raw batches = ~0.03 round trips per message.
Quota: sizing costs a second messages.get (5 units) per message; the client's bucket paces it.

Cursor: ``{"history_id": str}`` (the package's storage contract). A backfill's cursor is the
profile's historyId read before its first listing, so nothing that happens during it is missed.
A delta reads history.list from there; every returned Batch advances the cursor only to the last
history record it covers (the history's own id once all is read), so the stored position always
matches what was stored. A 404 means the history expired: CursorExpired, and the engine runs one
full resync.
"""
from __future__ import annotations

import base64
import binascii
import ctypes
import ctypes.util
import dataclasses
import datetime as dt
import logging
import math
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.utils import timezone

from conversations.messages import ParsedMessage
from conversations.parsing import parse_headers_only, parse_message
from integrations.providers.base import (
    BackfillWindow,
    Batch,
    Capability,
    Cursor,
    CursorExpired,
    MessageProvider,
    MessageUpdate,
    PageToken,
    PermanentError,
)
from integrations.providers.gmail.client import (
    MAX_BATCH_PARTS,
    RAW_BATCH_PARTS,
    GmailClient,
    MissingScope,
    NotFound,
)
from integrations.providers.gmail.connect import FULL_ACCESS, GMAIL_MODIFY, GmailConnect

logger = logging.getLogger(__name__)

# Labels whose messages are never stored (drafts change until sent; spam and trash are not
# conversations). Messages carrying them are dropped after sizing, before their raw fetch.
EXCLUDED_LABELS = frozenset({"DRAFT", "SPAM", "TRASH"})
# What sizing needs of a minimal answer (a partial response: no snippet, a third of the bytes).
SIZING_FIELDS = "id,labelIds,sizeEstimate,internalDate"
HISTORY_TYPES = ("messageAdded", "messageDeleted", "labelAdded", "labelRemoved")
# Bytes of raw messages one batch request may bring. The library keeps its answer about six
# times over while decoding (the bytes, their text, the MIME parse, each part, its JSON, the
# base64 decoded), and base64 adds a third: 4 MiB of messages is ~40 MB at the peak. Bigger
# messages come alone through a plain GET (about four copies).
RAW_BATCH_MAX_BYTES = 4 * 1024 * 1024
# History records one delta batch covers at most (a "mark all as read" of a big mailbox is one
# record per message): the rest comes in the next call, from where this one stopped.
MAX_HISTORY_RECORDS = 5000


def batch_max_bytes() -> int:
    """Raw bytes one batch request may bring: RAW_BATCH_MAX_BYTES, never over PAGE_MAX_BYTES."""
    return min(RAW_BATCH_MAX_BYTES, settings.PAGE_MAX_BYTES)


class GmailProvider(MessageProvider):
    """config: ``{"email": address, "initial_days": int | "all" (optional)}``; credentials and
    cursor as the package docstring (integrations.providers.gmail) describes."""

    key = "gmail"
    display_name = "Gmail"
    # No FOLDER_LABELS: Gmail reports a message's whole label set, so labels are replaced, not merged.
    capabilities = frozenset({Capability.EMAIL, Capability.OAUTH, Capability.PUSH, Capability.DELETIONS,
                              Capability.DATE_RANGE, Capability.MARK_READ})
    connect = GmailConnect()
    page_size = 500  # messages.list maxResults (its maximum); pages are also capped by bytes

    def __init__(self, account: Any) -> None:
        super().__init__(account)
        self.client = GmailClient(account, on_call=self._count_call)
        self._label_names: dict[str, str] | None = None
        self._label_reads = 0
        self._profile: dict[str, Any] | None = None  # read by authenticate() for the backfill to come
        # (Gmail id, why) of messages listed but not stored: deleted since listed, refused.
        self.skipped: list[tuple[str, str]] = []

    @classmethod
    def renew_push(cls) -> int:
        """Renews the users.watch of accounts lapsing soon, starts missing ones (push.renew_watches)."""
        from integrations.providers.gmail.push import renew_watches  # push imports the models

        return renew_watches()

    @classmethod
    def missing_grant(cls, account: Any, capability: Capability) -> str | None:
        """MARK_READ needs gmail.modify (or full access) among the scopes the user granted."""
        refused = super().missing_grant(account, capability)
        if refused or capability != Capability.MARK_READ:
            return refused
        stored = account.credentials or {}
        if stored.get("kind") == "service_account":
            return ("This mailbox was enrolled through a Workspace service account, which is delegated "
                    "gmail.readonly only: Gmail messages cannot be marked read for it.")
        if {GMAIL_MODIFY, FULL_ACCESS} & set(stored.get("scopes") or ()):
            return None
        return (f"{account.external_address or 'This Gmail account'} was connected with read-only access. To let "
                "finished tasks mark their messages read, reconnect it and allow Gmail to modify your messages "
                "on Google's page (Connections, Reconnect).")

    def mark_read(self, refs: list[str]) -> None:
        """Removes UNREAD from each ref (a Gmail message id) with users.messages.modify: the only
        label this provider ever changes, and only for write-back."""
        missing = self.missing_grant(self.account, Capability.MARK_READ)
        if missing:
            raise PermanentError(missing)
        for ref in refs:
            try:
                self.client.modify_labels(ref, remove=["UNREAD"])
            except NotFound:
                raise PermanentError("The message is no longer in the Gmail mailbox (deleted since it was "
                                     "synced), so it could not be marked read.") from None
            except MissingScope:
                raise PermanentError("Google refused to let this site change the message: the permission to "
                                     "modify Gmail messages was withdrawn. Reconnect the account and allow it "
                                     "(Connections, Reconnect).") from None

    def _count_call(self) -> None:
        self.api_calls += 1

    def authenticate(self) -> None:
        """Refreshes the access token if it expires soon. Before a backfill it also reads the
        profile, which the backfill needs first anyway: a revoked grant is found here, in the
        engine's thread, and the profile's historyId is the backfill's cursor. Otherwise no API
        call is made (a no-change delta costs its one history.list)."""
        self.client.authenticate()
        if not self.account.sync_cursor and not self.account.backfill_state:
            self._profile = self.client.profile()

    # --- backfill and historical range -------------------------------------------------------

    def fetch_initial(self, window: BackfillWindow, page_token: PageToken | None) -> Batch:
        """One page of the window (GMAIL_INITIAL_DAYS or config "initial_days", narrowed by the
        engine's window if that is shorter), newest first.

        Token: ``q``, the ``history_id`` to switch to, ``list_token`` (messages.list page token)
        and ``listed_all``, ``pending`` ([id, sizeEstimate] of the current list page not fetched
        yet), ``done``/``total`` for progress. All JSON; resumable in a later run.
        """
        if page_token is None:
            profile, self._profile = self._profile or self.client.profile(), None
            page_token = self._new_token(self._initial_query(window), {
                "history_id": str(profile["historyId"]), "total": int(profile.get("messagesTotal") or 0)})
        token = dict(page_token)
        messages = self._next_page(token, None)
        cursor = {"history_id": token["history_id"]}
        if token["listed_all"] and not token["pending"]:
            return Batch(messages=messages, new_cursor=cursor, progress=(token["done"], token["done"]))
        return Batch(messages=messages, next_page_token=token, new_cursor=cursor,
                     progress=(token["done"], max(token["total"], token["done"])))

    def fetch_range(self, since: dt.datetime, until: dt.datetime, page_token: PageToken | None) -> Batch:
        """One page of the messages whose internalDate is in [since, until), newest first.

        ``after:``/``before:`` take whole epoch seconds, so the query is widened to them and the
        exact range kept by internalDate (read while sizing). Never reads or moves the cursor.
        """
        query = f"after:{math.floor(since.timestamp())} before:{math.ceil(until.timestamp())}"
        token = dict(page_token) if page_token else self._new_token(query, {})
        messages = self._next_page(token, (since, until))
        return Batch(messages=messages, next_page_token=None if token["listed_all"] and not token["pending"] else token)

    def _initial_query(self, window: BackfillWindow) -> str:
        days = str(self.account.config.get("initial_days", settings.GMAIL_INITIAL_DAYS)).strip().lower()
        since = None if days == "all" else timezone.now() - dt.timedelta(days=int(days))
        if window.since is not None and (since is None or window.since > since):
            since = window.since
        return f"after:{math.floor(since.timestamp())}" if since is not None else ""

    @staticmethod
    def _new_token(query: str, extra: dict[str, Any]) -> PageToken:
        return {"q": query, "list_token": None, "listed_all": False, "pending": [], "done": 0, "total": 0,
                "history_id": None, **extra}

    def _next_page(self, token: dict[str, Any], within: tuple[dt.datetime, dt.datetime] | None) -> list[ParsedMessage]:
        """Fetches the next page of ``token`` (updated in place): lists and sizes a new list page
        when the current one is used up, then takes what fits in PAGE_MAX_BYTES."""
        while not token["pending"] and not token["listed_all"]:
            listed = self.client.list_messages(q=token["q"], page_token=token["list_token"],
                                               max_results=self.page_size)
            ids = [entry["id"] for entry in listed.get("messages", [])]
            token["list_token"] = listed.get("nextPageToken")
            token["listed_all"] = not token["list_token"]
            if not token["done"] and not token["pending"]:  # the first page: the window's estimate
                token["total"] = int(listed.get("resultSizeEstimate") or token["total"])
            sized = self._sized(ids, within)
            token["done"] += len(ids) - len(sized)  # drafts, spam, outside the range, gone
            token["pending"] = [[message_id, size] for message_id, size in sized]
        take = _fit(token["pending"], settings.PAGE_MAX_BYTES)
        token["pending"] = token["pending"][len(take):]
        token["done"] += len(take)
        return self._fetch(take)

    def _sized(self, ids: list[str], within: tuple[dt.datetime, dt.datetime] | None = None) -> list[tuple[str, int]]:
        """(id, sizeEstimate) of the messages worth fetching, in the given order, from minimal
        batches: drafts, spam, trash, messages gone and (with ``within``) those outside it are left out."""
        if not ids:
            return []
        found = self.client.get_messages(ids, "minimal", parts=MAX_BATCH_PARTS, fields=SIZING_FIELDS)
        self._record_skipped(found.skipped)
        sized = []
        for message_id in ids:
            data = found.messages.get(message_id)
            if data is None or EXCLUDED_LABELS.intersection(data.get("labelIds", ())):
                continue
            if within is not None:
                received = _internal_date(data)
                if received is None or not within[0] <= received < within[1]:
                    continue
            sized.append((message_id, int(data.get("sizeEstimate") or 0)))
        return sized

    # --- fetching ------------------------------------------------------------------------------

    def _fetch(self, entries: Iterable[tuple[str, int] | list]) -> list[ParsedMessage]:
        """The messages of ``entries`` ([id, sizeEstimate]), parsed, in the same order (gone ones
        left out): small ones in raw batches bounded by parts and bytes, bigger ones alone,
        oversized ones as headers."""
        message_limit, batch_limit = settings.MESSAGE_MAX_BYTES, batch_max_bytes()
        parsed: dict[str, ParsedMessage] = {}
        batches: list[list[str]] = []
        current: list[str] = []
        current_bytes = 0
        alone: list[str] = []
        oversized: dict[str, int] = {}
        order = []
        for message_id, size in entries:
            order.append(message_id)
            if size > message_limit:
                oversized[message_id] = size
            elif size > batch_limit:
                alone.append(message_id)
            else:
                if current and (len(current) >= RAW_BATCH_PARTS or current_bytes + size > batch_limit):
                    batches.append(current)
                    current, current_bytes = [], 0
                current.append(message_id)
                current_bytes += size
        if current:
            batches.append(current)
        for ids in batches:
            found = self.client.get_messages(ids, "raw")
            self._record_skipped(found.skipped)
            for message_id in ids:
                data = found.messages.pop(message_id, None)
                if data is not None:
                    parsed[message_id] = self._from_raw(data)
        for message_id in alone:
            try:
                parsed[message_id] = self._from_raw(self.client.get_message(message_id, "raw"))
            except NotFound:
                self._record_skipped({message_id: "deleted since it was listed (HTTP 404)"})
            _release_freed_memory()
        if oversized:
            found = self.client.get_messages(list(oversized), "metadata")
            self._record_skipped(found.skipped)
            for message_id, data in found.messages.items():
                parsed[message_id] = self._from_metadata(data, oversized[message_id])
        return [parsed[message_id] for message_id in order if message_id in parsed]

    def _from_raw(self, data: dict[str, Any]) -> ParsedMessage:
        raw = _decode_raw(data.pop("raw", ""))
        return self._finish(parse_message(raw, provider_message_id=data["id"]), data)

    def _from_metadata(self, data: dict[str, Any], size: int) -> ParsedMessage:
        headers = (data.get("payload") or {}).get("headers") or []
        block = "".join(f"{h.get('name', '')}: {h.get('value', '')}\r\n" for h in headers if h.get("name"))
        why = f"message of {size:,} bytes is over MESSAGE_MAX_BYTES ({settings.MESSAGE_MAX_BYTES:,})"
        message = parse_headers_only((block + "\r\n").encode("utf-8", "surrogateescape"), size,
                                     provider_message_id=data["id"], why=why)
        return self._finish(message, data)

    def _finish(self, message: ParsedMessage, data: dict[str, Any]) -> ParsedMessage:
        label_ids = list(data.get("labelIds", ()))
        return dataclasses.replace(
            message,
            provider_thread_id=str(data.get("threadId") or ""),
            labels=self.label_names(label_ids),
            ref=data["id"],
            is_read="UNREAD" not in label_ids,
            is_starred="STARRED" in label_ids,
            received_at=_internal_date(data) or message.received_at or message.sent_at,
        )

    def label_names(self, label_ids: Iterable[str]) -> tuple[str, ...]:
        """Label ids -> what is stored: system labels keep their ids, user labels their names.

        labels.list is read on first need, and once more if a label created since turns up
        (an id still unknown after that is kept as it is).
        """
        label_ids = list(label_ids)
        unknown = self._label_names is None or any(label not in self._label_names for label in label_ids)
        if unknown and self._label_reads < 2:
            self._label_reads += 1
            self._label_names = {
                label["id"]: label["id"] if label.get("type") == "system" else label.get("name") or label["id"]
                for label in self.client.labels()
            }
        names = self._label_names or {}
        return tuple(names.get(label, label) for label in label_ids)

    def _record_skipped(self, skipped: dict[str, str]) -> None:
        for message_id, why in skipped.items():
            logger.info("Gmail message %s of account %s skipped: %s", message_id, self.account.pk, why)
            self.skipped.append((message_id, why))

    # --- delta ---------------------------------------------------------------------------------

    def fetch_since(self, cursor: Cursor) -> Batch:
        """What changed since ``cursor["history_id"]``: history.list over its pages, up to
        ``page_size`` added messages (and PAGE_MAX_BYTES of them) or MAX_HISTORY_RECORDS records
        per call. ``new_cursor`` is the id of the last record covered, or the history's own id
        once everything is read (``next_page_token`` None); the engine calls again until then."""
        start = str(cursor.get("history_id") or "")
        if not start:
            raise CursorExpired("The Gmail cursor has no history id")
        records, latest = self._history_records(start)
        added_ids = list(dict.fromkeys(
            entry["message"]["id"] for record in records for entry in record.get("messagesAdded", ())
            if not EXCLUDED_LABELS.intersection(entry["message"].get("labelIds", ()))))
        sizes = dict(self._sized(added_ids)) if added_ids else {}
        # Keep the records up to the one whose added messages overflow a page's bytes.
        budget, used, cut = settings.PAGE_MAX_BYTES, 0, len(records)
        for index, record in enumerate(records):
            size = sum(sizes.get(entry["message"]["id"], 0) for entry in record.get("messagesAdded", ()))
            if used and used + size > budget:
                cut, latest = index, None
                break
            used += size
        records = records[:cut]
        batch = self._changes(records, sizes)
        if latest is not None:
            batch.new_cursor = {"history_id": latest}
        else:
            batch.new_cursor = {"history_id": str(records[-1]["id"]) if records else start}
            batch.next_page_token = {"more": True}
        return batch

    def _history_records(self, start: str) -> tuple[list[dict[str, Any]], str | None]:
        """History records after ``start``, ascending, up to a batch's worth; and the history's
        id when they are all (else None: there is more after the last record)."""
        records: list[dict[str, Any]] = []
        added = 0
        page_token = None
        while True:
            try:
                answer = self.client.history(start_history_id=start, page_token=page_token,
                                             history_types=HISTORY_TYPES)
            except NotFound:
                raise CursorExpired(f"Gmail history from {start} has expired (HTTP 404)") from None
            for record in answer.get("history", ()):
                records.append(record)
                added += len(record.get("messagesAdded", ()))
                if added >= self.page_size or len(records) >= MAX_HISTORY_RECORDS:
                    return records, None
            page_token = answer.get("nextPageToken")
            if not page_token:
                return records, str(answer.get("historyId") or (records[-1]["id"] if records else start))

    def _changes(self, records: list[dict[str, Any]], sizes: dict[str, int]) -> Batch:
        """The Batch of ``records``: added messages fetched, label sets as updates, deletions."""
        added: dict[str, int] = {}
        labels: dict[str, list[str]] = {}
        deleted: dict[str, None] = {}
        for record in records:
            for entry in record.get("messagesAdded", ()):
                message_id = entry["message"]["id"]
                if message_id in sizes:
                    added[message_id] = sizes[message_id]
                    deleted.pop(message_id, None)
            for key in ("labelsAdded", "labelsRemoved"):
                for entry in record.get(key, ()):
                    # The record carries the message's whole label set after the change.
                    labels[entry["message"]["id"]] = list(entry["message"].get("labelIds", ()))
            for entry in record.get("messagesDeleted", ()):
                message_id = entry["message"]["id"]
                added.pop(message_id, None)
                labels.pop(message_id, None)
                deleted[message_id] = None
        updates = [
            MessageUpdate(ref=message_id, labels=self.label_names(label_ids), is_read="UNREAD" not in label_ids,
                          is_starred="STARRED" in label_ids)
            # A message fetched now comes with its current labels already.
            for message_id, label_ids in labels.items() if message_id not in added
        ]
        return Batch(messages=self._fetch(list(added.items())), updates=updates, deleted_ids=list(deleted))


def _fit(pending: list[list], limit: int) -> list[list]:
    """The leading [id, size] entries whose sizes add up to ``limit`` (at least one). An oversized
    message counts for nothing: only its headers are fetched."""
    total, count = 0, 0
    for _message_id, size in pending:
        cost = 0 if size > settings.MESSAGE_MAX_BYTES else size
        if count and total + cost > limit:
            break
        total += cost
        count += 1
    return pending[:count]


def _libc_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_malloc_trim = _libc_malloc_trim()


def _release_freed_memory() -> None:
    """Hands the memory freed after a big message back to the OS (glibc only).

    A message fetched alone passes through buffers of 20-40 MB (its JSON answer, base64 text,
    bytes, the parser's copies). glibc serves blocks that size from the fetching thread's arena
    once it has freed one (its mmap threshold adapts upwards), and the holes they leave are not
    reused for the next big message: peak RSS crept up by a few such messages' worth.
    """
    if _malloc_trim is not None:
        _malloc_trim(0)


def _decode_raw(value: str) -> bytes:
    """Gmail's ``raw``: base64url, padded or not."""
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return b""


def _internal_date(data: dict[str, Any]) -> dt.datetime | None:
    """internalDate (epoch milliseconds, a string) as an aware UTC datetime."""
    try:
        return dt.datetime.fromtimestamp(int(data["internalDate"]) / 1000, tz=dt.UTC)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return None
