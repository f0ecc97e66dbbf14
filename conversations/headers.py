"""Reading header fields: charsets, RFC 2047 words, addresses, dates and message ids.

The text layer under ``conversations.parsing``: ``decode_bytes`` reads bytes in a declared
charset with explicit fallbacks (never failing), ``decode_header_value`` decodes RFC 2047
encoded words, and the ``parse_*`` helpers turn header values into addresses, aware UTC
dates and message ids, recording what they cannot read in a warnings list instead of
raising. Nothing here knows about MIME structure.
"""
from __future__ import annotations

import codecs
import datetime as dt
import email.header
import email.utils
import re
from email.message import Message
from functools import lru_cache

from contacts.normalize import MAX_EMAIL, normalize_email
from conversations.messages import Address, AddressKind

# Labels that mail clients send but Python does not know, and what they really mean.
CHARSET_ALIASES = {
    "ks_c_5601-1987": "cp949",
    "windows-874": "cp874",
    "x-sjis": "shift_jis",
    "x-gbk": "gbk",
    "gb2312": "gbk",  # senders routinely label GBK text as GB2312
    "iso-8859-8-i": "iso-8859-8",
    "x-mac-roman": "mac_roman",
    "unicode-1-1-utf-7": "utf-7",
    "ascii": "utf-8",  # 8-bit bytes in "ascii" parts are nearly always UTF-8
    "us-ascii": "utf-8",
}
_NOT_A_CHARSET = {"unknown-8bit", "x-unknown", "unknown", "default", "8bit", ""}
# Codec names (as codecs.lookup reports them) whose labels are routinely stuck on UTF-8 text.
# Real Latin-1/cp1252 text practically never forms valid multi-byte UTF-8, so valid UTF-8
# with non-ASCII bytes under one of these labels is UTF-8.
_LATIN_CODECS = frozenset(("iso8859-1", "iso8859-15", "cp1252"))
_CP1252_FALLBACK = "conversations.headers.cp1252"
_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_SPACES = re.compile(r"\s+")
# Nothing to read, legitimately: empty groups ("undisclosed-recipients:;") and the null path "<>".
_EMPTY_GROUP = re.compile(r'[^:;<>@",]*:\s*;|<\s*>')
# The lookbehind starts a match only where a run of address characters starts: without it a
# long run with no "@" is rescanned from every position (quadratic; 100 KB took half a minute).
_ADDRESS_LIKE = re.compile(r"(?<![\w.+'-])[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_MIN_YEAR, _MAX_YEAR = 1970, 2200

MAX_MESSAGE_ID = 512
# Address items ("Name <a@b>") longer than this are parsed each time, never kept in the cache.
MAX_CACHED_ADDRESS = 1_024
# An address header is read up to here (some 30,000 addresses); parsing costs ~0.4 s a MB.
MAX_ADDRESS_HEADER = 1_048_576
# Received headers looked at for the date a message arrived (the topmost readable one wins).
MAX_RECEIVED_HEADERS = 50
# email.header.decode_header is quadratic in the number of encoded words (a 650 KB subject of
# them took 3.6 s); no genuine header comes near this, so longer ones are cut before decoding.
MAX_DECODED_HEADER = 32_768


def clean_text(value: str) -> str:
    """Removes what databases refuse: NUL characters and lone surrogates."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def _cp1252_fallback(error: UnicodeError) -> tuple[str, int]:
    """Decode error handler: reads the bytes UTF-8 rejects as Windows-1252, one run at a time."""
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return error.object[error.start : error.end].decode("cp1252", errors="replace"), error.end


codecs.register_error(_CP1252_FALLBACK, _cp1252_fallback)


def decode_bytes(data: bytes, charset: str | None, warnings: list[str] | None = None) -> str:
    """Decodes with the declared charset, else UTF-8, else UTF-8 with Windows-1252 for the bad bytes.

    The last step never fails and keeps the valid UTF-8 of a mostly-UTF-8 text intact
    (decoding everything as Windows-1252 would turn it into mojibake).
    """
    label = (charset or "").strip().strip('"').lower()
    shown = clean_text(label)[:40]  # for warnings: a label may hold NULs or be a whole paragraph
    candidates: list[str] = []
    if label not in _NOT_A_CHARSET:
        candidates.append(CHARSET_ALIASES.get(label, label))
    candidates.append("utf-8")
    for candidate in candidates:
        try:
            codec = codecs.lookup(candidate)
        except (LookupError, ValueError):  # ValueError: a NUL in the label
            if warnings is not None:
                warnings.append(f"unknown charset {shown!r}")
            continue
        if codec.name in _LATIN_CODECS and not data.isascii():
            try:
                return clean_text(data.decode("utf-8"))
            except UnicodeDecodeError:
                pass
        try:
            return clean_text(data.decode(candidate))
        except LookupError:  # a bytes-to-bytes codec such as "base64" or "zlib" is no charset
            if warnings is not None:
                warnings.append(f"unknown charset {shown!r}")
        except UnicodeError:  # UnicodeDecodeError, and the plain UnicodeError of "idna" & co.
            continue
    if label not in _NOT_A_CHARSET and warnings is not None:
        warnings.append(f"text is not valid {shown}; unreadable bytes read as windows-1252")
    return clean_text(data.decode("utf-8", errors=_CP1252_FALLBACK))


def _unsurrogate(value: str) -> str:
    """compat32 keeps raw 8-bit header bytes as surrogate escapes; read them as UTF-8 or cp1252."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return decode_bytes(value.encode("utf-8", "surrogateescape"), None)


def decode_header_value(value: str, warnings: list[str] | None = None) -> str:
    """Decodes RFC 2047 encoded words, tolerating bad encodings and unknown charsets."""
    value = _FOLD.sub("", value)
    if "=?" not in value:
        return clean_text(value.strip())
    if len(value) > MAX_DECODED_HEADER:
        if warnings is not None:
            warnings.append(f"header of {len(value)} characters cut to {MAX_DECODED_HEADER}")
        value = value[:MAX_DECODED_HEADER]
    try:
        chunks = email.header.decode_header(value)
    except Exception:  # malformed encoded words: keep the text as it came
        if warnings is not None:
            warnings.append("unreadable encoded header")
        return clean_text(value.strip())
    parts: list[str] = []
    for chunk, charset in chunks:
        parts.append(chunk if isinstance(chunk, str) else decode_bytes(chunk, charset, warnings))
    # decode_header drops the whitespace between adjacent encoded words, as RFC 2047 asks,
    # but keeps it inside plain chunks; joining with "" is therefore right.
    return clean_text("".join(parts).strip())


def _header_map(message: Message) -> dict[str, list[str]]:
    headers: dict[str, list[str]] = {}
    for name, value in message.raw_items():
        if isinstance(value, str):
            # NULs go here, once, so that no header-derived field (ids, labels, addresses) keeps one.
            headers.setdefault(name.lower(), []).append(_unsurrogate(value).replace("\x00", ""))
    return headers


def _first(headers: dict[str, list[str]], name: str) -> str:
    values = headers.get(name)
    return values[0] if values else ""


_COMPLEX_ADDRESS_SYNTAX = re.compile(r'["();:\\]')


def _address_pairs(header: str) -> list[tuple[str, str]]:
    """(display name, address) pairs of one header, as email.utils.getaddresses reads them.

    Plain lists ("Ann <a@x>, b@y") are split on commas and each item parsed once per
    process: the same few thousand correspondents recur message after message, and the
    stdlib's address parser is a fifth of parsing time. Anything with quotes, comments or
    groups goes to getaddresses whole.
    """
    if _COMPLEX_ADDRESS_SYNTAX.search(header):
        return email.utils.getaddresses([header])
    pairs: list[tuple[str, str]] = []
    for item in header.split(","):
        item = item.strip()
        if item:
            # Only items of a plausible size are cached: the cache would pin a huge one for good.
            pairs.extend(_item_pairs(item) if len(item) <= MAX_CACHED_ADDRESS else email.utils.getaddresses([item]))
    return pairs


@lru_cache(maxsize=32768)
def _item_pairs(item: str) -> tuple[tuple[str, str], ...]:
    return tuple(email.utils.getaddresses([item]))


def _capped_address_header(value: str, warnings: list[str]) -> str:
    if len(value) <= MAX_ADDRESS_HEADER:
        return value
    warnings.append(f"address header of {len(value):,} characters cut to {MAX_ADDRESS_HEADER:,}")
    # At a comma between addresses, not in the middle of one or of a quoted "Last, First":
    # walking back from comma to comma, counting the quotes of each stretch once.
    cut = MAX_ADDRESS_HEADER
    quotes = value.count('"', 0, cut)
    while (comma := value.rfind(",", 0, cut)) > 0:
        quotes -= value.count('"', comma, cut)
        cut = comma
        if not quotes % 2:
            return value[:cut]
    return value[:MAX_ADDRESS_HEADER]


def _over_limits(raw_address: str) -> bool:
    local, at, domain = raw_address.strip().strip("<>").strip().rpartition("@")
    return bool(at and local and domain and "@" not in local and not any(c.isspace() for c in raw_address.strip()))


def parse_addresses(values: list[str], warnings: list[str]) -> tuple[Address, ...]:
    """E-mail addresses from address headers; display names decoded, duplicates dropped."""
    if not values:
        return ()
    unfolded = [_capped_address_header(_FOLD.sub("", v), warnings) for v in values]
    try:
        pairs = [pair for value in unfolded for pair in _address_pairs(value)]
    except Exception:
        pairs = []
    addresses: list[Address] = []
    seen: set[str] = set()
    warned = False
    for name, raw_address in pairs:
        if not raw_address and not name:
            continue  # group syntax such as "undisclosed-recipients:;"
        value = normalize_email(raw_address)
        if not value and _over_limits(raw_address):
            # Shaped like an address but over RFC 5321's limits: kept as the participant's raw
            # text (ingest never turns it into a contact or company), so who it was is not lost.
            value = raw_address.strip().strip("<>").strip().lower()[:MAX_EMAIL]
            warnings.append(f"address over RFC 5321 length limits kept as text: {value[:80]!r}")
        if not value:
            warnings.append(f"unreadable address {(name or raw_address)[:80]!r}")
            warned = True
            continue
        if value in seen:
            continue
        seen.add(value)
        display = decode_header_value(name, warnings) if name else ""
        addresses.append(Address(AddressKind.EMAIL, value, display[:200]))
    if not addresses and any(v.strip() for v in values):
        # getaddresses gives up on some malformed headers; salvage anything shaped like an address.
        for match in _ADDRESS_LIKE.findall(" ".join(unfolded)):
            value = normalize_email(match)
            if value and value not in seen:
                seen.add(value)
                addresses.append(Address(AddressKind.EMAIL, value))
    if not addresses and not warned:
        # getaddresses reads garbage such as ";;;@@@" as empty groups; only real empty groups are silent.
        for value in unfolded:
            if _EMPTY_GROUP.sub("", value[:2000]).strip(" \t\r\n,"):
                warnings.append(f"unreadable address {value.strip()[:80]!r}")
    return tuple(addresses)


def parse_date(value: str, warnings: list[str], what: str = "Date") -> dt.datetime | None:
    if not value.strip():
        return None
    if len(value) > 1_000:  # no date is this long; the stdlib would split all of it into words
        warnings.append(f"unreadable {what} header {value.strip()[:60]!r}")
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(_FOLD.sub("", value).strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        warnings.append(f"unreadable {what} header {value.strip()[:60]!r}")
        return None
    if parsed is None:
        warnings.append(f"unreadable {what} header {value.strip()[:60]!r}")
        return None
    if parsed.tzinfo is None:  # "-0000": the sender's zone is unknown; RFC 5322 says UTC
        parsed = parsed.replace(tzinfo=dt.UTC)
    if not _MIN_YEAR <= parsed.year <= _MAX_YEAR:
        warnings.append(f"implausible {what} {parsed.isoformat()}")
        return None
    return parsed.astimezone(dt.UTC)


def _received_date(headers: dict[str, list[str]], warnings: list[str]) -> dt.datetime | None:
    """The date the topmost Received header stamped: when the message reached the mailbox."""
    for value in headers.get("received", [])[:MAX_RECEIVED_HEADERS]:
        _, semicolon, date_part = value.rpartition(";")
        if semicolon:
            ignored: list[str] = []
            parsed = parse_date(date_part, ignored, "Received")
            if parsed is not None:
                return parsed
    return None


def parse_message_id(value: str) -> str:
    match = _MESSAGE_ID.search(value)
    found = match.group(1) if match else value.strip().strip("<>").strip()
    if " " in found or not found:
        return ""
    return clean_text(found)[:MAX_MESSAGE_ID]


def _references(value: str) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for found in _MESSAGE_ID.findall(value):
        seen.setdefault(found[:MAX_MESSAGE_ID], None)
    return tuple(seen)


def _collapsed(value: str) -> str:
    return _SPACES.sub(" ", value).strip()
