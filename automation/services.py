"""The work behind every surface (queued tasks, API, web page, admin, commands): suggesting,
approving, dismissing, and closing tasks.

Decisions are conditional updates (status pending -> decided where it is still pending), so two
clicks, an auto-approval racing a person, or two workers never make two tasks of one suggestion.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from automation.engines import Judgement, get_engine
from automation.inputs import from_communication
from automation.models import AccountAutomation, AutomationPreferences, Suggestion, Task
from conversations.messages import Direction
from conversations.models import Communication, Participant
from integrations.models import ProviderAccount
from integrations.providers.base import Capability
from integrations.providers.registry import provider_class

logger = logging.getLogger(__name__)


class AlreadyDecided(Exception):
    """The suggestion was approved or dismissed already (by someone, or automatically)."""


@dataclass(frozen=True)
class Preferences:
    threshold: float
    time_zone: str


def preferences(user: Any) -> Preferences:
    row = AutomationPreferences.objects.filter(user=user).first()
    threshold = settings.SUGGESTIONS_AUTO_APPROVE_THRESHOLD
    time_zone = settings.TIME_ZONE
    if row is not None:
        threshold = threshold if row.auto_approve_threshold is None else row.auto_approve_threshold
        time_zone = row.time_zone or time_zone
    return Preferences(threshold, time_zone)


def account_automation(account: ProviderAccount) -> AccountAutomation:
    """The account's switches (an unsaved row with the defaults when it has none)."""
    row = AccountAutomation.objects.filter(account=account).first()
    return row or AccountAutomation(account=account, suggestions_enabled=settings.SUGGESTIONS_ENABLED_BY_DEFAULT)


@dataclass(frozen=True)
class AccountSettings:
    """One account's automation switches as the settings page shows them."""

    account: ProviderAccount
    suggestions_enabled: bool
    write_back: bool
    can_write_back: bool  # the provider has Capability.MARK_READ
    write_back_blocker: str  # with write-back on: what the user must do first (e.g. reconnect); else ""


def account_settings(user: Any) -> list[AccountSettings]:
    """The user's accounts (not disabled ones) with their switches: two queries and no network."""
    accounts = list(ProviderAccount.objects.filter(owner=user).exclude(status=ProviderAccount.Status.DISABLED)
                    .order_by("display_name", "pk"))
    rows = {row.account_id: row for row in AccountAutomation.objects.filter(account__in=accounts)}
    result = []
    for account in accounts:
        row = rows.get(account.pk) or AccountAutomation(
            account=account, suggestions_enabled=settings.SUGGESTIONS_ENABLED_BY_DEFAULT)
        provider = provider_class(account.provider)
        can = Capability.MARK_READ in provider.capabilities
        blocker = (provider.missing_grant(account, Capability.MARK_READ) or "") if can and row.write_back else ""
        result.append(AccountSettings(account, row.suggestions_enabled, row.write_back and can, can, blocker))
    return result


def save_account_settings(account: ProviderAccount, *, suggestions_enabled: bool, write_back: bool) -> AccountAutomation:
    """Stores an account's switches. Write-back is kept off for a provider that cannot do it."""
    write_back = write_back and Capability.MARK_READ in provider_class(account.provider).capabilities
    row, _created = AccountAutomation.objects.update_or_create(
        account=account, defaults={"suggestions_enabled": suggestions_enabled, "write_back": write_back})
    return row


def save_preferences(user: Any, *, auto_approve_threshold: float | None, time_zone: str) -> AutomationPreferences:
    """Stores a user's preferences (None / "": the server's default)."""
    row, _created = AutomationPreferences.objects.update_or_create(
        user=user, defaults={"auto_approve_threshold": auto_approve_threshold, "time_zone": time_zone})
    return row


# ------------------------------------------------------------------------------------ suggesting

@dataclass
class SuggestOutcome:
    suggested: int = 0
    auto_approved: int = 0
    updated: int = 0
    skipped: int = 0
    withdrawn: int = 0


def suggest_for(account_id: int, communication_ids: Sequence[int], *, engine: str | None = None,
                respect_age: bool = True) -> SuggestOutcome:
    """Runs the engine on these communications of one account and stores what it suggests.

    Skipped: accounts with suggestions off, outbound or deleted messages, and (``respect_age``)
    messages sent more than SUGGESTIONS_MAX_AGE_DAYS ago. A decided suggestion is never touched;
    a pending one is updated (or withdrawn when the engine no longer suggests anything).
    """
    outcome = SuggestOutcome()
    account = ProviderAccount.objects.select_related("owner").filter(pk=account_id).first()
    if account is None or not account_automation(account).suggestions_enabled:
        outcome.skipped = len(communication_ids)
        return outcome
    communications = Communication.objects.filter(
        account=account, pk__in=list(communication_ids), direction=Direction.INBOUND, deleted_at__isnull=True,
    ).prefetch_related(Prefetch("participants", queryset=Participant.objects.order_by("pk")), "attachments")
    if respect_age:
        cutoff = timezone.now() - dt.timedelta(days=settings.SUGGESTIONS_MAX_AGE_DAYS)
        communications = communications.filter(sent_at__gte=cutoff)
    communications = list(communications)
    outcome.skipped = len(communication_ids) - len(communications)
    prefs = preferences(account.owner)
    own = account.own_addresses()
    chosen = get_engine(engine)
    existing = {s.communication_id: s for s in Suggestion.objects.filter(communication__in=communications)}
    for communication in communications:
        current = existing.get(communication.pk)
        if current is not None and current.is_decided:
            outcome.skipped += 1
            continue
        judgement = chosen.judge(from_communication(communication, owner_addresses=own, time_zone=prefs.time_zone))
        _store(account, communication, current, judgement, prefs, outcome)
    return outcome


