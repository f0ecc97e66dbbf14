"""What the IMAP provider keeps and reads: a folder's cursor state and server responses.

FolderState is one folder's part of the cursor. The functions read FETCH/STATUS answers, and
what imapclient 4.1 leaves to its caller: UID FETCH over a range (CHANGEDSINCE, VANISHED) and
untagged VANISHED responses. No connection state lives here.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from imapclient import IMAPClient
from imapclient.response_parser import parse_fetch_response

SEEN, FLAGGED, SENT = b"\\Seen", b"\\Flagged", b"\\Sent"
_PLAUSIBLE_YEARS = range(1970, 2201)
# The farthest a time zone is from UTC (UTC+14, the Line Islands; UTC-12 is nearer).
_ZONE_SPAN = dt.timedelta(hours=14)


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


def state_from_status(status: dict[bytes, Any]) -> FolderState:
    return FolderState(
        uidvalidity=int(status[b"UIDVALIDITY"]),
        last_uid=int(status.get(b"UIDNEXT", 1)) - 1,
        highestmodseq=int(status.get(b"HIGHESTMODSEQ", 0) or 0),
    )


def fetch_range(client: IMAPClient, uid_range: str, attributes: str, modifiers: list[str]) -> dict[int, Any]:
    """UID FETCH over a range: imapclient 4.1's fetch() only accepts explicit UID lists."""
    tag = client._imap._command("UID", "FETCH", uid_range, f"({attributes})", f"({' '.join(modifiers)})")  # noqa: SLF001
    typ, data = client._imap._command_complete("FETCH", tag)  # noqa: SLF001
    client._checkok("fetch", typ, data)  # noqa: SLF001
    typ, data = client._imap._untagged_response(typ, data, "FETCH")  # noqa: SLF001
    return parse_fetch_response(data, client.normalise_times, True)


def parse_vanished(responses: list[Any], last_uid: int) -> list[tuple[int, int]]:
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


def search_dates(since: dt.datetime, until: dt.datetime) -> list[Any]:
    """SEARCH criteria for the days that can hold an INTERNALDATE in [since, until).

    SINCE/BEFORE compare dates only, "disregarding time and timezone" (RFC 3501 6.4.4): the
    date in a zone of the server's choosing. Widened by the 14 hours a zone can be from UTC,
    the days cover the range whatever the zone; the caller keeps the exact range by INTERNALDATE.
    """
    return ["SINCE", (since - _ZONE_SPAN).date(), "BEFORE", (until + _ZONE_SPAN).date() + dt.timedelta(days=1)]


def received_within(data: dict[bytes, Any], since: dt.datetime, until: dt.datetime) -> bool:
    """Whether a FETCH answer's INTERNALDATE is in [since, until). An unreadable one (or none:
    expunged since the SEARCH) counts as inside: the server's date search found it."""
    moment = utc_internal_date(data.get(b"INTERNALDATE"))
    return moment is None or since <= moment < until


def header_part(data: dict[bytes, Any]) -> bytes | None:
    """The header block of a BODY.PEEK[HEADER]<0.n> answer (the server names it BODY[HEADER]<0>)."""
    for key, value in data.items():
        if isinstance(key, bytes) and key.startswith(b"BODY[HEADER]") and isinstance(value, bytes):
            return value
    return None


def non_negative(value: Any) -> int | None:
    return value if isinstance(value, int) and value >= 0 else None


def utc_internal_date(value: Any) -> dt.datetime | None:
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
