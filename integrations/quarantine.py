"""Messages that cannot be stored are set aside, so that one message never stalls a mailbox.

The engine stores a batch; if that fails, it stores the halves, and so on down to the
messages that fail alone (a few extra attempts per poison message, none for a healthy
batch). Those are recorded here and the sync goes on. ``retry`` stores them again, after
whatever made them fail has been fixed.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Sequence

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, transaction
from django.utils import timezone

from conversations.ingest import BatchResult, store_batch
from conversations.messages import ParsedMessage, message_from_json, message_to_json
from conversations.threading import fit_key
from integrations.models import ProviderAccount, QuarantinedMessage
from integrations.providers.base import Capability
from integrations.providers.registry import provider_class

logger = logging.getLogger(__name__)

# Connection, disk and memory failures say nothing about a message: the whole sync fails and
# is retried later, from the saved position.
_NOT_THE_MESSAGE = (OperationalError, InterfaceError, OSError, MemoryError)
# A batch this large in which every message fails alone is a fault of ours or of the
# database, not of the messages: the batch fails as a whole instead of being set aside.
SYSTEMIC_FAILURE_MIN_BATCH = 10


class SystemicStoreFailure(Exception):
    """Every message of a batch failed on its own: not poison messages, a broken store."""


@dataclasses.dataclass
class StoreOutcome:
    result: BatchResult
    quarantined: int = 0


def store_or_quarantine(
    account: ProviderAccount, messages: Sequence[ParsedMessage], *, merge_labels: bool
) -> StoreOutcome:
    """Stores ``messages``; those that cannot be stored are quarantined instead of failing the batch.

    Must be called inside the caller's transaction (each attempt is a savepoint in it).
    Raises SystemicStoreFailure when every message of a large batch fails, and lets
    connection errors through: neither is the messages' fault.
    """
    outcome = StoreOutcome(BatchResult())
    _store_halves(account, list(messages), merge_labels, outcome)
    if outcome.quarantined and outcome.quarantined == len(messages) >= SYSTEMIC_FAILURE_MIN_BATCH:
        raise SystemicStoreFailure(f"all {len(messages)} messages of a batch failed to store")
    return outcome


def _store_halves(account: ProviderAccount, messages: list[ParsedMessage], merge_labels: bool,
                  outcome: StoreOutcome) -> None:
    if not messages:
        return
    try:
        with transaction.atomic():
            outcome.result += store_batch(account, messages, merge_labels=merge_labels)
        return
    except _NOT_THE_MESSAGE:
        raise
    except Exception as error:
        if len(messages) == 1:
            quarantine(account, messages[0], error)
            outcome.quarantined += 1
            return
    middle = len(messages) // 2
    _store_halves(account, messages[:middle], merge_labels, outcome)
    _store_halves(account, messages[middle:], merge_labels, outcome)


def _reason(error: BaseException) -> str:
    # The first line only: PostgreSQL's DETAIL and CONTEXT lines quote the failing row, which
    # is the message's content, and the reason shows to staff who may not read content.
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:500]


def quarantine(account: ProviderAccount, message: ParsedMessage, error: BaseException) -> QuarantinedMessage:
    """Records a message that failed to store (again: a second failure counts an attempt)."""
    logger.warning("Quarantined message %r of account %s: %s", message.provider_message_id[:80], account.pk,
                   type(error).__name__)
    copy, truncated = message_to_json(message, max_bytes=settings.QUARANTINE_COPY_MAX_BYTES)
    provider_id = fit_key(message.provider_message_id)
    item, created = QuarantinedMessage.objects.get_or_create(
        account=account, provider_message_id=provider_id,
        defaults={"ref": fit_key(message.ref), "reason": _reason(error), "copy": copy, "truncated": truncated,
                  # The record must store whatever broke the message itself.
                  "raw_size": message.raw_size if (message.raw_size or 0) >= 0 else None},
    )
    if not created:
        item.reason, item.copy, item.truncated = _reason(error), copy, truncated
        item.attempts += 1
        item.last_attempt_at = timezone.now()
        item.save(update_fields=["reason", "copy", "truncated", "attempts", "last_attempt_at"])
    return item


def merges_labels(account: ProviderAccount) -> bool:
    return Capability.FOLDER_LABELS in provider_class(account.provider).capabilities


def retry(items: Iterable[QuarantinedMessage], *, store: Callable[..., BatchResult] = store_batch) -> tuple[int, int]:
    """Stores quarantined messages again; stored ones leave the quarantine. Returns (stored, still failing)."""
    stored = failing = 0
    for item in items:
        message = message_from_json(item.copy)
        if item.truncated:
            message = dataclasses.replace(message, warnings=(
                *message.warnings, "restored from quarantine: content beyond the copy's size cap was not kept",
            ))
        try:
            with transaction.atomic():
                store(item.account, [message], merge_labels=merges_labels(item.account))
                item.delete()
            stored += 1
        except (DatabaseError, ValueError, TypeError) as error:
            item.reason, item.attempts, item.last_attempt_at = _reason(error), item.attempts + 1, timezone.now()
            item.save(update_fields=["reason", "attempts", "last_attempt_at"])
            failing += 1
    return stored, failing
