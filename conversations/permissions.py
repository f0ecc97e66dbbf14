"""Who may read message content (bodies, subjects, attachments) of whose accounts.

An account's owner reads their own communications. Superusers, and staff granted
``conversations.view_all_content``, read everyone's; other staff see metadata only
(participants, dates, sizes, channel, direction). Every read path of content asks here.
"""
from __future__ import annotations

from typing import Any

VIEW_ALL_CONTENT = "conversations.view_all_content"
HIDDEN = "(content hidden)"


def can_view_all_content(user: Any) -> bool:
    return bool(user.is_active and (user.is_superuser or user.has_perm(VIEW_ALL_CONTENT)))


def can_view_content(user: Any, owner_id: int | None) -> bool:
    """True if ``user`` may read the content of communications of an account owned by ``owner_id``."""
    return can_view_all_content(user) or (owner_id is not None and owner_id == user.pk)
