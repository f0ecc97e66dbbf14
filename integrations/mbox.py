"""Streaming mbox reading and import, resumable by byte offset.

The file is read line by line, so memory is bounded by the largest single message, not
by the file (a Google Takeout export can be many GB). The byte offset after each stored
batch is saved with that batch, so an interrupted import resumes where it stopped.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from conversations.ingest import BatchResult, store_batch
from conversations.parsing import parse_message
from integrations.models import ProviderAccount, SyncRun

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


def file_fingerprint(path: Path) -> dict[str, object]:
    stat = path.stat()
    return {"path": str(path), "size": stat.st_size}


def resume_offset(account: ProviderAccount, path: Path) -> int:
    """Where to resume: the saved offset for this same file, else the beginning."""
    cursor = account.sync_cursor or {}
    if cursor.get("path") != str(path):
        return 0
    offset = int(cursor.get("offset", 0))
    return offset if 0 <= offset <= path.stat().st_size else 0


def import_mbox(
    account: ProviderAccount,
    path: str | os.PathLike[str],
    *,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> SyncRun:
    """Imports (or resumes importing) an mbox file into ``account``; returns the SyncRun.

    ``progress`` is called with the number of bytes consumed after each stored batch.
    A failure is recorded on the run and re-raised; what was stored before it stays.
    """
    path = Path(path).resolve()
    batch_size = batch_size or settings.INGEST_BATCH_SIZE
    offset = resume_offset(account, path)
    run = SyncRun.objects.create(account=account, kind=SyncRun.Kind.IMPORT)
    totals = BatchResult()
    batch: list[bytes] = []
    batch_end = offset

    def flush() -> None:
        nonlocal offset, totals
        parsed = [parse_message(raw) for raw in batch]
        with transaction.atomic():
            totals += store_batch(account, parsed)
            account.sync_cursor = {"path": str(path), "offset": batch_end}
            account.save(update_fields=["sync_cursor", "updated_at"])
        run.fetched += len(batch)
        if progress is not None:
            progress(batch_end - offset)
        offset = batch_end
        batch.clear()

    try:
        for message in iter_mbox(path, offset):
            batch.append(message.raw)
            batch_end = message.end
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
    except BaseException as error:
        _finish_run(run, totals, SyncRun.Status.FAILED, f"{type(error).__name__}: {error}"[:2000])
        raise
    _finish_run(run, totals, SyncRun.Status.SUCCEEDED, "")
    account.last_synced_at = run.finished_at
    account.save(update_fields=["last_synced_at", "updated_at"])
    return run


def _finish_run(run: SyncRun, totals: BatchResult, status: str, error: str) -> None:
    run.created, run.updated, run.skipped = totals.created, totals.updated, totals.skipped
    run.status = status
    run.error = error
    run.finished_at = timezone.now()
    run.save()
