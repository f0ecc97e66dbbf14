"""The mbox provider: a file (a Google Takeout export is one) read as a stream.

Positions (the page token and the cursor) are byte offsets tied to one file: its path,
device and inode, and a digest of the bytes just before the offset. A file that grew
(appended mail) is picked up by the next delta; one that shrank, was rewritten, or is
another file altogether (the account was switched to it) raises CursorExpired: one full
resync, without duplicates since message ids come from the messages.

Memory is bounded by settings, not by the input: lines are read in pieces of at most
PIECE_BYTES, a page holds at most PAGE_MAX_BYTES of messages (or one message alone), and
of a message over MESSAGE_MAX_BYTES only its header block is kept (HEAD_MAX_BYTES at most)
and stored, headers only; the rest is counted, not held.

Only files under settings.MBOX_IMPORT_DIR are read, symlinks resolved: an account's path
is editable by staff and must not reach any file the server can read (/etc/shadow...).
"""
from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from django.conf import settings

from conversations.messages import ParsedMessage
from conversations.parsing import parse_headers_only, parse_message
from integrations.providers.base import (
    BackfillWindow,
    Batch,
    Capability,
    Cursor,
    CursorExpired,
    MessageProvider,
    PageToken,
    PermanentError,
)
from integrations.providers.connect import UploadConnect

logger = logging.getLogger(__name__)

PIECE_BYTES = 64 * 1024  # the most handled at once: longer lines are handled in pieces
BLOCK_BYTES = 256 * 1024  # what one read() of the file asks for
HEAD_MAX_BYTES = 256 * 1024  # what is kept of a message over MESSAGE_MAX_BYTES: its header block, at most this
FINGERPRINT_BYTES = 4096  # the bytes before a position whose digest tells the same file from a rewritten one
_SEPARATOR = b"From "
_BLANK_LINES = (b"\n", b"\r\n")
# A line that needs a look of its own: a quoted "From ", a possible separator, a blank line.
# Runs of other lines are handled as one piece, which is what makes reading fast.
_NOTABLE_LINE = re.compile(rb"\n(?:>|From |\r?\n)")


# --- where files may be read ----------------------------------------------------------------

def resolve_import_path(value: str | os.PathLike[str]) -> Path:
    """The file ``value`` names, symlinks resolved, if it lies under MBOX_IMPORT_DIR; else PermanentError.

    A relative ``value`` is relative to MBOX_IMPORT_DIR. Whether a path outside exists is
    never revealed: it is refused before being looked at.
    """
    root = Path(settings.MBOX_IMPORT_DIR)
    try:
        root = root.resolve(strict=True)
    except (OSError, RuntimeError) as error:
        raise PermanentError(f"The mbox import directory {root} (MBOX_IMPORT_DIR) does not exist: create it, "
                             "or point MBOX_IMPORT_DIR at the directory holding mbox files.") from error
    if not str(value):
        raise PermanentError("This mbox account has no file: set its path to an mbox file in "
                             f"{root} (MBOX_IMPORT_DIR).")
    refusal = (f"The mbox file {value} is outside {root}, the only directory mbox imports may read "
               "(MBOX_IMPORT_DIR). Copy it there (manage.py import_mbox --copy does) and point the account at "
               "the copy.")
    candidate = root / value
    if not candidate.resolve().is_relative_to(root):
        raise PermanentError(refusal)
    try:
        path = candidate.resolve(strict=True)
    except (OSError, RuntimeError) as error:
        raise PermanentError(f"The mbox file {value} does not exist or cannot be reached in {root}.") from error
    if not path.is_relative_to(root):  # a symlink changed between the two resolutions
        raise PermanentError(refusal)
    if not path.is_file():
        raise PermanentError(f"The mbox file {value} is not a regular file.")
    return path


# --- reading ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class MboxMessage:
    start: int  # offset of the "From " separator line
    end: int  # offset just past the message: where the next one starts, or the end of the file
    raw: bytes  # the message, ">From "-unquoted; only its header block when not ``whole``
    size: int  # bytes of the whole message (unquoted), held or not
    whole: bool = True
    followed: bool = True  # a separator follows it: it is known to be complete
    ends_line: bool = True  # its last byte read was a newline


