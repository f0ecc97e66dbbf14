"""Content-addressed attachment storage through Django's storage API.

Content is stored once per sha256, whatever the number of messages carrying it, and
not at all above ``settings.ATTACHMENT_MAX_BYTES`` (metadata is kept either way).
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, default_storage
from django.http import FileResponse

from conversations.messages import ParsedAttachment
from conversations.models import Attachment

logger = logging.getLogger(__name__)

StoredContent = tuple[str, str, int | None]  # (storage name or "", sha256, size)


def storage_name(sha256: str) -> str:
    # One level of 256 directories: deep enough to keep directories small, shallow enough
    # that a new file rarely needs a new directory (mkdir is the slow part of a save).
    return f"attachments/{sha256[:2]}/{sha256}"


def _content(attachment: ParsedAttachment, limit: int) -> bytes | None:
    if attachment.content is not None:
        return attachment.content
    if attachment.fetch is None or (attachment.size is not None and attachment.size > limit):
        return None
    try:
        return attachment.fetch()
    except Exception:
        # Losing an attachment body must not lose the message: keep the metadata.
        logger.warning("Could not fetch attachment %r", attachment.filename, exc_info=True)
        return None


_writers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="attachment-writer")


def _holds(name: str, sha256: str, size: int) -> bool:
    """True if the stored file is this content: a file left half-written must not be reused."""
    try:
        if default_storage.size(name) != size:
            return False
        digest = hashlib.sha256()
        with default_storage.open(name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest() == sha256
    except OSError:
        return False


def _write(sha256: str, content: bytes) -> str:
    name = storage_name(sha256)
    if default_storage.exists(name):
        if _holds(name, sha256, len(content)):
            return name
        logger.warning("Stored attachment %s does not match its checksum (a write cut short?): rewriting", name)
        default_storage.delete(name)
    if isinstance(default_storage, FileSystemStorage):
        return _write_atomically(name, content)
    # Object stores (S3 and the like) publish an upload whole or not at all.
    return default_storage.save(name, ContentFile(content))


def _write_atomically(name: str, content: bytes) -> str:
    """Writes to a temporary name beside the target, then renames: a killed worker leaves no
    half file under the content's name (rename within a directory is atomic on POSIX)."""
    path = Path(default_storage.path(name))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".tmp-", delete=False) as handle:
        try:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        except BaseException:
            os.unlink(handle.name)
            raise
    mode = default_storage.file_permissions_mode  # FILE_UPLOAD_PERMISSIONS, as save() would apply
    if mode is not None:
        os.chmod(handle.name, mode)
    os.replace(handle.name, path)
    return name


class StoringContents:
    """Attachment contents being written in the background; ``result()`` waits for them.

    File creation waits on the disk (and, on a shared disk, on the database's own
    writes), so ingest starts the writes first and does its database work meanwhile.
    """

    def __init__(self, pending: list[tuple[str | Future[str], str, int | None]]) -> None:
        self._pending = pending

    def result(self) -> list[StoredContent]:
        return [(name.result() if isinstance(name, Future) else name, sha256, size)
                for name, sha256, size in self._pending]


def start_storing(attachments: Sequence[ParsedAttachment]) -> StoringContents:
    """Starts storing each attachment's content unless already stored or over the cap.

    One query finds which contents are stored already, so a batch re-using the same logo
    or signature image touches the storage once at most; the writes run in background
    threads. Results come back in the order of ``attachments``.
    """
    limit = settings.ATTACHMENT_MAX_BYTES
    prepared: list[tuple[ParsedAttachment, bytes | None, str]] = []
    for attachment in attachments:
        content = _content(attachment, limit)
        sha256 = attachment.sha256 or (hashlib.sha256(content).hexdigest() if content is not None else "")
        prepared.append((attachment, content, sha256))
    wanted = {sha for _a, content, sha in prepared if content is not None and len(content) <= limit}
    known: dict[str, str | Future[str]] = dict(
        Attachment.objects.filter(sha256__in=wanted).exclude(stored_name="").values_list("sha256", "stored_name")
    ) if wanted else {}
    pending: list[tuple[str | Future[str], str, int | None]] = []
    for attachment, content, sha256 in prepared:
        if content is None or len(content) > limit:
            pending.append(("", sha256, attachment.size if content is None else len(content)))
            continue
        if sha256 not in known:
            known[sha256] = _writers.submit(_write, sha256, content)
        pending.append((known[sha256], sha256, len(content)))
    return StoringContents(pending)


# Parameters are dropped from a content type taken from the message (a charset says nothing
# here); anything that is not a plain type/subtype is served as bytes.
_CONTENT_TYPE = re.compile(r"[\w.+-]+/[\w.+-]+")


def download(attachment: Attachment) -> FileResponse:
    """The attachment's stored content as a download (FileNotFoundError: it was not stored).

    The caller has checked that the user sees the attachment. Always a download, never shown
    on this origin: a saved HTML or SVG file may hold a script.
    """
    content = attachment.open()
    content_type = attachment.content_type.split(";")[0].strip().lower()
    response = FileResponse(
        content, as_attachment=True, filename=attachment.filename or f"attachment-{attachment.pk}",
        content_type=content_type if _CONTENT_TYPE.fullmatch(content_type) else "application/octet-stream",
    )
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["X-Content-Type-Options"] = "nosniff"
    return response
