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
from functools import lru_cache
from email import errors
from email.message import Message
from html.parser import HTMLParser

from contacts.normalize import normalize_email
from conversations.messages import Address, AddressKind, ParsedAttachment, ParsedMessage

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
_WHITESPACE = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*(\n\s*)+")
_HTML_SPACE = re.compile(r"\s+")
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
    return [pair for item in header.split(",") if item.strip() for pair in _item_pairs(item.strip())]


@lru_cache(maxsize=32768)
def _item_pairs(item: str) -> tuple[tuple[str, str], ...]:
    return tuple(email.utils.getaddresses([item]))


def parse_addresses(values: list[str], warnings: list[str]) -> tuple[Address, ...]:
    """E-mail addresses from address headers; display names decoded, duplicates dropped."""
    if not values:
        return ()
    unfolded = [_FOLD.sub("", v) for v in values]
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
    for value in headers.get("received", []):
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


class _HtmlText(HTMLParser):
    """Readable plain text from HTML: block elements become line breaks, scripts vanish.

    As in a browser, line breaks in the HTML source are just spaces (except inside <pre>):
    only tags break lines.
    """

    BLOCK = frozenset("p div tr li h1 h2 h3 h4 h5 h6 blockquote pre table ul ol hr section article".split())
    SKIP = frozenset(("script", "style", "head", "title", "noscript"))

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.preformatted = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.SKIP:
            self.skipping += 1
        elif tag == "br":  # only here: "<br/>" also calls handle_endtag, and must break once
            self.parts.append("\n")
        elif tag in self.BLOCK:
            self.parts.append("\n")
            if tag == "pre":
                self.preformatted += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BLOCK:
            self.parts.append("\n")
            if tag == "pre":
                self.preformatted = max(0, self.preformatted - 1)

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            # \s also matches the no-break space of "&nbsp;", which should read as a space.
            self.parts.append(data if self.preformatted else _HTML_SPACE.sub(" ", data))


