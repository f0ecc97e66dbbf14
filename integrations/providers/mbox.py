"""The mbox provider: a file (a Google Takeout export is one) read as a stream.

The page token and the cursor are byte offsets, so memory is bounded by the largest
single message and an interrupted import resumes where it stopped. A file that grew
(appended mail) is picked up by the next delta; one that shrank or vanished is a reset.
"""
from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conversations.parsing import parse_message
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

_ESCAPED_FROM = re.compile(rb"^>(>*From )")


@dataclass(frozen=True)
class MboxMessage:
    start: int  # offset of the "From " separator line
    end: int  # offset just past the message: where the next one starts
    raw: bytes


def iter_mbox(path: str | os.PathLike[str], start: int = 0) -> Iterator[MboxMessage]:
    """Yields the messages of an mbox file from byte offset ``start`` (a separator line).

    A line "From ..." separates messages when it begins the file or follows a blank line;
    ">From " quoting (mboxrd) is undone. Line endings are kept as they are.
    """
    with open(path, "rb") as handle:
        handle.seek(start)
        position = start
        message_start = start
        lines: list[bytes] = []
        previous_blank = True
        in_message = False
        for line in handle:
            if line.startswith(b"From ") and previous_blank:
                if in_message:
                    yield MboxMessage(message_start, position, _finish(lines))
                lines = []
                message_start = position
                in_message = True
            elif in_message:
                lines.append(_ESCAPED_FROM.sub(rb"\1", line) if line.startswith(b">") else line)
            previous_blank = line in (b"\n", b"\r\n")
            position += len(line)
        if in_message:
            yield MboxMessage(message_start, position, _finish(lines))


def _finish(lines: list[bytes]) -> bytes:
    # The blank line before the next separator belongs to the mbox format, not the message.
    if lines and lines[-1] in (b"\n", b"\r\n"):
        lines.pop()
    return b"".join(lines)


class MboxProvider(MessageProvider):
    """Reads ``account.config["path"]``. Pages are file order (an mbox has no "newest first")."""

    key = "mbox"
    display_name = "Mbox import"
    capabilities = frozenset({Capability.EMAIL})
    page_size = 500

    @property
    def path(self) -> Path:
        return Path(self.account.config.get("path", ""))

    def authenticate(self) -> None:
        if not self.path.is_file():
            raise PermanentError(f"The mbox file {self.path} does not exist or is not a file.")

    def _page(self, start: int) -> Batch:
        self.api_calls += 1  # one read of the file per page: the nearest thing to a request
        size = self.path.stat().st_size
        messages, end = [], start
        for found in iter_mbox(self.path, start):
            messages.append(parse_message(found.raw))
            end = found.end
            if len(messages) >= self.page_size:
                break
        more = end < size and bool(messages)
        return Batch(
            messages=messages,
            next_page_token={"offset": end} if more else None,
            new_cursor={"offset": end, "size": size},
            progress=(end, size),
        )

    def fetch_initial(self, window: BackfillWindow, page_token: PageToken | None) -> Batch:
        return self._page(int((page_token or {}).get("offset", 0)))

    def fetch_since(self, cursor: Cursor) -> Batch:
        offset = int(cursor.get("offset", 0))
        if not self.path.is_file() or self.path.stat().st_size < offset:
            raise CursorExpired(f"{self.path} shrank or was replaced since the last import")
        return self._page(offset)