def _store(account: ProviderAccount, communication: Communication, current: Suggestion | None,
           judgement: Judgement, prefs: Preferences, outcome: SuggestOutcome) -> None:
    if not judgement.action:
        if current is not None and Suggestion.objects.filter(pk=current.pk, status=Suggestion.Status.PENDING).delete()[0]:
            outcome.withdrawn += 1
        return
    sender = next((p for p in communication.participants.all() if p.role == "from"), None)
    fields = {
        "title": judgement.title[:200] or (communication.subject or "Follow up")[:200],
        "description": judgement.description, "priority": judgement.priority, "due": judgement.due,
        "tags": list(judgement.tags), "confidence": judgement.confidence, "reasoning": judgement.reasoning,
        "engine": judgement.engine, "engine_version": judgement.engine_version,
        "subject": (communication.subject or "")[:300],
        "sender": (f"{sender.display_name} <{sender.address}>" if sender and sender.display_name
                   else sender.address if sender else "")[:320],
        "snippet": (communication.snippet or communication.body_text[:300])[:300], "sent_at": communication.sent_at,
    }
    if current is not None:
        # Only while still pending: a person may have decided it since it was read.
        if Suggestion.objects.filter(pk=current.pk, status=Suggestion.Status.PENDING).update(
                **fields, updated_at=timezone.now()):
            outcome.updated += 1
            current.refresh_from_db()
            _maybe_auto_approve(current, prefs, outcome)
        return
    try:
        with transaction.atomic():
            suggestion = Suggestion.objects.create(owner=account.owner, account=account,
                                                   communication=communication, **fields)
    except IntegrityError:  # another worker suggested from this communication meanwhile
        outcome.skipped += 1
        return
    outcome.suggested += 1
    _maybe_auto_approve(suggestion, prefs, outcome)


def _maybe_auto_approve(suggestion: Suggestion, prefs: Preferences, outcome: SuggestOutcome) -> None:
    if suggestion.confidence >= prefs.threshold:
        try:
            approve(suggestion, automatic=True)
            outcome.auto_approved += 1
        except AlreadyDecided:
            pass


# ------------------------------------------------------------------------------------ deciding

def approve(suggestion: Suggestion, *, title: str | None = None, due: dt.date | None = None,
            priority: str | None = None, automatic: bool = False, edits: Iterable[str] = ()) -> Task:
    """Makes the Task of a pending suggestion (with the person's edits); AlreadyDecided otherwise."""
    status = Suggestion.Status.AUTO_APPROVED if automatic else Suggestion.Status.APPROVED
    changes: dict[str, Any] = {"status": status, "decided_at": timezone.now(), "updated_at": timezone.now()}
    if title:
        changes["title"] = title[:200]
    if priority:
        changes["priority"] = priority
    if due is not None or "due" in edits:
        changes["due"] = due
    with transaction.atomic():
        if not Suggestion.objects.filter(pk=suggestion.pk, status=Suggestion.Status.PENDING).update(**changes):
            raise AlreadyDecided(f"Suggestion {suggestion.pk} was already decided.")
        suggestion.refresh_from_db()
        communication = suggestion.communication
        sender = communication.participants.filter(role="from").first()
        return Task.objects.create(
            owner=suggestion.owner, title=suggestion.title, description=suggestion.description, due=suggestion.due,
            priority=suggestion.priority, contact_id=sender.contact_id if sender else None,
            conversation_id=communication.conversation_id, communication=communication, suggestion=suggestion,
        )


def dismiss(suggestion: Suggestion, reason: str = "") -> None:
    if not Suggestion.objects.filter(pk=suggestion.pk, status=Suggestion.Status.PENDING).update(
            status=Suggestion.Status.DISMISSED, dismiss_reason=reason[:500], decided_at=timezone.now(),
            updated_at=timezone.now()):
        raise AlreadyDecided(f"Suggestion {suggestion.pk} was already decided.")
    suggestion.refresh_from_db()


def bulk_approve(suggestions: QuerySet[Suggestion], *, ids: Sequence[int] | None = None,
                 min_confidence: float | None = None) -> list[Task]:
    """Approves the pending suggestions among ``suggestions`` (already owner-scoped) with these ids
    and/or at least this confidence; those decided meanwhile are left alone."""
    pending = suggestions.filter(status=Suggestion.Status.PENDING)
    if ids is not None:
        pending = pending.filter(pk__in=list(ids))
    if min_confidence is not None:
        pending = pending.filter(confidence__gte=min_confidence)
    tasks = []
    for suggestion in pending.order_by("pk"):
        try:
            tasks.append(approve(suggestion))
        except AlreadyDecided:
            continue
    return tasks


# ------------------------------------------------------------------------------------ tasks

def complete(task: Task) -> Task:
    """Marks the task done; when its account opted in, queues the write-back to the provider
    (whose failure is recorded on the task and never undoes the closing)."""
    if task.status == Task.Status.DONE:
        return task
    task.status, task.done_at = Task.Status.DONE, timezone.now()
    task.save(update_fields=["status", "done_at", "updated_at"])
    communication = task.communication
    if communication is not None and account_automation(communication.account).write_back:
        from automation.tasks import queue_write_back

        queue_write_back(task)
    return task


def reopen(task: Task) -> Task:
    task.status, task.done_at = Task.Status.OPEN, None
    task.save(update_fields=["status", "done_at", "updated_at"])
    return task