def html_to_text(html: str) -> str:
    parser = _HtmlText()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # HTMLParser is lenient, but never let a body break parsing
        return re.sub(r"<[^>]*>", " ", html)
    lines = (_WHITESPACE.sub(" ", line).strip() for line in "".join(parser.parts).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


# Re-serialising a forwarded message: compat32 would refold every header longer than 78
# characters; with no line length it writes the headers back as they came.
_VERBATIM = email.policy.compat32.clone(max_line_length=None)
_VERBATIM_CRLF = _VERBATIM.clone(linesep="\r\n")


class _Bodies:
    def __init__(self, crlf: bool = False) -> None:
        self.text: list[str] = []
        self.html: list[str] = []
        self.attachments: list[ParsedAttachment] = []
        # The line ending the message uses, so that a forwarded message is stored with it too.
        self.policy = _VERBATIM_CRLF if crlf else _VERBATIM


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


def _walk(part: Message, bodies: _Bodies, warnings: list[str], depth: int = 0) -> None:
    if depth > 50:
        warnings.append("MIME nesting too deep; rest ignored")
        return
    content_type = _content_type(part)
    if part.is_multipart() and content_type not in _ENCAPSULATED:
        if any(isinstance(d, errors.CloseBoundaryNotFoundDefect) for d in part.defects):
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
    content_id = parse_message_id(_unsurrogate(str(part.get("Content-ID", "")))) if part.get("Content-ID") else ""

    # compat32 makes a message/rfc822 part "multipart" (its payload is [inner message]): the
    # multipart walk above lets it through so as not to spill the forwarded message's parts.
    if content_type in _ENCAPSULATED:
        inner = part.get_payload()
        inner_message = inner[0] if isinstance(inner, list) and inner else None
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
        return

    is_body_type = content_type in ("text/plain", "text/html")
    if is_body_type and disposition != "attachment" and not filename:
        try:
            charset = part.get_content_charset()
        except Exception:  # an undecodable RFC 2231 charset parameter
            charset = None
        text = decode_bytes(_payload_bytes(part, warnings), charset, warnings)
        (bodies.text if content_type == "text/plain" else bodies.html).append(text)
        return

    data = _payload_bytes(part, warnings)
    if not filename:
        extension = {"text/plain": ".txt", "text/html": ".html", "text/calendar": ".ics"}.get(content_type, "")
        filename = f"part-{len(bodies.attachments) + 1}{extension}"
    bodies.attachments.append(
        ParsedAttachment.from_bytes(
            filename,
            content_type,
            data,
            content_id=content_id,
            inline=disposition == "inline" or (disposition is None and bool(content_id)),
        )
    )


def parse_message(raw: bytes, *, provider_message_id: str = "") -> ParsedMessage:
    """Parses one RFC 5322 message. Never raises on malformed input.

    ``provider_message_id`` defaults to the Message-ID, or to a hash of the bytes when
    there is none, so that the same bytes always get the same id. Gmail export headers
    (X-GM-THRID, X-Gmail-Labels) fill the thread id and labels when present.
    """
    warnings: list[str] = []
    # A byte-order mark or blank lines before the headers (Windows tools, some exports) would
    # make the stdlib parser read the whole message, headers included, as body.
    start = _LEADING_JUNK.match(raw).end()  # type: ignore[union-attr]  # always matches
    if start:
        warnings.append(f"{start} bytes before the headers skipped")
    try:
        message = email.message_from_bytes(raw[start:] if start else raw)
    except Exception as error:  # the stdlib parser is lenient; this is a last resort
        warnings.append(f"unparseable message: {type(error).__name__}")
        message = email.message_from_bytes(b"\r\n\r\n" + raw)
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
    sent_at = parse_date(_first(headers, "date"), warnings)
    received_at = _received_date(headers, warnings)
    if sent_at is None:
        if not _first(headers, "date"):
            warnings.append("no Date header")
        sent_at = received_at

    bodies = _Bodies(crlf=b"\r\n" in raw[:2000])
    try:
        _walk(message, bodies, warnings)
    except Exception as error:
        warnings.append(f"MIME structure unreadable: {type(error).__name__}")
    body_text = "\n".join(t for t in bodies.text if t.strip())
    body_html = "\n".join(bodies.html)
    if not body_text.strip() and body_html:
        body_text = html_to_text(body_html)

    in_reply_to_header = _first(headers, "in-reply-to")
    labels = tuple(
        clean_text(label.strip())
        for value in headers.get("x-gmail-labels", [])
        for label in decode_header_value(value).split(",")
        if label.strip()
    )
    subject_header = headers.get("subject")
    return ParsedMessage(
        provider_message_id=provider_message_id
        or (f"mid:{rfc_message_id}"[:255] if rfc_message_id else f"sha256:{hashlib.sha256(raw).hexdigest()}"),
        rfc_message_id=rfc_message_id,
        provider_thread_id=_first(headers, "x-gm-thrid").strip(),
        sender=senders[0] if senders else None,
        to=parse_addresses(headers.get("to", []), warnings),
        cc=parse_addresses(headers.get("cc", []), warnings),
        bcc=parse_addresses(headers.get("bcc", []), warnings),
        subject=decode_header_value(subject_header[0], warnings) if subject_header else None,
        body_text=body_text,
        body_html=body_html,
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
    end = headers.find(b"\r\n\r\n")
    if end < 0:
        end = headers.find(b"\n\n")
    block = headers if end < 0 else headers[:end]
    parsed = parse_message(block.rstrip(b"\r\n") + b"\r\n\r\n", provider_message_id=provider_message_id)
    reason = why or f"message of {size:,} bytes is over the size limit"
    return dataclasses.replace(
        parsed,
        body_text="",
        body_html="",
        attachments=(),
        raw_size=size,
        warnings=(f"{reason}: stored headers only", *parsed.warnings),
    )