class PageFull(Exception):
    """Raised by MboxReader.read when the message being read outgrows ``give_up_after``."""


class _Body:
    """A message's bytes as they are read: all of them up to ``hold_max``, past it the header block only."""

    def __init__(self, hold_max: int) -> None:
        self.hold_max = hold_max
        self.buffer: io.BytesIO | None = io.BytesIO()  # grows in place, getvalue() does not copy
        self.head = b""
        self.size = 0
        self.header_end: int | None = None

    @property
    def held(self) -> int:
        return self.size if self.buffer is not None else len(self.head)

    def add(self, data: bytes, *, blank_line: bool = False) -> None:
        if blank_line and self.header_end is None and self.size:
            self.header_end = self.size
        self.size += len(data)
        if self.buffer is not None:
            self.buffer.write(data)
            if self.size > self.hold_max:
                keep = HEAD_MAX_BYTES if self.header_end is None else min(self.header_end, HEAD_MAX_BYTES)
                self.buffer.seek(0)
                self.head, self.buffer = self.buffer.read(keep), None
        elif self.header_end is None and len(self.head) < HEAD_MAX_BYTES:
            self.head += data[:HEAD_MAX_BYTES - len(self.head)]

    def raw(self) -> bytes:
        return self.buffer.getvalue() if self.buffer is not None else self.head


def _unquote(text: bytes) -> tuple[bytes, bytes]:
    """mboxrd: a line ">From ..." (">>From ...") loses one ">". Returns (bytes to keep, bytes held back).

    ``text`` starts a line, or continues one that so far is only ">"s (a piece boundary fell
    in them). While the line may still turn out to be a quoted "From ", its last ">" and
    the start of "From " seen so far are held back; the ">"s are alike, so dropping the
    last is dropping the first.
    """
    run = len(text) - len(text.lstrip(b">"))
    rest = text[run:]
    if run and rest.startswith(_SEPARATOR):
        return text[1:], b""
    if run and _SEPARATOR.startswith(rest):
        return text[:run - 1], text[run - 1:]
    return text, b""


