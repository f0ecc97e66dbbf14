"""store_batch: the one way communications enter the database.

One transaction per batch, idempotent on (account, provider_message_id), a fixed
number of set-based queries per batch whatever its size (no per-message round trips).
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from django.db.models import F, Subquery
from django.utils import timezone

from contacts.lookups import chunked
from contacts.resolve import AddressToResolve, Resolution, merged, resolve_addresses
from conversations.attachments import start_storing
from conversations.bulk import add_to_counters, bulk_insert, insert_ignoring_conflicts, relax_commit_durability
from conversations.messages import Direction, ParsedMessage
from conversations.models import Attachment, Communication, Conversation, MessageRef, Participant, ThreadKey
from conversations.parsing import clean_text
from conversations.threading import candidate_keys, conversation_subject, fit_key

SNIPPET_LENGTH = 200


class Account(Protocol):
    """What ingest needs of a connected account (integrations.ProviderAccount provides it)."""

    pk: int

    def own_addresses(self) -> set[str]: ...


@dataclass
class BatchResult:
    created: int = 0
    updated: int = 0
    skipped: int = 0
    created_ids: list[int] = field(default_factory=list)

    def __iadd__(self, other: BatchResult) -> BatchResult:
        self.created += other.created
        self.updated += other.updated
        self.skipped += other.skipped
        self.created_ids.extend(other.created_ids)
        return self


@lru_cache(maxsize=8)
def _ignored_patterns(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None


def is_ignored_address(value: str) -> bool:
    """No-reply, mailer-daemon and similar robots: recorded as participants, never contacts."""
    return _is_ignored(value, tuple(settings.CRM_IGNORED_SENDER_PATTERNS))


@lru_cache(maxsize=65536)
def _is_ignored(value: str, patterns: tuple[str, ...]) -> bool:
    # Addresses repeat heavily across a mailbox: the same few thousand, message after message.
    pattern = _ignored_patterns(patterns)
    return bool(pattern and pattern.search(value))


def _snippet(text: str) -> str:
    return clean_text(" ".join(text[: SNIPPET_LENGTH * 4].split())[:SNIPPET_LENGTH])


def store_batch(account: Account, messages: Sequence[ParsedMessage], *, merge_labels: bool = False) -> BatchResult:
    """Stores a batch of parsed messages for one account in one transaction.

    Messages already stored (same account and provider_message_id) are skipped, or
    counted as updated when their labels, read/starred state or delivery status changed,
    or when they come back after a soft delete. With ``merge_labels`` (folder-based
    providers, where each copy names one folder) labels are added to the stored ones
    instead of replacing them. Every message's ``ref`` is recorded. Callers that advance
    a sync cursor wrap this call and the cursor save in one outer atomic block.
    """
    result = BatchResult()
    unique: dict[str, ParsedMessage] = {}
    refs: list[tuple[str, str, str]] = []  # (provider id, ref, label)
    for message in messages:
        if len(message.provider_message_id) > 255:
            # Still unique, unlike a plain cut: two long ids sharing a prefix stay two messages.
            message = dataclasses.replace(message, provider_message_id=fit_key(message.provider_message_id))
        if message.ref:
            refs.append((message.provider_message_id, fit_key(message.ref), message.labels[0] if message.labels else ""))
        previous = unique.get(message.provider_message_id)
        if previous is not None:
            result.skipped += 1
            if merge_labels:
                message = dataclasses.replace(message, labels=_merged(previous.labels, message.labels))
        unique[message.provider_message_id] = message
    if not unique:
        return result

    with transaction.atomic():
        relax_commit_durability()
        existing = _existing(account, list(unique))
        existing_deleted = {provider_id: row.deleted_at is not None for provider_id, row in existing.items()}
        new_messages: list[ParsedMessage] = []
        changed: list[Communication] = []
        for provider_id, message in unique.items():
            row = existing.get(provider_id)
            if row is None:
                new_messages.append(message)
            elif _refresh_state(row, message, merge_labels):
                changed.append(row)
            else:
                result.skipped += 1
        revived = 0
        if changed:
            revived = sum(1 for provider_id in (row.provider_message_id for row in changed)
                          if existing_deleted.get(provider_id))
            Communication.objects.bulk_update(
                changed, ["labels", "delivery_status", "is_read", "is_starred", "deleted_at", "updated_at"]
            )
            result.updated = len(changed)
        if new_messages:
            result.created_ids = _create(account, new_messages)
            result.created = len(result.created_ids)
        _count(account, result.created + revived)
        if refs:
            _record_refs(account, refs)
    return result


def _count(account: Account, delta: int) -> None:
    """Moves the account's count of live communications, in the caller's transaction.

    An F() update, never a read-modify-write, so concurrent batches of one account (a webhook
    and a sync) add up; the model never writes the field in a plain save.
    """
    if delta:
        type(account)._default_manager.filter(pk=account.pk).update(
            communication_count=F("communication_count") + delta)


def _merged(stored: Sequence[str], new: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*stored, *new]))


def _refresh_state(row: Communication, message: ParsedMessage, merge_labels: bool) -> bool:
    """Applies the mutable state of a re-seen message to its row; True if anything changed."""
    labels = list(_merged(row.labels, message.labels)) if merge_labels else list(message.labels)
    new_state = {
        "labels": labels,
        "delivery_status": message.delivery_status[:30] or row.delivery_status,
        "is_read": row.is_read if message.is_read is None else message.is_read,
        "is_starred": row.is_starred if message.is_starred is None else message.is_starred,
        "deleted_at": None,
    }
    if all(getattr(row, name) == value for name, value in new_state.items()):
        return False
    for name, value in new_state.items():
        setattr(row, name, value)
    row.updated_at = timezone.now()
    return True


def _record_refs(account: Account, refs: list[tuple[str, str, str]]) -> None:
    provider_ids = list({provider_id for provider_id, _, _ in refs})
    ids: dict[str, int] = {}
    for chunk in chunked(provider_ids):
        ids.update(
            Communication.objects.filter(account_id=account.pk, provider_message_id__any=chunk).values_list(
                "provider_message_id", "id"
            )
        )
    insert_ignoring_conflicts(
        MessageRef,
        ("account_id", "communication_id", "ref", "label"),
        [(account.pk, ids[provider_id], ref, label) for provider_id, ref, label in refs
         if provider_id in ids],
    )


def apply_updates(
    account: Account, updates: Sequence[tuple[str, bool | None, bool | None] | tuple[str, bool | None, bool | None,
                                                                                  Sequence[str] | None]],
) -> int:
    """Applies (ref, is_read, is_starred[, labels]) changes; None leaves a field as it is.

    ``labels``, when given, replaces the message's labels (a provider that reports a message's
    whole label set, like Gmail). Returns rows changed.
    """
    by_state: dict[tuple[bool | None, bool | None, tuple[str, ...] | None], list[str]] = {}
    for ref, is_read, is_starred, *rest in updates:
        labels = tuple(sorted(set(rest[0]))) if rest and rest[0] is not None else None
        by_state.setdefault((is_read, is_starred, labels), []).append(fit_key(ref))
    changed = 0
    now = timezone.now()
    for (is_read, is_starred, labels), refs in by_state.items():
        values: dict[str, object] = {"updated_at": now}
        if is_read is not None:
            values["is_read"] = is_read
        if is_starred is not None:
            values["is_starred"] = is_starred
        if labels is not None:
            values["labels"] = list(labels)
        if len(values) == 1:
            continue
        for chunk in chunked(refs):
            target = MessageRef.objects.filter(account_id=account.pk, ref__in=chunk).values("communication_id")
            changed += Communication.objects.filter(pk__in=Subquery(target)).update(**values)
    return changed


def remove_refs(account: Account, refs: Sequence[str]) -> int:
    """Forgets provider copies that vanished; a communication with no copy left is soft-deleted.

    The labels the vanished copies contributed are removed. Returns communications deleted.
    """
    removed_labels: dict[int, set[str]] = {}
    for chunk in chunked([fit_key(ref) for ref in refs]):
        rows = MessageRef.objects.filter(account_id=account.pk, ref__in=chunk)
        for communication_id, label in rows.values_list("communication_id", "label"):
            removed_labels.setdefault(communication_id, set()).add(label)
        rows.delete()
    affected = set(removed_labels)
    if not affected:
        return 0
    remaining: dict[int, set[str]] = {}
    ids = sorted(affected)
    for chunk in chunked(ids):
        for communication_id, label in MessageRef.objects.filter(communication_id__in=chunk).values_list(
            "communication_id", "label"
        ):
            remaining.setdefault(communication_id, set()).add(label)
    now = timezone.now()
    rows_to_save = []
    for row in (r for chunk in chunked(ids) for r in Communication.objects.filter(pk__in=chunk).only(
        "id", "labels", "deleted_at"
    )):
        labels = remaining.get(row.pk)
        if labels is None:
            row.deleted_at = row.deleted_at or now
        else:
            gone = removed_labels[row.pk] - labels
            row.labels = [label for label in row.labels if label not in gone]
        row.updated_at = now
        rows_to_save.append(row)
    newly_deleted = sum(1 for row in rows_to_save if row.pk not in remaining and row.deleted_at == now)
    with transaction.atomic():
        Communication.objects.bulk_update(rows_to_save, ["labels", "deleted_at", "updated_at"])
        _count(account, -newly_deleted)
    return sum(1 for row in rows_to_save if row.pk not in remaining)


# Ranges are expanded while they add up to fewer numbers than this; past it they are matched
# against the refs stored under their prefix, so a hostile "1:20000000" (or many narrow
# ranges adding up to that) costs what is stored, not 20 million lookups.
_EXPAND_RANGE_LIMIT = 10_000


def remove_ref_ranges(account: Account, ranges: Sequence[tuple[str, int, int]]) -> int:
    """remove_refs for ranges of numbered refs: (prefix, first, last) names f"{prefix}{n}", first <= n <= last.

    Only refs that are stored can be removed, so the ranges are clamped to them: few numbers
    in all are expanded, more are matched against the account's refs under each prefix.
    """
    spans = [(prefix, max(0, min(first, last)), max(first, last)) for prefix, first, last in ranges]
    if sum(last - first + 1 for _prefix, first, last in spans) <= _EXPAND_RANGE_LIMIT:
        refs = [f"{prefix}{n}" for prefix, first, last in spans for n in range(first, last + 1)]
        return remove_refs(account, refs) if refs else 0
    by_prefix: dict[str, list[tuple[int, int]]] = {}
    for prefix, first, last in spans:
        by_prefix.setdefault(prefix, []).append((first, last))
    refs = []
    for prefix, numbers in by_prefix.items():
        stored = MessageRef.objects.filter(account_id=account.pk, ref__startswith=prefix).values_list("ref", flat=True)
        for ref in stored.iterator(chunk_size=5000):
            number = ref[len(prefix):]
            if number.isdigit() and any(first <= int(number) <= last for first, last in numbers):
                refs.append(ref)
    return remove_refs(account, refs) if refs else 0


def mark_deleted(account: Account, provider_ids: Sequence[str]) -> int:
    """Soft-deletes messages removed at the provider, by provider message id."""
    changed = 0
    with transaction.atomic():
        for chunk in chunked(list(provider_ids)):
            changed += Communication.objects.filter(
                account_id=account.pk, provider_message_id__any=chunk, deleted_at__isnull=True
            ).update(deleted_at=timezone.now(), updated_at=timezone.now())
        _count(account, -changed)
    return changed


def forget_refs(account: Account) -> None:
    """Drops every provider copy recorded for the account (a full resync records them anew)."""
    MessageRef.objects.filter(account_id=account.pk).delete()


def _existing(account: Account, provider_ids: list[str]) -> dict[str, Communication]:
    rows: dict[str, Communication] = {}
    for chunk in chunked(provider_ids):
        for row in Communication.objects.filter(account_id=account.pk, provider_message_id__any=chunk).only(
            "id", "provider_message_id", "labels", "delivery_status", "is_read", "is_starred", "deleted_at"
        ):
            rows[row.provider_message_id] = row
    return rows


def _resolve(messages: list[ParsedMessage], own: set[str]) -> dict[str, Resolution]:
    """Resolves every participant; only the first CRM_MAX_CONTACTS_PER_MESSAGE of a message may create.

    One message to 20,000 recipients (a list blast, a hostile header) would otherwise make
    20,000 contacts and companies; past the cap, addresses only match existing contacts.
    """
    limit = settings.CRM_MAX_CONTACTS_PER_MESSAGE
    # One entry per distinct address (a batch repeats the same few hundred many times): it may
    # create if any of its occurrences may, and keeps the first display name seen.
    wanted: dict[str, AddressToResolve] = {}
    for message in messages:
        for position, (_role, address) in enumerate(message.participants()):
            known = wanted.get(address.value)
            if known is None:
                if address.value in own or is_ignored_address(address.value):
                    continue
            elif known.may_create and known.display_name:
                continue  # nothing a repeat could add: the common case, kept cheap
            wanted[address.value] = merged(known, AddressToResolve(
                address.kind.value, address.value, address.display_name, may_create=position < limit
            ))
    return resolve_addresses(wanted.values())


def _assign_conversations(
    account: Account, messages: list[ParsedMessage]
) -> tuple[list[Conversation], dict[str, Conversation]]:
    """Returns the conversation of each message (new ones unsaved) and the keys not yet stored."""
    tiers_per_message = [candidate_keys(account.pk, m) for m in messages]
    all_keys = sorted({k for tiers in tiers_per_message for tier in tiers for k in tier})
    known: dict[str, Conversation] = {}
    for chunk in chunked(all_keys):
        for key, conversation_id in ThreadKey.objects.filter(key__any=chunk).values_list("key", "conversation_id"):
            known[key] = Conversation(pk=conversation_id)
    in_database = set(known)
    assigned: list[Conversation] = []
    for message, tiers in zip(messages, tiers_per_message, strict=True):
        conversation = next((known[k] for tier in tiers for k in tier if k in known), None)
        if conversation is None:
            conversation = Conversation(
                subject=clean_text(conversation_subject(message.subject)),
                channel=message.channel.value,
            )
        for tier in tiers:
            for key in tier:
                known.setdefault(key, conversation)
        assigned.append(conversation)
    return assigned, {k: c for k, c in known.items() if k not in in_database}


_COMMUNICATION_FIELDS = (
    "account_id", "conversation_id", "provider_message_id", "rfc_message_id", "provider_thread_id", "channel",
    "direction", "subject", "body_text", "body_html", "snippet", "sent_at", "received_at", "in_reply_to",
    "references", "labels", "delivery_status", "raw_size", "is_read", "is_starred", "parse_warnings",
    "created_at", "updated_at",
)
_CONVERSATION_FIELDS = ("subject", "channel", "first_message_at", "last_message_at", "message_count", "created_at")
_PARTICIPANT_FIELDS = (
    "communication_id", "role", "kind", "address", "display_name", "contact_id", "company_id", "is_owner",
)
_ATTACHMENT_FIELDS = (
    "communication_id", "filename", "content_type", "size", "sha256", "content_id", "inline", "stored_name",
)


def _create(account: Account, messages: list[ParsedMessage]) -> list[int]:
    owners = [(message_index, parsed) for message_index, message in enumerate(messages)
              for parsed in message.attachments]
    storing = start_storing([parsed for _index, parsed in owners])
    own = account.own_addresses()
    resolutions = _resolve(messages, own)
    conversations, new_keys = _assign_conversations(account, messages)
    _save_conversations(conversations, messages)
    insert_ignoring_conflicts(
        ThreadKey, ("key", "conversation_id"), [(key, conversation.pk) for key, conversation in new_keys.items()]
    )

    now = timezone.now()
    rows = []
    for message, conversation in zip(messages, conversations, strict=True):
        direction = message.direction
        if message.sender is not None and message.sender.value in own:
            direction = Direction.OUTBOUND
        rows.append((
            account.pk, conversation.pk, message.provider_message_id, message.rfc_message_id,
            message.provider_thread_id, message.channel.value, direction.value,
            clean_text(message.subject) if message.subject is not None else None,
            clean_text(message.body_text), clean_text(message.body_html), _snippet(message.body_text),
            message.sent_at, message.received_at, message.in_reply_to, list(message.references),
            list(message.labels), message.delivery_status, message.raw_size, message.is_read, message.is_starred,
            list(message.warnings), now, now,
        ))
    ids = bulk_insert(Communication, _COMMUNICATION_FIELDS, rows)

    participants = []
    for message, communication_id in zip(messages, ids, strict=True):
        for role, address in message.participants():
            resolution = resolutions.get(address.value)
            participants.append((
                communication_id, role, address.kind.value, address.value, clean_text(address.display_name),
                resolution.contact_id if resolution else None, resolution.company_id if resolution else None,
                address.value in own,
            ))
    bulk_insert(Participant, _PARTICIPANT_FIELDS, participants, returning=False)

    bulk_insert(Attachment, _ATTACHMENT_FIELDS, [
        (ids[message_index], clean_text(parsed.filename), parsed.content_type, size, sha256,
         parsed.content_id, parsed.inline, stored_name)
        for (message_index, parsed), (stored_name, sha256, size) in zip(owners, storing.result(), strict=True)
    ], returning=False)
    return ids


def _save_conversations(conversations: list[Conversation], messages: list[ParsedMessage]) -> None:
    """Creates the new conversations with their counters, and adds to the existing ones'."""
    now = timezone.now()
    counters: dict[int, list[Any]] = {}  # id(conversation) -> [conversation, count, first, last]
    for conversation, message in zip(conversations, messages, strict=True):
        entry = counters.setdefault(id(conversation), [conversation, 0, None, None])
        entry[1] += 1
        if message.sent_at is not None:
            entry[2] = message.sent_at if entry[2] is None else min(entry[2], message.sent_at)
            entry[3] = message.sent_at if entry[3] is None else max(entry[3], message.sent_at)
    new = []
    existing = []
    for conversation, count, first, last in counters.values():
        if conversation.pk is None:
            conversation.message_count, conversation.first_message_at, conversation.last_message_at = count, first, last
            new.append(conversation)
        else:
            existing.append((conversation.pk, count, first, last))
    ids = bulk_insert(Conversation, _CONVERSATION_FIELDS, [
        (c.subject, c.channel, c.first_message_at, c.last_message_at, c.message_count, now) for c in new
    ])
    for conversation, new_id in zip(new, ids, strict=True):
        conversation.pk = new_id
    add_to_counters(Conversation._meta.db_table, existing)
