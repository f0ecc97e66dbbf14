"""What the integrations app tells the apps above it (automation), without importing them.

``communications_created`` is sent once per stored batch that created communications, after
the batch's transaction commits (never inside it: a receiver that queues work or calls out
cannot hold the sync's locks, and never sees rows that a rollback then takes back).
Receivers get:

- ``account``: the ProviderAccount;
- ``communication_ids``: the new communications' ids (a list, possibly hundreds);
- ``origin``: how they arrived, one of ORIGINS: "backfill" (an initial sync or a full
  resync), "delta", "historical" (a date-range sync), "import" (an uploaded file),
  "webhook" (a provider's push that carried the message itself).

Receivers must be quick and must not raise: queue the real work (django-q2). An exception
in a receiver is logged and does not fail the sync.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.db import transaction
from django.dispatch import Signal

if TYPE_CHECKING:
    from integrations.models import ProviderAccount

logger = logging.getLogger(__name__)

ORIGINS = ("backfill", "delta", "historical", "import", "webhook")

communications_created = Signal()


def announce_created(account: ProviderAccount, communication_ids: Sequence[int], origin: str) -> None:
    """Sends communications_created for these ids once the current transaction commits."""
    if origin not in ORIGINS:
        raise ValueError(f"origin must be one of {ORIGINS}, not {origin!r}")
    if not communication_ids:
        return
    ids = list(communication_ids)

    def send() -> None:
        for receiver, result in communications_created.send_robust(
                sender=type(account), account=account, communication_ids=ids, origin=origin):
            if isinstance(result, Exception):
                logger.error("A receiver of communications_created (%s) failed for account %s: %r",
                             getattr(receiver, "__qualname__", receiver), account.pk, result)

    transaction.on_commit(send)