class MboxReader:
    """Reads the messages of an open mbox file one at a time, from a separator at ``start``.

    A line "From ..." separates messages when it begins the file (or ``start``) or follows
    a blank line; the blank line before it belongs to the format, not to the message.
    ">From " quoting (mboxrd) is undone. Line endings are kept as they are. Lines are read
    in pieces of at most PIECE_BYTES, so a file without newlines is no single giant line.
    """

    def __init__(self, handle: BinaryIO, start: int = 0) -> None:
        handle.seek(start)
        self._handle = handle
        self.position = start  # offset of the first byte not consumed
        self._line_start = True
        self._after_blank = True  # a separator may open the file
        self._lookahead = b""  # the next message's separator piece, read but not consumed
        self._buffer = b""
        self._index = 0  # of the next byte of _buffer to hand out
        self._at_end = False

    def _piece(self) -> bytes:
        """The next piece: a notable line, a run of other whole lines, or part of a long line.

        At most PIECE_BYTES. A piece starting a line is either one line (or its first
        PIECE_BYTES) or whole lines none of which but the first is notable, and the first
        only if it is alone; so the caller may look at a piece as at a line.
        """
        if self._lookahead:
            piece, self._lookahead = self._lookahead, b""
            return piece
        buffer, index = self._buffer, self._index
        newline = buffer.find(b"\n", index, index + PIECE_BYTES)
        while newline < 0 and len(buffer) - index < PIECE_BYTES and not self._at_end:
            block = self._handle.read(BLOCK_BYTES)
            self._at_end = not block
            buffer, index = buffer[index:] + block, 0
            newline = buffer.find(b"\n", index, index + PIECE_BYTES)
        self._buffer = buffer
        if newline < 0:
            stop = min(len(buffer), index + PIECE_BYTES)  # a long line, or the file's last
        else:
            stop = newline + 1
            if self._line_start and not (buffer.startswith((b">", _SEPARATOR), index) or stop - index <= 2
                                         and buffer[index:stop] in _BLANK_LINES):
                limit = min(len(buffer), index + PIECE_BYTES)
                notable = _NOTABLE_LINE.search(buffer, stop - 1, limit)
                stop = notable.start() + 1 if notable else buffer.rfind(b"\n", stop - 1, limit) + 1
        self._index = stop
        return buffer[index:stop]

    def _consume(self, piece: bytes) -> None:
        self.position += len(piece)
        if piece.endswith(b"\n"):
            self._after_blank = self._line_start and piece in _BLANK_LINES
            self._line_start = True
        else:
            self._line_start = False

    def _is_separator(self, piece: bytes) -> bool:
        return self._line_start and self._after_blank and piece.startswith(_SEPARATOR)

    def read(self, hold_max: int, *, give_up_after: int | None = None) -> MboxMessage | None:
        """The next message (None at the end). Holds at most ``hold_max`` bytes of it, else its head.

        Raises PageFull once it holds more than ``give_up_after`` bytes of the message (a piece more at most).
        """
        while not self._is_separator(piece := self._piece()):
            if not piece:
                return None
            self._consume(piece)  # bytes before the first separator are not mail
        start = self.position
        self._consume(piece)
        while not self._line_start and (piece := self._piece()):
            self._consume(piece)  # the rest of a separator line longer than a piece
        body = _Body(hold_max)
        blank = b""  # a blank line: the message's, unless a separator or the end follows
        held = b""  # what _unquote holds back
        while True:
            line_start = self._line_start
            piece = self._piece()
            if not piece or self._is_separator(piece):
                self._lookahead = piece
                if held:
                    body.add(held)
                return MboxMessage(start, self.position, body.raw(), body.size, whole=body.buffer is not None,
                                   followed=bool(piece), ends_line=self._line_start)
            self._consume(piece)
            if line_start and piece in _BLANK_LINES:
                if blank:
                    body.add(blank, blank_line=True)
                blank = piece
                continue
            if blank:
                body.add(blank, blank_line=True)
                blank = b""
            if held or (line_start and piece.startswith(b">")):
                piece, held = _unquote(held + piece)
            body.add(piece)
            if give_up_after is not None and body.held > give_up_after:
                raise PageFull


def iter_mbox(path: str | os.PathLike[str], start: int = 0, *, hold_max: int | None = None) -> Iterator[MboxMessage]:
    """Yields the messages of the mbox file ``path`` from byte offset ``start`` (a separator line).

    Of a message over ``hold_max`` (default: settings.MESSAGE_MAX_BYTES) only the head is kept.
    """
    limit = settings.MESSAGE_MAX_BYTES if hold_max is None else hold_max
    with open(path, "rb") as handle:
        reader = MboxReader(handle, start)
        while (message := reader.read(limit)) is not None:
            yield message


# --- the provider -----------------------------------------------------------------------------

