"""The walk of a parsed MIME tree: body text and HTML, attachments, fallback texts.

``_walk`` collects into ``_Bodies`` what ``parse_message`` returns from a message's parts:
the inline text and HTML, every other part as a ``ParsedAttachment`` (a forwarded message as
one .eml), and, in the order met, the texts to fall back on when the body itself has none
(a forwarded message's text, an inline text file, the first text of an unparsed remainder).
"""
from __future__ import annotations

import binascii
import email.policy
import re
from collections.abc import Callable
from email import errors
from email.message import Message

from conversations.headers import _unsurrogate, clean_text, decode_bytes, decode_header_value, parse_message_id
from conversations.messages import ParsedAttachment
from conversations.mime import MAX_MIME_DEPTH, REMAINDER_FILENAME, _check, _parse_mime
from conversations.rendering import html_to_text

_BASE64_DAMAGE = (errors.InvalidBase64CharactersDefect, errors.InvalidBase64LengthDefect)
_BASE64_ALPHABET = re.compile(rb"[^A-Za-z0-9+/]")
# message/* types that hold a whole message, stored as one .eml attachment. Others, such as
# message/delivery-status (header blocks, not a message), are walked like any container.
_ENCAPSULATED = frozenset(("message/rfc822", "message/global", "message/news"))


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
