"""RFC 5322 / MIME parsing into ParsedMessage.

``parse_message`` never raises on malformed input: whatever cannot be read is recorded
in ``ParsedMessage.warnings`` and parsing carries on with what it has. It uses the
stdlib's compat32 parser, which tolerates garbage better and is several times faster
than ``email.policy.default``; header decoding (RFC 2047, RFC 2231, 8-bit junk) is done
here with explicit charset fallbacks.
"""
from __future__ import annotations

import binascii
import dataclasses
import codecs
import datetime as dt
import email
import email.header
import email.policy
import email.utils
import hashlib
import re
import time
from collections import Counter
from collections.abc import Callable
from email import errors
from email.feedparser import BufferedSubFile, FeedParser, NeedMoreData
from email.message import Message
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from contacts.normalize import MAX_EMAIL, normalize_email
from conversations.messages import Address, AddressKind, ParsedAttachment, ParsedMessage
from conversations.rendering import html_to_text

__all__ = ["clean_text", "decode_bytes", "decode_header_value", "html_to_text", "parse_headers_only", "parse_message"]

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
_CP1252_FALLBACK = "conversations.parsing.cp1252"
_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_SPACES = re.compile(r"\s+")
# Nothing to read, legitimately: empty groups ("undisclosed-recipients:;") and the null path "<>".
_EMPTY_GROUP = re.compile(r'[^:;<>@",]*:\s*;|<\s*>')
# The lookbehind starts a match only where a run of address characters starts: without it a
# long run with no "@" is rescanned from every position (quadratic; 100 KB took half a minute).
_ADDRESS_LIKE = re.compile(r"(?<![\w.+'-])[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_LEADING_JUNK = re.compile(rb"(?:\xef\xbb\xbf)?[\r\n]*")
_BASE64_DAMAGE = (errors.InvalidBase64CharactersDefect, errors.InvalidBase64LengthDefect)
_BASE64_ALPHABET = re.compile(rb"[^A-Za-z0-9+/]")
_MIN_YEAR, _MAX_YEAR = 1970, 2200
# message/* types that hold a whole message, stored as one .eml attachment. Others, such as
# message/delivery-status (header blocks, not a message), are walked like any container.
_ENCAPSULATED = frozenset(("message/rfc822", "message/global", "message/news"))

MAX_MESSAGE_ID = 512
# Address items ("Name <a@b>") longer than this are parsed each time, never kept in the cache.
MAX_CACHED_ADDRESS = 1_024
# An address header is read up to here (some 30,000 addresses); parsing costs ~0.4 s a MB.
MAX_ADDRESS_HEADER = 1_048_576
# Received headers looked at for the date a message arrived (the topmost readable one wins).
MAX_RECEIVED_HEADERS = 50
# The header block read when a message is kept with its headers alone because parsing it took
# too long (the IMAP provider fetches as much for a message over MESSAGE_MAX_BYTES).
HEADERS_ONLY_MAX_BYTES = 256 * 1024
# email.header.decode_header is quadratic in the number of encoded words (a 650 KB subject of
# them took 3.6 s); no genuine header comes near this, so longer ones are cut before decoding.
MAX_DECODED_HEADER = 32_768
# Limits on the MIME structure, applied while the stdlib parser reads it (so it never sees
# more): nesting levels below the top, and parts (every container and leaf counts). Past
# either, the rest of the message is kept as one unparsed attachment.
MAX_MIME_DEPTH = 50
MAX_MIME_PARTS = 1_000
# Content-Type and Content-Disposition values the stdlib may read as they are. Its parameter
# splitter (email.message._parseparam) is quadratic in the ";" of a value (156 KB of quoted
# ";" took 5 s); a longer value, or one with more ";", is rewritten to its main parameters.
# The longest genuine ones are RFC 2231 file names split into some 30 continuations.
MAX_PARAMETER_HEADER = 4_096
MAX_PARAMETERS = 100
# Wall-clock seconds one parse_message may take (settings.PARSE_BUDGET_SECONDS overrides).
# Every step is linear, so only a huge message comes near it; past it the message is kept
# with its headers alone, as parse_headers_only does, rather than holding the batch.
PARSE_BUDGET_SECONDS = 5.0
REMAINDER_FILENAME = "unparsed-remainder.bin"
_FEED_CHUNK = 65_536


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


# ---------------------------------------------------------------------------- MIME structure


class _OverBudget(TimeoutError):
    """Parsing ran past its deadline (html_to_text raises a plain TimeoutError)."""


def _check(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise _OverBudget


# FeedParser's end-of-part predicate for a multipart is ``re.compile(PREFIX + re.escape("--" +
# boundary) + SUFFIX).match``; re.escape puts one backslash before each character it escapes.
_BOUNDARY_PREFIX = "(?P<sep>"
_BOUNDARY_SUFFIX = r")(?P<end>--)?(?P<ws>[ \t]*)(?P<linesep>\r\n|\r|\n)?$"
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)


def _separator(predicate: Callable[[str], object]) -> str | None:
    """The "--boundary" line a FeedParser boundary predicate matches, or None for another predicate."""
    pattern = getattr(getattr(predicate, "__self__", None), "pattern", None)
    if (
        getattr(predicate, "__name__", "") != "match"
        or not isinstance(pattern, str)
        or not pattern.startswith(_BOUNDARY_PREFIX)
        or not pattern.endswith(_BOUNDARY_SUFFIX)
    ):
        return None
    escaped = pattern[len(_BOUNDARY_PREFIX) : -len(_BOUNDARY_SUFFIX)]
    if "\\\\" not in escaped:  # no escaped backslash: every backslash is an escape
        return escaped.replace("\\", "")
    separator = _ESCAPED.sub(r"\1", escaped)
    return separator if re.escape(separator) == escaped else None


class _LineInput(BufferedSubFile):
    """FeedParser's line buffer with a constant-time end-of-part test, which can be switched off.

    FeedParser pushes one predicate per open multipart and tries all of them on every line,
    so a line costs as much as the structure is deep. A boundary predicate matches exactly
    "--boundary" or "--boundary--" once the line's ending and trailing blanks are stripped:
    here those are looked up in a Counter. Predicates of any other shape (the blank-line
    one of message/delivery-status) are still called, as FeedParser would.
    """

    def __init__(self) -> None:
        super().__init__()
        self._separators: Counter[str] = Counter()
        self._kinds: list[str | None] = []
        self._others: list[Callable[[str], object]] = []
        self._last: tuple[Callable[[str], object] | None, str | None] = (None, None)
        self.matching = True  # False once the structure is cut: the cut part runs to the end

    def push_eof_matcher(self, pred: Callable[[str], object]) -> None:
        super().push_eof_matcher(pred)
        if pred != self._last[0]:  # the parts of one multipart share its predicate
            self._last = (pred, _separator(pred))
        separator = self._last[1]
        self._kinds.append(separator)
        if separator is None:
            self._others.append(pred)
        else:
            self._separators[separator] += 1

    def pop_eof_matcher(self) -> Callable[[str], object]:
        separator = self._kinds.pop()
        if separator is None:
            self._others.pop()
        else:
            self._separators[separator] -= 1
            if not self._separators[separator]:
                del self._separators[separator]
        return super().pop_eof_matcher()

    def readline(self) -> str | object:
        if not self._lines:
            return "" if self._closed else NeedMoreData
        line = self._lines.popleft()
        if self._kinds and self.matching:
            at_end = False
            if line[:2] == "--" and self._separators:
                key = line.rstrip("\r\n").rstrip(" \t")
                at_end = key in self._separators or (key[-2:] == "--" and key[:-2] in self._separators)
            if not at_end and self._others:
                at_end = any(predicate(line) for predicate in self._others)
            if at_end:
                self._lines.appendleft(line)
                return ""
        return line


# One "; name=value" of a header value; a quoted value may hold ";" and may be unterminated.
# Possessive quantifiers: each attempt consumes what it matched, so finditer is linear.
_PARAMETER = re.compile(r';\s*+([^\s=;"]++)\s*+=\s*+("(?:[^"\\]++|\\.)*+"?|[^;]*+)', re.DOTALL)
_KEPT_PARAMETERS = frozenset(("boundary", "charset", "name", "filename"))
_PARAMETER_HEADERS = frozenset(("content-type", "content-disposition"))


def _main_parameters(value: str) -> str:
    """An over-long Content-Type/Disposition value cut to its type and the parameters parsing reads."""
    main, _, rest = value.partition(";")
    kept: list[str] = []
    room = MAX_PARAMETER_HEADER // 2
    for match in _PARAMETER.finditer(";" + rest):
        name, parameter_value = match.group(1), match.group(2).strip()
        item = f"{name}={parameter_value}"
        # RFC 2231 continuations ("name*0*") count as their name; a value full of ";" is junk.
        if name.split("*", 1)[0].lower() in _KEPT_PARAMETERS and len(item) <= room and item.count(";") <= 8:
            kept.append(item)
            room -= len(item) + 2
    return "; ".join([_SPACES.sub(" ", main.strip())[:200], *kept])


def _cap_parameter_headers(message: Message, warnings: list[str]) -> None:
    headers = message._headers  # compat32 keeps (name, raw value) pairs here, in order
    for index, (name, value) in enumerate(headers):
        if (
            len(value) > MAX_PARAMETERS
            and name.lower() in _PARAMETER_HEADERS
            and isinstance(value, str)
            and (len(value) > MAX_PARAMETER_HEADER or value.count(";") > MAX_PARAMETERS)
        ):
            headers[index] = (name, _main_parameters(value))
            shown = clean_text(_unsurrogate(name))[:40]
            warnings.append(f"{shown} header of {len(value):,} characters cut to its main parameters")


_LINE_BREAK_AT_END = re.compile(r"(\r\n|\r|\n)\Z")


class _CappedParser(FeedParser):
    """The stdlib's compat32 FeedParser, made linear in what it is fed.

    Parameter headers are capped as soon as a part's headers are read (before FeedParser
    asks for the boundary), end-of-part tests take constant time (``_LineInput``), and the
    part past ``MAX_MIME_DEPTH`` or ``MAX_MIME_PARTS`` becomes the last one: its headers are
    read, its Content-Type is hidden while parsing so that it is a leaf, and it runs to the
    end of the message (``cut``; the header is restored by ``close``).
    """

    def __init__(self) -> None:
        super().__init__(policy=email.policy.compat32)
        self._input = _LineInput()
        self.warnings: list[str] = []
        self.parts = 0
        self.cut: Message | None = None
        self._cut_state: tuple[list[tuple[str, str]], str] | None = None
        self._cut_in_multipart = False
        self._tail = ""  # the last characters fed: how the message ends

    def _new_message(self) -> None:
        super()._new_message()
        self.parts += 1
        if self.cut is not None:
            return
        if len(self._msgstack) - 1 > MAX_MIME_DEPTH:
            reason = f"MIME structure over {MAX_MIME_DEPTH} levels deep"
        elif self.parts > MAX_MIME_PARTS:
            reason = f"more than {MAX_MIME_PARTS:,} MIME parts"
        else:
            return
        self.cut = self._cur
        self._cut_in_multipart = self._msgstack[-2].get_content_maintype() == "multipart"
        self._input.matching = False
        self.warnings.append(f"{reason}: the rest of the message is kept unparsed as {REMAINDER_FILENAME}")

    def _parse_headers(self, lines: list[str]) -> None:
        super()._parse_headers(lines)
        message = self._cur
        _cap_parameter_headers(message, self.warnings)
        if message is self.cut:
            self._cut_state = (list(message._headers), message.get_default_type())
            message._headers = [(n, v) for n, v in message._headers if n.lower() != "content-type"]
            message.set_default_type("application/octet-stream")

    def feed(self, data: str) -> None:
        self._tail = (self._tail + data[-2:])[-2:]
        super().feed(data)

    def close(self) -> Message:
        root = super().close()
        if self.cut is not None and self._cut_state is not None:
            self.cut._headers, default_type = self._cut_state
            self.cut.set_default_type(default_type)
            # A multipart takes the line break before a boundary off its last part's text (it
            # belongs to the boundary); the cut part ran to the end, so that was the last one.
            payload = self.cut.get_payload()
            line_break = _LINE_BREAK_AT_END.search(self._tail)
            if self._cut_in_multipart and isinstance(payload, str) and payload and line_break:
                self.cut.set_payload(payload + line_break.group(0))
        return root


def _parse_mime(raw: bytes, deadline: float | None = None) -> tuple[Message, _CappedParser]:
    """Parses bytes as email.message_from_bytes does, within the limits, checking the deadline."""
    parser = _CappedParser()
    text = raw.decode("ascii", "surrogateescape")
    for start in range(0, len(text), _FEED_CHUNK):
        parser.feed(text[start : start + _FEED_CHUNK])
        _check(deadline)
    return parser.close(), parser


# Re-serialising a forwarded message: compat32 would refold every header longer than 78
# characters; with no line length it writes the headers back as they came.
_VERBATIM = email.policy.compat32.clone(max_line_length=None)
_VERBATIM_CRLF = _VERBATIM.clone(linesep="\r\n")


class _Bodies:
    """What a walk of the MIME tree collects.

    ``fallbacks`` hold, in the order met, the readable texts that are not the body: the text
    of a forwarded message, an inline text part that carries a file name, the first text part
    of what was left unparsed. They are read (only) when the body itself has no text.
    """

    def __init__(
        self,
        crlf: bool = False,
        *,
        cut: Message | None = None,
        deadline: float | None = None,
        text_only: bool = False,
    ) -> None:
        self.text: list[str] = []
        self.html: list[str] = []
        self.attachments: list[ParsedAttachment] = []
        self.fallbacks: list[Callable[[], str]] = []
        self.crlf = crlf
        # The line ending the message uses, so that a forwarded message is stored with it too.
        self.policy = _VERBATIM_CRLF if crlf else _VERBATIM
        self.cut = cut  # the part where the parser stopped (see _CappedParser), if it did
        self.deadline = deadline
        self.text_only = text_only  # reading a forwarded message for its text: no attachments

    def body_text(self) -> str:
        text = "\n".join(t for t in self.text if t.strip())
        if not text.strip() and self.html:
            text = html_to_text("\n".join(self.html), deadline=self.deadline)
        return text

    def fallback_text(self) -> str:
        for candidate in self.fallbacks:
            _check(self.deadline)
            try:
                text = candidate()
            except TimeoutError:
                raise
            except Exception:  # a fallback is a bonus: never let one break parsing
                continue
            if text.strip():
                return text
        return ""


def _safe_filename(name: str) -> str:
    """A name that is only a name: no directories, not "." or ".." (storage would resolve those)."""
    name = clean_text(name).strip()
    if name.strip(". \t") == "":
        return ""
    return name[:255]


def _part_filename(part: Message, warnings: list[str]) -> str:
    try:
        filename = part.get_filename() or ""
    except Exception:
        warnings.append("unreadable attachment filename")
        return ""
    filename = _unsurrogate(filename)
    if "=?" in filename:
        filename = decode_header_value(filename, warnings)
    # Only the last path component: a name like "../../etc/passwd" must stay a name.
    return _safe_filename(filename.replace("\\", "/").rsplit("/", 1)[-1])


def _content_type(part: Message) -> str:
    return clean_text(_unsurrogate(part.get_content_type()))


def _payload_bytes(part: Message, warnings: list[str]) -> bytes:
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        warnings.append(f"undecodable {_content_type(part)} part")
        return b""
    if payload is None:
        return b""
    if not isinstance(payload, bytes):
        return str(payload).encode("utf-8", "surrogateescape")
    damage = [d for d in part.defects if isinstance(d, _BASE64_DAMAGE)]
    if damage:
        warnings.append(f"damaged base64 in {_content_type(part)} part")
        if any(isinstance(d, errors.InvalidBase64LengthDefect) for d in damage):
            # The stdlib then hands back the still-encoded text; decode the whole quanta instead.
            encoded = _BASE64_ALPHABET.sub(b"", payload)
            payload = binascii.a2b_base64(encoded[: len(encoded) - len(encoded) % 4])
    return payload


def _charset(part: Message) -> str | None:
    try:
        return part.get_content_charset()
    except Exception:  # an undecodable RFC 2231 charset parameter
        return None


def _readable(data: bytes, charset: str | None, content_type: str, deadline: float | None) -> str:
    text = decode_bytes(data, charset)
    return html_to_text(text, deadline=deadline) if content_type == "text/html" else text


def _walk(part: Message, bodies: _Bodies, warnings: list[str], depth: int = 0) -> None:
    _check(bodies.deadline)
    if part is bodies.cut:
        _keep_remainder(part, bodies)
        return
    if depth > MAX_MIME_DEPTH:  # the parser cuts the structure there; a guard all the same
        warnings.append("MIME nesting too deep; rest ignored")
        return
    content_type = _content_type(part)
    if part.is_multipart() and content_type not in _ENCAPSULATED:
        # After a cut every enclosing multipart misses its closing boundary: that says nothing.
        if bodies.cut is None and any(isinstance(d, errors.CloseBoundaryNotFoundDefect) for d in part.defects):
            warnings.append(f"{content_type} part has no closing boundary (truncated?)")
        payload = part.get_payload()
        for child in payload if isinstance(payload, list) else []:
            if isinstance(child, Message):
                _walk(child, bodies, warnings, depth + 1)
        return
    if content_type.startswith("multipart/"):
        # The parser found no usable boundary and left the body as one string: keep it as text.
        warnings.append(f"{content_type} part without a usable boundary; read as text")
        content_type = "text/plain"
    try:
        disposition = part.get_content_disposition()
    except Exception:
        disposition = None
    filename = _part_filename(part, warnings)

    # compat32 makes a message/rfc822 part "multipart" (its payload is [inner message]): the
    # multipart walk above lets it through so as not to spill the forwarded message's parts.
    if content_type in _ENCAPSULATED:
        inner = part.get_payload()
        inner_message = inner[0] if isinstance(inner, list) and inner else None
        if isinstance(inner_message, Message):
            bodies.fallbacks.append(lambda: _message_text(inner_message, bodies, depth + 1))
        if not bodies.text_only:
            _keep_encapsulated(part, inner_message, filename, bodies, warnings)
        return

    inline_text = content_type in ("text/plain", "text/html") and disposition != "attachment"
    if inline_text and not filename:
        text = decode_bytes(_payload_bytes(part, warnings), _charset(part), warnings)
        (bodies.text if content_type == "text/plain" else bodies.html).append(text)
        return
    if bodies.text_only and not inline_text:
        return
    data = _payload_bytes(part, warnings)
    if inline_text:  # shown inline, but a file: the body only when there is no other text
        charset = _charset(part)
        bodies.fallbacks.append(lambda: _readable(data, charset, content_type, bodies.deadline))
    if bodies.text_only:
        return
    if not filename:
        extension = {"text/plain": ".txt", "text/html": ".html", "text/calendar": ".ics"}.get(content_type, "")
        filename = f"part-{len(bodies.attachments) + 1}{extension}"
    content_id = parse_message_id(_unsurrogate(str(part.get("Content-ID", "")))) if part.get("Content-ID") else ""
    bodies.attachments.append(
        ParsedAttachment.from_bytes(
            filename,
            content_type,
            data,
            content_id=content_id,
            inline=disposition == "inline" or (disposition is None and bool(content_id)),
        )
    )


def _keep_encapsulated(
    part: Message, inner_message: Message | None, filename: str, bodies: _Bodies, warnings: list[str]
) -> None:
    """A forwarded message (message/rfc822 and kin) as one .eml attachment, its bytes as they came."""
    try:
        data = (
            inner_message.as_bytes(policy=bodies.policy)
            if isinstance(inner_message, Message)
            else _payload_bytes(part, warnings)
        )
    except Exception:
        data = _payload_bytes(part, warnings)
        warnings.append("nested message could not be re-serialised")
    if not filename and isinstance(inner_message, Message):
        subject = decode_header_value(_unsurrogate(str(inner_message.get("Subject", ""))), warnings)
        # A subject may hold "/" or "..": it becomes a file name, so no path separators.
        filename = _safe_filename(f"{subject[:100].replace('/', '_').replace(chr(92), '_')}.eml")
        if filename == ".eml":
            filename = "forwarded message.eml"
    bodies.attachments.append(
        ParsedAttachment.from_bytes(filename or "message.eml", "message/rfc822", data, inline=False)
    )


def _message_text(message: Message, outer: _Bodies, depth: int) -> str:
    """The readable text of a forwarded message: its body, else its own first fallback."""
    bodies = _Bodies(cut=outer.cut, deadline=outer.deadline, text_only=True)
    _walk(message, bodies, [], depth)  # what it cannot read is a matter for the .eml, not this message
    text = bodies.body_text()
    return text if text.strip() else bodies.fallback_text()


def _keep_remainder(part: Message, bodies: _Bodies) -> None:
    """The part where the parser stopped, with everything after it, as one attachment."""
    newline = "\r\n" if bodies.crlf else "\n"
    head = "".join(f"{name}: {value}{newline}" for name, value in part.raw_items())
    if not any(isinstance(d, errors.MissingHeaderBodySeparatorDefect) for d in part.defects):
        head += newline
    payload = part.get_payload()
    data = (head + (payload if isinstance(payload, str) else "")).encode("ascii", "surrogateescape")
    bodies.fallbacks.append(lambda: _first_raw_text(data, bodies.deadline))
    if not bodies.text_only:
        bodies.attachments.append(ParsedAttachment.from_bytes(REMAINDER_FILENAME, "application/octet-stream", data))


# A line as FeedParser splits them (at \r\n, \r or \n), and a line that starts with "--".
_RAW_LINE = re.compile(rb"[^\r\n]*+(?:\r\n|\r|\n)|[^\r\n]++")
_DASH_LINE = re.compile(rb"(?<![^\r\n])--")
_TEXT_TYPES = (b"text/plain", b"text/html")


def _first_raw_text(data: bytes, deadline: float | None) -> str:
    """The text of the first readable leaf part in MIME source that was left unparsed.

    A linear scan of header blocks, not a parse (the source is what the parser refused):
    a block of multipart type is followed, after its preamble, by a "--" line and its first
    part's headers; one of message type by the enclosed message's headers; a text/plain
    (the default) or text/html block by its text, up to the next "--" line, which is then
    read as a one-part message. Other leaves are skipped up to the next "--" line.
    """
    position, end, lines = 0, len(data), 0
    while position < end:
        start, content_type = position, b"text/plain"
        while True:  # a header block, up to its blank line
            lines += 1
            if not lines % 1024:
                _check(deadline)
            line = _RAW_LINE.match(data, position)
            if line is None:
                return ""
            position = line.end()
            text = line.group()
            if text.strip():
                if text[:13].lower() == b"content-type:":
                    content_type = text[13:].split(b";", 1)[0].strip().lower()
            elif content_type.startswith(b"message/"):
                start, content_type = position, b"text/plain"  # the enclosed message's headers follow
            else:
                break
        _check(deadline)
        boundary = _DASH_LINE.search(data, position)
        if content_type in _TEXT_TYPES:
            part = data[start : boundary.start() if boundary else end]
            readable = _raw_part_text(part, deadline, before_boundary=boundary is not None)
            if readable.strip():
                return readable
        if boundary is None:
            return ""
        position = _RAW_LINE.match(data, boundary.start()).end()  # type: ignore[union-attr]  # "--" matches
    return ""


def _raw_part_text(part: bytes, deadline: float | None, *, before_boundary: bool) -> str:
    if before_boundary:  # the line break before a boundary belongs to the boundary
        part = part[:-2] if part.endswith(b"\r\n") else part[:-1]
    message, _ = _parse_mime(part, deadline)
    bodies = _Bodies(deadline=deadline, text_only=True)
    _walk(message, bodies, [])
    return bodies.body_text()


def _collapsed(value: str) -> str:
    return _SPACES.sub(" ", value).strip()


def _default_message_id(
    rfc_message_id: str, sender: str, date: dt.datetime | None, date_header: str, raw: bytes
) -> str:
    """The provider_message_id of a message its provider gives no id: Message-ID, sender and date.

    A Message-ID alone would let anyone suppress a message by sending another with the same
    Message-ID first, and fold together messages that share one by mistake; with the sender
    and the Date (as an instant, so that copies with a reformatted header agree) it is the
    same for every copy of one message (the same message in two folders, or re-fetched) and
    differs otherwise. The readable Message-ID comes first, cut so that the whole stays
    within 255 characters; the digest covers all of it. No Message-ID: a hash of the bytes.
    """
    if not rfc_message_id:
        return f"sha256:{hashlib.sha256(raw).hexdigest()}"
    when = date.isoformat() if date is not None else _collapsed(date_header)
    key = "\n".join((rfc_message_id, sender, when)).encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(key).hexdigest()[:24]
    return f"mid:{rfc_message_id[: 255 - len('mid:#') - len(digest)]}#{digest}"


def _budget() -> float:
    try:
        return float(getattr(settings, "PARSE_BUDGET_SECONDS", PARSE_BUDGET_SECONDS))
    except ImproperlyConfigured:  # parsing outside a configured project (a script, a notebook)
        return PARSE_BUDGET_SECONDS


def parse_message(raw: bytes, *, provider_message_id: str = "") -> ParsedMessage:
    """Parses one RFC 5322 message. Never raises on malformed input.

    ``provider_message_id`` defaults to one made of the Message-ID, sender and date (see
    ``_default_message_id``), or to a hash of the bytes when there is no Message-ID, so
    that the same message always gets the same id. Gmail export headers (X-GM-THRID,
    X-Gmail-Labels) fill the thread id and labels when present.

    Time is linear in the size of the message whatever it holds, and bounded: past
    ``PARSE_BUDGET_SECONDS`` (or ``settings.PARSE_BUDGET_SECONDS``) of wall-clock time the
    message is returned as ``parse_headers_only`` would give it (from at most
    ``HEADERS_ONLY_MAX_BYTES`` of headers), with a warning saying so. The deadline is
    checked between steps, never by a signal, so this works in any thread.
    """
    budget = _budget()
    try:
        return _parse(raw, provider_message_id, deadline=time.monotonic() + budget)
    except TimeoutError:
        return _headers_only(
            raw[:HEADERS_ONLY_MAX_BYTES],
            len(raw),
            provider_message_id=provider_message_id,
            why=f"parsing took over the {budget:g} s budget",
            id_source=raw,  # the id all its bytes give, as when parsing is quick enough
        )


def _parse(
    raw: bytes,
    provider_message_id: str,
    deadline: float | None,
    *,
    id_source: bytes | None = None,
    with_bodies: bool = True,
) -> ParsedMessage:
    warnings: list[str] = []
    # A byte-order mark or blank lines before the headers (Windows tools, some exports) would
    # make the stdlib parser read the whole message, headers included, as body.
    start = _LEADING_JUNK.match(raw).end()  # type: ignore[union-attr]  # always matches
    if start:
        warnings.append(f"{start} bytes before the headers skipped")
    try:
        message, parser = _parse_mime(raw[start:] if start else raw, deadline)
    except TimeoutError:
        raise
    except Exception as error:  # the parser is lenient; this is a last resort
        warnings.append(f"unparseable message: {type(error).__name__}")
        message, parser = _parse_mime(b"\r\n\r\n" + raw, deadline)
    if with_bodies:
        warnings.extend(parser.warnings)
    headers = _header_map(message)
    if not raw.strip():
        warnings.append("empty message")
    elif not headers:
        warnings.append("no headers: not an e-mail message?")

    rfc_message_id = parse_message_id(_first(headers, "message-id"))
    if not rfc_message_id:
        warnings.append("no Message-ID")

    sender_values = headers.get("from") or headers.get("sender") or headers.get("return-path") or []
    if not headers.get("from"):
        warnings.append("no From header")
    senders = parse_addresses(sender_values, warnings)
    date_header = _first(headers, "date")
    dated = parse_date(date_header, warnings)
    received_at = _received_date(headers, warnings)
    sent_at = dated
    if sent_at is None:
        if not date_header:
            warnings.append("no Date header")
        sent_at = received_at
    recipients = []
    for name in ("to", "cc", "bcc"):
        _check(deadline)
        recipients.append(parse_addresses(headers.get(name, []), warnings))
    _check(deadline)

    bodies = _Bodies(crlf=b"\r\n" in raw[:2000], cut=parser.cut, deadline=deadline)
    body_text = ""
    if with_bodies:
        try:
            _walk(message, bodies, warnings)
        except TimeoutError:
            raise
        except Exception as error:
            warnings.append(f"MIME structure unreadable: {type(error).__name__}")
        body_text = bodies.body_text()
        if not body_text.strip():
            body_text = bodies.fallback_text() or body_text

    in_reply_to_header = _first(headers, "in-reply-to")
    labels = tuple(
        clean_text(label.strip())
        for value in headers.get("x-gmail-labels", [])
        for label in decode_header_value(value).split(",")
        if label.strip()
    )
    subject_header = headers.get("subject")
    sender = senders[0].value if senders else _collapsed(" ".join(sender_values))
    return ParsedMessage(
        provider_message_id=provider_message_id
        or _default_message_id(rfc_message_id, sender, dated, date_header, raw if id_source is None else id_source),
        rfc_message_id=rfc_message_id,
        provider_thread_id=_first(headers, "x-gm-thrid").strip(),
        sender=senders[0] if senders else None,
        to=recipients[0],
        cc=recipients[1],
        bcc=recipients[2],
        subject=decode_header_value(subject_header[0], warnings) if subject_header else None,
        body_text=body_text,
        body_html="\n".join(bodies.html),
        sent_at=sent_at,
        received_at=received_at,
        in_reply_to=parse_message_id(in_reply_to_header) if in_reply_to_header else "",
        references=_references(" ".join(headers.get("references", []))),
        labels=labels,
        attachments=tuple(bodies.attachments),
        raw_size=len(raw),
        warnings=tuple(dict.fromkeys(clean_text(warning) for warning in warnings)),
    )


def parse_headers_only(headers: bytes, size: int, *, provider_message_id: str = "", why: str = "") -> ParsedMessage:
    """A message too big to parse whole (over ``MESSAGE_MAX_BYTES``), from its header block alone.

    Providers fetch or read only the headers of such a message (IMAP ``BODY.PEEK[HEADER]``,
    the first bytes of an mbox entry) and pass its full ``size``. The result carries the
    headers' fields, no body and no attachments, ``raw_size=size`` and a warning saying
    why, so the message is recorded (and findable) without its bulk ever being in memory.
    ``provider_message_id`` defaults as in ``parse_message``: the same headers always get
    the same id.
    """
    return _headers_only(headers, size, provider_message_id=provider_message_id, why=why)


def _headers_only(
    headers: bytes, size: int, *, provider_message_id: str, why: str, id_source: bytes | None = None
) -> ParsedMessage:
    headers = headers[_LEADING_JUNK.match(headers).end() :]  # type: ignore[union-attr]  # always matches
    ends = [found for found in (headers.find(b"\r\n\r\n"), headers.find(b"\n\n")) if found >= 0]
    block = headers[: min(ends)] if ends else headers
    parsed = _parse(
        block.rstrip(b"\r\n") + b"\r\n\r\n", provider_message_id, None, id_source=id_source, with_bodies=False
    )
    reason = why or f"message of {size:,} bytes is over the size limit"
    return dataclasses.replace(
        parsed,
        raw_size=size,
        warnings=(f"{reason}: stored headers only", *parsed.warnings),
    )
