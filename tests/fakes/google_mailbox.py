"""In-memory Gmail mailbox behind the fake server: messages, labels, history, query filters.

Everything here is guarded by the owning FakeGmail's lock (passed in), because tests mutate
mailboxes while server threads read them.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import quopri
import re
import threading
import time
import zoneinfo
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

SYSTEM_LABELS: tuple[str, ...] = (
    "INBOX", "SENT", "DRAFT", "SPAM", "TRASH", "UNREAD", "STARRED", "IMPORTANT", "CHAT",
    "CATEGORY_PERSONAL", "CATEGORY_SOCIAL", "CATEGORY_PROMOTIONS", "CATEGORY_UPDATES", "CATEGORY_FORUMS",
)
HISTORY_TYPES = frozenset({"messageAdded", "messageDeleted", "labelAdded", "labelRemoved"})
# Gmail interprets YYYY/MM/DD in search queries as midnight Pacific time.
_PACIFIC = zoneinfo.ZoneInfo("America/Los_Angeles")
# Header block plus the start of the body is enough for headers and a snippet, even of a 20 MB message.
_META_PREFIX = 64 * 1024
# Shared across mailboxes so ids never collide between users, like Gmail's.
_ID_COUNTER = itertools.count(1)


class HistoryExpired(Exception):
    """startHistoryId is older than the oldest retained record (Gmail answers 404)."""


class BadQuery(ValueError):
    """A `q` term the fake does not understand (answered 400 so tests notice)."""


def new_message_id() -> str:
    # Gmail ids are 16 hex digits that grow roughly with time; a stride keeps them non-contiguous.
    return f"{0x18F0000000000000 + next(_ID_COUNTER) * 0x1F3:016x}"


@dataclass
class Meta:
    headers: list[tuple[str, str]]
    mime_type: str
    snippet: str


@dataclass(eq=False)
class Message:
    id: str
    thread_id: str
    labels: list[str]
    internal_ms: int
    size: int
    seq: int
    history_id: int
    raw: bytes | None = None
    make: Callable[[], bytes] | None = None
    b64: bytes | None = None
    meta: Meta | None = None

    @property
    def sort_key(self) -> tuple[int, int]:
        return (-self.internal_ms, -self.seq)

    def raw_bytes(self) -> bytes:
        if self.raw is not None:
            return self.raw
        assert self.make is not None
        return self.make()

    def raw_b64(self, raw: bytes | None = None) -> bytes:
        """base64url with padding, as Gmail sends `raw`; cached only for eager messages."""
        if self.b64 is not None:
            return self.b64
        encoded = base64.urlsafe_b64encode(raw if raw is not None else self.raw_bytes())
        if self.raw is not None:
            self.b64 = encoded
        return encoded

    def get_meta(self, raw: bytes | None = None) -> Meta:
        """Parsed headers and snippet, cached (small) even for lazy messages."""
        if self.meta is None:
            raw = raw if raw is not None else self.raw_bytes()
            self.meta = parse_meta(raw[:_META_PREFIX])
        return self.meta


_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_LINE_END = re.compile(r"\r?\n")


def _escape_snippet(text: str) -> str:
    # Gmail HTML-escapes snippets, with &#39; for the apostrophe.
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


def _split_headers(data: bytes) -> tuple[list[tuple[str, str]], bytes]:
    if data.startswith((b"\r\n", b"\n")):
        return [], data.split(b"\n", 1)[1]
    match = _BLANK_LINE.search(data)
    head, body = (data[: match.start()], data[match.end():]) if match else (data, b"")
    headers: list[tuple[str, str]] = []
    for line in _LINE_END.split(head.decode("utf-8", errors="replace")):
        if line[:1] in (" ", "\t") and headers:  # folded continuation
            headers[-1] = (headers[-1][0], headers[-1][1] + line)
        elif ":" in line:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value))
    return [(name, value.strip()) for name, value in headers], body


def _header(headers: list[tuple[str, str]], name: str) -> str:
    return next((v for n, v in headers if n.lower() == name), "")


def _param(value: str, name: str) -> str | None:
    match = re.search(name + r'\s*=\s*(?:"([^"]*)"|([^;\s]+))', value, re.IGNORECASE)
    return (match[1] if match[1] is not None else match[2]) if match else None


def _decode_body(headers: list[tuple[str, str]], body: bytes) -> str:
    cte = _header(headers, "content-transfer-encoding").lower()
    try:
        if cte == "base64":
            clean = re.sub(rb"[^A-Za-z0-9+/=]", b"", body)
            body = base64.b64decode(clean[: len(clean) // 4 * 4])  # whole quanta: the prefix may be cut
        elif cte == "quoted-printable":
            body = quopri.decodestring(body)
        return body.decode(_param(_header(headers, "content-type"), "charset") or "utf-8", errors="replace")
    except (LookupError, ValueError):
        return ""


def _find_text(headers: list[tuple[str, str]], body: bytes, depth: int = 0) -> tuple[str, str] | None:
    """First text/plain (else text/html) leaf that is not an attachment: (mime type, decoded text)."""
    ctype = _header(headers, "content-type").split(";")[0].strip().lower() or "text/plain"
    if ctype.startswith("multipart/") and depth < 5:
        boundary = _param(_header(headers, "content-type"), "boundary")
        if not boundary:
            return None
        html = None
        for chunk in body.split(b"--" + boundary.encode())[1:]:
            if chunk.startswith(b"--"):
                break
            # Drop the rest of the boundary line and the line end that belongs to the next delimiter.
            part = chunk.split(b"\n", 1)[1] if b"\n" in chunk else b""
            found = _find_text(*_split_headers(part[:-2] if part.endswith(b"\r\n") else part.rstrip(b"\n")),
                               depth + 1)
            if found and found[0] == "text/plain":
                return found
            html = html or found
        return html
    if ctype in ("text/plain", "text/html") and not _header(headers, "content-disposition").lower().startswith(
            "attachment"):
        return ctype, _decode_body(headers, body)
    return None


def parse_meta(prefix: bytes) -> Meta:
    """Headers, top-level MIME type and a Gmail-like snippet from the start of a message.
    Hand-rolled: the email package costs ~0.4 ms a message, too slow for the benchmark."""
    headers, body = _split_headers(prefix)
    found = _find_text(headers, body)
    text = found[1] if found else ""
    if found and found[0] == "text/html":
        text = re.sub(r"<[^>]*>", " ", text)
    snippet = _escape_snippet(" ".join(text.split())[:200])
    mime_type = _header(headers, "content-type").split(";")[0].strip().lower() or "text/plain"
    return Meta(headers=headers, mime_type=mime_type, snippet=snippet)


@dataclass
class Query:
    required: frozenset[str] = frozenset()
    excluded: frozenset[str] = frozenset()
    after_ms: int | None = None
    before_ms: int | None = None
    anywhere: bool = False


def _date_bound(value: str) -> int:
    if value.isdigit():
        return int(value) * 1000
    m = re.fullmatch(r"(\d{4})[/-](\d{1,2})[/-](\d{1,2})", value)
    if not m:
        raise BadQuery(f"unsupported date {value!r}")
    day = datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=_PACIFIC)
    return int(day.timestamp() * 1000)


_RELATIVE = {"d": 86400, "m": 30 * 86400, "y": 365 * 86400}


def parse_query(q: str, label_for_name: Callable[[str], str | None]) -> Query:
    """Mimics the subset of Gmail search syntax a sync needs: after:, before:, newer_than:,
    older_than:, in:, is:, label: (each negatable with '-')."""
    query = Query()
    required: set[str] = set()
    excluded: set[str] = set()
    for term in q.split():
        negate = term.startswith("-")
        key, _, value = term.lstrip("-").partition(":")
        key, value = key.lower(), value.strip('"')
        if not value:
            raise BadQuery(f"unsupported search term {term!r}")
        if key == "after":
            bound = _date_bound(value)
            query.after_ms = bound if query.after_ms is None else max(query.after_ms, bound)
        elif key == "before":
            bound = _date_bound(value)
            query.before_ms = bound if query.before_ms is None else min(query.before_ms, bound)
        elif key in ("newer_than", "older_than"):
            m = re.fullmatch(r"(\d+)([dmy])", value.lower())
            if not m:
                raise BadQuery(f"unsupported term {term!r}")
            # Whole seconds, so consecutive pages of one query agree on the bound.
            bound = (int(time.time()) - int(m[1]) * _RELATIVE[m[2]]) * 1000
            if key == "newer_than":
                query.after_ms = bound
            else:
                query.before_ms = bound
        elif key == "in" and value.lower() in ("anywhere", "all"):
            query.anywhere = query.anywhere or value.lower() == "anywhere"
        elif key in ("in", "is", "label"):
            label = {"read": "UNREAD"}.get(value.lower()) if key == "is" else None
            if label is not None:  # is:read means NOT UNREAD
                negate = not negate
            else:
                label = label_for_name(value)
            if label is None:
                raise BadQuery(f"unknown label in {term!r}")
            (excluded if negate else required).add(label)
        else:
            raise BadQuery(f"unsupported search term {term!r}")
    query.required, query.excluded = frozenset(required), frozenset(excluded)
    if query.required & {"SPAM", "TRASH"}:
        query.anywhere = True
    return query


@dataclass
class _HistoryRecord:
    id: int
    types: frozenset[str]
    labels: frozenset[str]
    body: dict[str, Any]


@dataclass
class _OrderCache:
    version: tuple[int, int]
    keys: list[tuple[int, int]]
    ids: list[str]
    threads: list[str]


class Mailbox:
    """One Gmail user: what the fake serves under /gmail/v1/users/{email}/."""

    def __init__(self, email: str, lock: threading.RLock, first_history_id: int = 1000) -> None:
        self.email = email
        self.history_id = first_history_id
        self.watch_requests: list[dict] = []
        self.modify_requests: list[tuple[str, list[str], list[str]]] = []  # (id, added, removed)
        self.stop_calls = 0
        self._lock = lock
        self._messages: dict[str, Message] = {}
        self._threads: Counter[str] = Counter()
        self._user_labels: dict[str, str] = {}  # id -> name
        self._history: list[_HistoryRecord] = []
        self._history_ids: list[int] = []
        self._oldest_history = first_history_id
        self._seq = 0
        self._order_version = 0
        self._label_version = 0
        self._sorted: tuple[int, list[Message]] | None = None
        self._filtered: dict[tuple, _OrderCache] = {}

    # --- test-facing mutations

    def add(self, raw: bytes, *, labels: Iterable[str] = ("INBOX",), internal_date: datetime | None = None,
            thread_id: str | None = None) -> str:
        """Deliver a message; records messageAdded. Returns its Gmail id."""
        return self._insert(raw, None, len(raw), labels, internal_date, thread_id)

    def add_lazy(self, size: int, make: Callable[[], bytes], *, labels: Iterable[str] = ("INBOX",),
                 internal_date: datetime | None = None, thread_id: str | None = None) -> str:
        """Like add(), but the bytes come from make() on each request and are never held."""
        return self._insert(None, make, size, labels, internal_date, thread_id)

    def delete(self, message_id: str) -> None:
        """Permanently delete; records messageDeleted."""
        with self._lock:
            msg = self._messages.pop(message_id)
            self._threads[msg.thread_id] -= 1
            if not self._threads[msg.thread_id]:
                del self._threads[msg.thread_id]
            self._order_version += 1
            self._record({"messageDeleted"}, msg.labels, "messagesDeleted",
                         [{"message": {"id": msg.id, "threadId": msg.thread_id, "labelIds": list(msg.labels)}}],
                         msg)

    def label(self, message_id: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()) -> None:
        """Change labels; records labelAdded / labelRemoved for the effective changes only."""
        with self._lock:
            msg = self._messages[message_id]
            added = [lab for lab in dict.fromkeys(add) if lab not in msg.labels]
            removed = [lab for lab in dict.fromkeys(remove) if lab in msg.labels and lab not in added]
            self._check_labels(added)
            if not added and not removed:
                return
            msg.labels = [lab for lab in msg.labels if lab not in removed] + added
            self._label_version += 1
            self._bump()
            msg.history_id = self.history_id
            ref = {"id": msg.id, "threadId": msg.thread_id, "labelIds": list(msg.labels)}
            body: dict[str, Any] = {"id": str(self.history_id), "messages": [{"id": msg.id, "threadId": msg.thread_id}]}
            types = set()
            if added:
                body["labelsAdded"] = [{"message": ref, "labelIds": added}]
                types.add("labelAdded")
            if removed:
                body["labelsRemoved"] = [{"message": ref, "labelIds": removed}]
                types.add("labelRemoved")
            self._append(_HistoryRecord(self.history_id, frozenset(types),
                                        frozenset(msg.labels) | frozenset(removed), body))

    def add_label(self, name: str) -> str:
        """Create a user label; returns its id (Label_N)."""
        with self._lock:
            label_id = f"Label_{len(self._user_labels) + 1}"
            self._user_labels[label_id] = name
            return label_id

    def expire_history(self) -> None:
        """Forget history: any startHistoryId older than the current one now answers 404."""
        with self._lock:
            self._oldest_history = self.history_id
            self._history.clear()
            self._history_ids.clear()

    # --- internals

    def _check_labels(self, labels: Iterable[str]) -> None:
        for lab in labels:
            if lab not in SYSTEM_LABELS and lab not in self._user_labels:
                raise ValueError(f"unknown label id {lab!r} (create user labels with add_label())")

    def _bump(self) -> None:
        # Real history ids increase but are not contiguous.
        self.history_id += 1 + (self.history_id % 3)

    def _append(self, record: _HistoryRecord) -> None:
        self._history.append(record)
        self._history_ids.append(record.id)

    def _record(self, types: set[str], labels: Iterable[str], key: str, entries: list[dict], msg: Message) -> None:
        self._bump()
        msg.history_id = self.history_id
        body = {"id": str(self.history_id), "messages": [{"id": msg.id, "threadId": msg.thread_id}], key: entries}
        self._append(_HistoryRecord(self.history_id, frozenset(types), frozenset(labels), body))

    def _insert(self, raw: bytes | None, make: Callable[[], bytes] | None, size: int, labels: Iterable[str],
                internal_date: datetime | None, thread_id: str | None) -> str:
        labels = list(dict.fromkeys(labels))
        when = internal_date or datetime.now(UTC)
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        with self._lock:
            self._check_labels(labels)
            self._seq += 1
            msg_id = new_message_id()
            msg = Message(id=msg_id, thread_id=thread_id or msg_id, labels=labels,
                          internal_ms=int(when.timestamp() * 1000), size=size, seq=self._seq,
                          history_id=0, raw=raw, make=make)
            self._messages[msg_id] = msg
            self._threads[msg.thread_id] += 1
            self._order_version += 1
            self._record({"messageAdded"}, labels, "messagesAdded",
                         [{"message": {"id": msg_id, "threadId": msg.thread_id, "labelIds": list(labels)}}], msg)
            return msg_id

    # --- server-facing reads (callers hold the lock)

    def label_for_name(self, name: str) -> str | None:
        upper = name.upper().replace("-", "_")
        if upper in SYSTEM_LABELS:
            return upper
        if "CATEGORY_" + upper in SYSTEM_LABELS:
            return "CATEGORY_" + upper
        for label_id, label_name in self._user_labels.items():
            if name in (label_id, label_name) or label_name.lower() == name.lower():
                return label_id
        return None

    def labels_json(self) -> list[dict[str, str]]:
        system = [{"id": lab, "name": lab, "type": "system"} for lab in SYSTEM_LABELS]
        return system + [{"id": i, "name": n, "type": "user"} for i, n in self._user_labels.items()]

    def profile(self) -> dict[str, Any]:
        return {"emailAddress": self.email, "messagesTotal": len(self._messages),
                "threadsTotal": len(self._threads), "historyId": str(self.history_id)}

    def get(self, message_id: str) -> Message | None:
        return self._messages.get(message_id)

    def _order(self, required: frozenset[str], excluded: frozenset[str]) -> _OrderCache:
        version = (self._order_version, self._label_version)
        key = (required, excluded)
        cached = self._filtered.get(key)
        if cached is not None and cached.version == version:
            return cached
        if self._sorted is None or self._sorted[0] != self._order_version:
            self._sorted = (self._order_version, sorted(self._messages.values(), key=lambda m: m.sort_key))
        chosen = [m for m in self._sorted[1]
                  if required.issubset(m.labels) and excluded.isdisjoint(m.labels)]
        cache = _OrderCache(version, [m.sort_key for m in chosen], [m.id for m in chosen],
                            [m.thread_id for m in chosen])
        if len(self._filtered) > 32:
            self._filtered.clear()
        self._filtered[key] = cache
        return cache

    def list_messages(self, query: Query, max_results: int, page_token: str | None) -> dict[str, Any]:
        """Newest first by internalDate; the page token is the sort key of the last message served,
        so pages stay consistent while mail arrives."""
        excluded = query.excluded if query.anywhere else query.excluded | {"SPAM", "TRASH"}
        order = self._order(query.required, excluded - query.required)
        lo, hi = 0, len(order.keys)
        if query.before_ms is not None:  # internal_ms < before  <=>  -internal_ms > -before
            lo = bisect.bisect_left(order.keys, (-query.before_ms + 1, -(1 << 62)))
        if query.after_ms is not None:  # internal_ms >= after
            hi = bisect.bisect_right(order.keys, (-query.after_ms, 1 << 62))
        total = max(0, hi - lo)
        start = lo
        if page_token:
            start = max(lo, bisect.bisect_right(order.keys, decode_page_token(page_token)))
        end = min(hi, start + max_results)
        result: dict[str, Any] = {}
        if end > start:
            result["messages"] = [{"id": i, "threadId": t} for i, t in zip(order.ids[start:end], order.threads[start:end])]
        if end < hi:
            result["nextPageToken"] = encode_page_token(order.keys[end - 1])
        result["resultSizeEstimate"] = total
        return result

    def list_history(self, start: int, types: frozenset[str], label_id: str | None, max_results: int,
                     page_token: str | None) -> dict[str, Any]:
        """Records with id > startHistoryId, ascending; 404 (HistoryExpired) before the oldest retained."""
        if start < self._oldest_history:
            raise HistoryExpired()
        after = start
        if page_token:
            after = max(after, int(page_token))
        index = bisect.bisect_right(self._history_ids, after)
        page: list[dict] = []
        next_token = None
        for record in itertools.islice(self._history, index, None):
            if types and types.isdisjoint(record.types):
                continue
            if label_id and label_id not in record.labels:
                continue
            if len(page) == max_results:
                next_token = page[-1]["id"]
                break
            page.append(record.body)
        result: dict[str, Any] = {}
        if page:
            result["history"] = page
        if next_token:
            result["nextPageToken"] = next_token
        result["historyId"] = str(self.history_id)
        return result


def encode_page_token(key: tuple[int, int]) -> str:
    return base64.urlsafe_b64encode(f"{-key[0]}:{-key[1]}".encode()).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[int, int]:
    try:
        ms, seq = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split(":")
        return (-int(ms), -int(seq))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadQuery("invalid pageToken") from exc