class MboxProvider(MessageProvider):
    """Reads ``account.config["path"]``. Pages are file order (an mbox has no "newest first")."""

    key = "mbox"
    display_name = "Mbox import"
    capabilities = frozenset({Capability.EMAIL})
    connect = UploadConnect("An mbox import is connected by uploading the file on the Connections page, or on the "
                            "server with manage.py import_mbox.")
    page_size = 500
    # How long the file must have been left alone before its last message counts as complete.
    settle_seconds = 5.0

    def authenticate(self) -> None:
        resolve_import_path(self.account.config.get("path", ""))

    def fetch_initial(self, window: BackfillWindow, page_token: PageToken | None) -> Batch:
        return self._page(page_token or {})

    def fetch_since(self, cursor: Cursor) -> Batch:
        return self._page(cursor)

    @contextmanager
    def _open(self) -> Iterator[tuple[BinaryIO, dict[str, Any]]]:
        """The account's file, opened, and its identity. Checked again here: a symlink may have changed."""
        path = resolve_import_path(self.account.config.get("path", ""))
        # No symlink may be swapped in for the file, and a FIFO must not block the worker.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(path, flags)
        except OSError as error:
            raise PermanentError(f"The mbox file {path} cannot be read: {error.strerror}.") from error
        with os.fdopen(fd, "rb") as handle:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode) or not _opened_under(fd, Path(settings.MBOX_IMPORT_DIR).resolve()):
                raise PermanentError(f"The mbox file {path} changed into something that may not be read.")
            yield handle, {"path": str(path), "device": status.st_dev, "inode": status.st_ino}

    def _page(self, position: dict[str, Any]) -> Batch:
        self.api_calls += 1  # one read of the file per page: the nearest thing to a request
        with self._open() as (handle, file):
            size = os.fstat(handle.fileno()).st_size
            start = _check_position(handle, file, size, position)
            reader = MboxReader(handle, start)
            message_max, page_max = settings.MESSAGE_MAX_BYTES, settings.PAGE_MAX_BYTES
            messages: list[ParsedMessage] = []
            held, end, more = 0, start, False
            while len(messages) < self.page_size and held < page_max:
                try:
                    found = reader.read(message_max, give_up_after=page_max - held if messages else None)
                except PageFull:
                    break  # that message starts the next page
                if found is None or not (found.followed or self._complete(handle, found)):
                    more = False  # the end, or a last message still being written: the next sync reads it
                    break
                messages.append(self._parse(found))
                held, end, more = held + len(found.raw), found.end, found.followed
                del found  # not held while the next message is read
            here = {"offset": end, "file": file, "before": _fingerprint(handle, end)}
        return Batch(messages=messages, next_page_token=here if more else None, new_cursor=here,
                     progress=(end, max(size, end)))  # the file may have grown while it was read

    def _complete(self, handle: BinaryIO, found: MboxMessage) -> bool:
        """Whether the file's last message, which no separator follows, is complete.

        A mail program appending to an mbox writes a message in several writes, so a final
        message may be half-written (and a Takeout download may still be arriving). It counts
        as complete when the file ends with a newline (every writer ends a message with one)
        and has not been modified for ``settle_seconds``: no writer pauses that long inside a
        message. The size and time are taken after reading, so bytes appended meanwhile mean
        "not yet". Otherwise the cursor stays at the message's start and a later sync reads
        it whole. import_mbox waits for a file to settle before importing, so a static file
        (a Takeout export) is imported to its last message in one run.
        """
        status = os.fstat(handle.fileno())
        return (found.ends_line and status.st_size == found.end
                and time.time() - status.st_mtime >= self.settle_seconds)

    def _parse(self, found: MboxMessage) -> ParsedMessage:
        if found.whole:
            return parse_message(found.raw)
        logger.warning("mbox account %s: the message at byte %s is %s bytes, over MESSAGE_MAX_BYTES: "
                       "stored headers only", self.account.pk, found.start, found.size)
        return parse_headers_only(
            found.raw, found.size,
            why=f"message of {found.size:,} bytes is over MESSAGE_MAX_BYTES ({settings.MESSAGE_MAX_BYTES:,})",
        )


def _opened_under(fd: int, root: Path) -> bool:
    """Where the open file really is (Linux /proc), so that no directory swapped meanwhile can mislead."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}")).is_relative_to(root)
    except OSError:
        return True  # no /proc: resolve_import_path's check stands alone


def _fingerprint(handle: BinaryIO, offset: int) -> str:
    start = max(0, offset - FINGERPRINT_BYTES)
    handle.seek(start)
    return hashlib.sha256(handle.read(offset - start)).hexdigest()[:32]


def _check_position(handle: BinaryIO, file: dict[str, Any], size: int, position: dict[str, Any]) -> int:
    """The offset to read from; CursorExpired if ``position`` is not a message start in this same file."""
    if not position:
        return 0
    offset = int(position.get("offset", 0))
    if position.get("file") != file:
        raise CursorExpired(f"the account now reads {file['path']}, another file than the one its position is in")
    if size < offset:
        raise CursorExpired(f"{file['path']} shrank since the last import")
    if position.get("before") != _fingerprint(handle, offset) or (offset < size and handle.read(5) != _SEPARATOR):
        raise CursorExpired(f"{file['path']} was rewritten since the last import")
    return offset
