"""The stdlib's compat32 MIME parser, capped so that it stays linear in what it reads.

``_parse_mime`` parses bytes as ``email.message_from_bytes`` does, but through
``_CappedParser``: end-of-part tests take constant time, over-long Content-Type and
Content-Disposition values are cut to their main parameters before the stdlib splits them,
and past ``MAX_MIME_DEPTH`` levels or ``MAX_MIME_PARTS`` parts the rest of the message is one
unparsed part (``parser.cut``). ``_check`` raises ``_OverBudget`` once a deadline has passed.
"""
from __future__ import annotations

import email.policy
import re
import time
from collections import Counter
from collections.abc import Callable
from email.feedparser import BufferedSubFile, FeedParser, NeedMoreData
from email.message import Message

from conversations.headers import _SPACES, _unsurrogate, clean_text

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
REMAINDER_FILENAME = "unparsed-remainder.bin"
_FEED_CHUNK = 65_536


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
