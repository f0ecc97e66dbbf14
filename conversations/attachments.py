"""Content-addressed attachment storage through Django's storage API.

Content is stored once per sha256, whatever the number of messages carrying it, and
not at all above ``settings.ATTACHMENT_MAX_BYTES`` (metadata is kept either way).
"""
from __future__ import annotations

import hashlib
import logging

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from conversations.messages import ParsedAttachment

logger = logging.getLogger(__name__)


def storage_name(sha256: str) -> str:
    return f"attachments/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def store_content(attachment: ParsedAttachment) -> tuple[str, str, int | None]:
    """Stores the content if allowed; returns (stored name or "", sha256, size)."""
    limit = settings.ATTACHMENT_MAX_BYTES
    content = attachment.content
    if content is None and attachment.fetch is not None and (attachment.size is None or attachment.size <= limit):
        try:
            content = attachment.fetch()
        except Exception:
            # Losing an attachment body must not lose the message: keep the metadata.
            logger.warning("Could not fetch attachment %r", attachment.filename, exc_info=True)
            content = None
    if content is None:
        return "", attachment.sha256, attachment.size
    sha256 = attachment.sha256 or hashlib.sha256(content).hexdigest()
    if len(content) > limit:
        return "", sha256, len(content)
    name = storage_name(sha256)
    if not default_storage.exists(name):
        name = default_storage.save(name, ContentFile(content))
    return name, sha256, len(content)
