"""Content-addressed attachment storage through Django's storage API.

Content is stored once per sha256, whatever the number of messages carrying it, and
not at all above ``settings.ATTACHMENT_MAX_BYTES`` (metadata is kept either way).
"""
from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from conversations.messages import ParsedAttachment

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


def store_contents(attachments: Sequence[ParsedAttachment]) -> list[StoredContent]:
    """Stores each attachment's content unless already stored or over the cap, in order.

    One query finds which contents are stored already, so a batch re-using the same
    logo or signature image touches the storage once at most.
    """
    from conversations.models import Attachment  # models import this module's helpers' callers

    limit = settings.ATTACHMENT_MAX_BYTES
    prepared: list[tuple[ParsedAttachment, bytes | None, str]] = []
    for attachment in attachments:
        content = _content(attachment, limit)
        sha256 = attachment.sha256 or (hashlib.sha256(content).hexdigest() if content is not None else "")
        prepared.append((attachment, content, sha256))
    wanted = {sha for _a, content, sha in prepared if content is not None and len(content) <= limit}
    known = dict(
        Attachment.objects.filter(sha256__in=wanted).exclude(stored_name="").values_list("sha256", "stored_name")
    ) if wanted else {}
    results: list[StoredContent] = []
    for attachment, content, sha256 in prepared:
        if content is None:
            results.append(("", sha256, attachment.size))
            continue
        if len(content) > limit:
            results.append(("", sha256, len(content)))
            continue
        name = known.get(sha256)
        if name is None:
            name = storage_name(sha256)
            if not default_storage.exists(name):
                name = default_storage.save(name, ContentFile(content))
            known[sha256] = name
        results.append((name, sha256, len(content)))
    return results
