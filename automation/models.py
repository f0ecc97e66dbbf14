"""What happens after a message arrives: suggested tasks, the tasks themselves, and the
per-account and per-user settings that steer them.

Dependencies point automation -> integrations -> conversations -> contacts: the account
and user settings live here (AccountAutomation, AutomationPreferences), never as fields on
integrations' ProviderAccount.
"""
from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from integrations.fields import EncryptedJSONField


class Priority(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


def validate_time_zone(value: str) -> None:
    if value and value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not an IANA time zone (e.g. Europe/Berlin).")


class AccountAutomation(models.Model):
    """An account's automation switches. No row: the defaults (suggestions per setting, no write-back)."""

    account = models.OneToOneField("integrations.ProviderAccount", on_delete=models.CASCADE,
                                   related_name="automation")
    suggestions_enabled = models.BooleanField(default=True)
    write_back = models.BooleanField(
        default=False, help_text="Mark the provider's message as processed (IMAP \\Seen, Gmail not UNREAD) when a "
                                 "task made from it is done.")

    class Meta:
        verbose_name = "account automation"

    def __str__(self) -> str:
        return f"Automation of account {self.account_id}"


class AutomationPreferences(models.Model):
    """A user's preferences. No row, or an empty field: the server's defaults."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="automation")
    auto_approve_threshold = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.01)],
        help_text="Confidence at or above which a suggestion becomes a task at once; empty: the server default. "
                  "Above 1: never.")
    time_zone = models.CharField(max_length=64, blank=True, validators=[validate_time_zone],
                                 help_text="Where due dates like 'tomorrow' are read; empty: the server's TIME_ZONE.")

    class Meta:
        verbose_name_plural = "automation preferences"

    def __str__(self) -> str:
        return f"Automation preferences of user {self.user_id}"


class Suggestion(models.Model):
    """A task an engine suggests from one communication, waiting for (or past) a person's decision."""

    class Status(models.TextChoices):
        PENDING = "pending_approval", "Pending approval"
        APPROVED = "approved", "Approved"
        DISMISSED = "dismissed", "Dismissed"
        AUTO_APPROVED = "auto_approved", "Auto-approved"

    DECIDED = (Status.APPROVED, Status.DISMISSED, Status.AUTO_APPROVED)

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="suggestions")
    account = models.ForeignKey("integrations.ProviderAccount", on_delete=models.CASCADE, related_name="suggestions")
    communication = models.OneToOneField("conversations.Communication", on_delete=models.CASCADE,
                                         related_name="suggestion")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    priority = models.CharField(max_length=6, choices=Priority.choices, default=Priority.MEDIUM)
    due = models.DateField(null=True, blank=True)
    tags = models.JSONField(default=list, blank=True)
    confidence = models.FloatField(validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    reasoning = models.TextField(help_text="The signals that fired, for a person to read.")
    engine = models.CharField(max_length=20)
    engine_version = models.CharField(max_length=20)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    dismiss_reason = models.CharField(max_length=500, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    # A snapshot, so that the feed needs no read of the communication.
    subject = models.CharField(max_length=300, blank=True)
    sender = models.CharField(max_length=320, blank=True)
    snippet = models.CharField(max_length=300, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["owner", "status", "-id"], name="suggestion_owner_status_idx")]

    def __str__(self) -> str:
        return f"Suggestion #{self.pk}"

    @property
    def is_decided(self) -> bool:
        return self.status in self.DECIDED


class Task(models.Model):
    """A CRM task: made by hand, or from an approved suggestion."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        DONE = "done", "Done"

    class WriteBack(models.TextChoices):
        NONE = "", "Not asked"
        DONE = "done", "Marked processed at the provider"
        FAILED = "failed", "Failed"
        UNSUPPORTED = "unsupported", "Not supported for this provider"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tasks")
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    due = models.DateField(null=True, blank=True)
    priority = models.CharField(max_length=6, choices=Priority.choices, default=Priority.MEDIUM)
    status = models.CharField(max_length=4, choices=Status.choices, default=Status.OPEN)
    done_at = models.DateTimeField(null=True, blank=True)
    contact = models.ForeignKey("contacts.Contact", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="tasks")
    conversation = models.ForeignKey("conversations.Conversation", null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="tasks")
    communication = models.ForeignKey("conversations.Communication", null=True, blank=True,
                                      on_delete=models.SET_NULL, related_name="tasks")
    suggestion = models.OneToOneField(Suggestion, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="task")
    trigger = models.ForeignKey("automation.Trigger", null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="tasks", help_text="The trigger that made it, if one did.")
    write_back = models.CharField(max_length=11, choices=WriteBack.choices, default=WriteBack.NONE, blank=True)
    write_back_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["owner", "status", "-id"], name="task_owner_status_idx")]
        constraints = [models.UniqueConstraint(fields=["trigger", "communication"], name="task_once_per_trigger",
                                               condition=models.Q(trigger__isnull=False))]

    def __str__(self) -> str:
        return f"Task #{self.pk}"


# ------------------------------------------------------------------------------------ triggers

class Trigger(models.Model):
    """A rule that fires on new communications: a signed webhook, or a task from a template.

    ``connector`` empty means any of the owner's own connectors. A connector of a teammate
    (shared at some level) may be named; what the trigger sees and sends is then limited to
    that connector's sharing level (automation.triggers.matching). ``conditions`` is a dict
    validated by automation.triggers.conditions (all optional, ANDed); ``task_template`` one
    validated by the API (title, description, priority, due_in_days).
    """

    class Type(models.TextChoices):
        EMAIL = "email", "E-mail"
        SMS = "sms", "SMS / MMS"
        ANY = "any", "Any channel"

    class Action(models.TextChoices):
        WEBHOOK = "webhook", "Signed webhook"
        TASK = "task", "Create a task"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="triggers")
    name = models.CharField(max_length=200)
    connector = models.ForeignKey("integrations.ProviderAccount", null=True, blank=True, on_delete=models.CASCADE,
                                  related_name="triggers", help_text="Empty: any of the owner's connectors.")
    enabled = models.BooleanField(default=True)
    type = models.CharField(max_length=5, choices=Type.choices, default=Type.ANY)
    conditions = models.JSONField(default=dict, blank=True)
    action = models.CharField(max_length=7, choices=Action.choices, default=Action.WEBHOOK)
    url = models.URLField(max_length=2000, blank=True)
    # {"secret": "..."}, one Fernet token; only ``secret_hint`` is ever shown.
    signing = EncryptedJSONField(blank=True, default=dict, editable=False)
    secret_hint = models.CharField(max_length=16, blank=True, editable=False)
    task_template = models.JSONField(default=dict, blank=True)
    include_backfill = models.BooleanField(
        default=False, help_text="Also fire on messages a first sync, resync or historical sync brings in.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["connector", "enabled"], name="trigger_connector_idx"),
                   models.Index(fields=["owner", "enabled"], name="trigger_owner_idx")]

    def __str__(self) -> str:
        return self.name or f"Trigger #{self.pk}"

    @property
    def secret(self) -> str:
        return str((self.signing or {}).get("secret", ""))

    def set_secret(self, secret: str) -> None:
        self.signing = {"secret": secret}
        self.secret_hint = f"…{secret[-4:]}" if len(secret) >= 12 else "…"


class WebhookDelivery(models.Model):
    """One firing of a webhook trigger for one communication (or a test), with every attempt.

    Unique per (trigger, communication): a message synced again, or a retry racing a
    redelivery, never fires twice. ``status``, ``response_code``, ``duration_ms`` and
    ``error`` describe the latest attempt; ``attempt_log`` keeps each one.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENDING = "sending", "Sending"
        RETRYING = "retrying", "Waiting to retry"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    FINAL = (Status.SUCCEEDED, Status.FAILED)

    trigger = models.ForeignKey(Trigger, on_delete=models.CASCADE, related_name="deliveries")
    communication = models.ForeignKey("conversations.Communication", null=True, blank=True,
                                      on_delete=models.SET_NULL, related_name="webhook_deliveries")
    event = models.CharField(max_length=40, default="communication.created")
    status = models.CharField(max_length=9, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0, help_text="Attempts in the current round (a redelivery "
                                                                "starts a new one).")
    attempt_log = models.JSONField(default=list, blank=True)
    response_code = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        constraints = [models.UniqueConstraint(fields=["trigger", "communication"],
                                               name="webhookdelivery_once_per_message")]
        indexes = [models.Index(fields=["trigger", "-id"], name="webhookdelivery_trigger_idx"),
                   models.Index(fields=["status"], name="webhookdelivery_status_idx")]

    def __str__(self) -> str:
        return f"Delivery #{self.pk}"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL
