"""Connected accounts and the history of their syncs."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from integrations.fields import EncryptedJSONField
from integrations.providers.registry import provider_choices


def default_sync_interval() -> int:
    return settings.SYNC_DEFAULT_INTERVAL_SECONDS


class ProviderAccount(models.Model):
    """One connected mailbox / phone number / import of one user."""

    class Status(models.TextChoices):
        CONNECTED = "connected", "Connected"
        SYNCING = "syncing", "Syncing"
        ERROR = "error", "Error"
        REAUTH_REQUIRED = "reauth_required", "Re-authentication required"
        DISABLED = "disabled", "Disabled"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="provider_accounts")
    provider = models.CharField(max_length=20, choices=provider_choices)
    display_name = models.CharField(max_length=200, blank=True)
    external_address = models.CharField(
        max_length=320, blank=True, help_text="The mailbox address or phone number of this account."
    )
    credentials = EncryptedJSONField(blank=True, default=dict, editable=False)
    config = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CONNECTED)
    last_error = models.TextField(blank=True)
    sync_cursor = models.JSONField(
        default=dict, blank=True, help_text="The provider's delta cursor; empty until the backfill completes."
    )
    backfill_state = models.JSONField(
        null=True, blank=True, help_text="Page token and pending cursor of a backfill in progress."
    )
    sync_interval = models.PositiveIntegerField(
        default=default_sync_interval, help_text="Seconds between scheduled syncs."
    )
    next_sync_at = models.DateTimeField(
        null=True, blank=True, default=timezone.now, help_text="Empty: not scheduled (needs attention)."
    )
    last_synced_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True, editable=False)
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0)
    consecutive_resyncs = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["owner_id", "provider", "display_name"]
        indexes = [models.Index(fields=["status", "next_sync_at"], name="account_due_idx")]

    def __str__(self) -> str:
        return self.display_name or self.external_address or f"{self.get_provider_display()} #{self.pk}"

    def own_addresses(self) -> set[str]:
        """The owner's own addresses: never turned into contacts, and they mark outbound mail."""
        addresses = {self.external_address, self.owner.email, *self.config.get("aliases", [])}
        return {a.strip().lower() for a in addresses if a and a.strip()}


class SyncRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        ABANDONED = "abandoned", "Abandoned"

    class Kind(models.TextChoices):
        INITIAL = "initial", "Initial backfill"
        DELTA = "delta", "Delta"
        FULL_RESYNC = "full_resync", "Full resync"

    account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, related_name="sync_runs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    fetched = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    api_calls = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    claim_token = models.CharField(max_length=32, blank=True, editable=False)

    class Meta:
        ordering = ["-started_at"]
        indexes = [
            models.Index(fields=["account", "-started_at"], name="syncrun_account_idx"),
            models.Index(fields=["status", "started_at"], name="syncrun_status_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of {self.account} at {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def duration(self):  # type: ignore[no-untyped-def]
        return None if self.finished_at is None else self.finished_at - self.started_at
