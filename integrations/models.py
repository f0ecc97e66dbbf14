"""Connected accounts and the history of their syncs."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from encrypted_fields.fields import EncryptedTextField

from integrations.fields import EncryptedJSONField
from integrations.providers.registry import provider_choices


def default_sync_interval() -> int:
    return settings.SYNC_DEFAULT_INTERVAL_SECONDS


# The config keys that say where credentials are sent (or what is read). Changing any of them
# forgets the stored credentials: otherwise whoever can edit the config (a staff user, an API
# client) could point the account at a server of theirs and have the next sync send it the
# owner's password.
CONNECTION_KEYS = ("host", "port", "security", "username", "path")


class ProviderAccount(models.Model):
    """One connected mailbox / phone number / import of one user.

    Saving a change of the connection settings (CONNECTION_KEYS of ``config``) without
    new credentials in the same save clears the credentials and sets reauth_required:
    whatever path the change takes (admin, command, API), the owner must enter them again.
    """

    class Status(models.TextChoices):
        CONNECTED = "connected", "Connected"
        SYNCING = "syncing", "Syncing"
        ERROR = "error", "Error"
        REAUTH_REQUIRED = "reauth_required", "Re-authentication required"
        DISABLED = "disabled", "Disabled"

    class Sharing(models.TextChoices):
        """What teammates see of this account's communications (the owner always sees everything)."""

        PRIVATE = "private", "Private: only the owner"
        METADATA = "metadata", "Metadata: participants and time"
        SUBJECT = "subject", "Subject: metadata and subject"
        EVERYTHING = "everything", "Everything: also body and attachments"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="provider_accounts")
    provider = models.CharField(max_length=20, choices=provider_choices)
    display_name = models.CharField(max_length=200, blank=True)
    external_address = models.CharField(
        max_length=320, blank=True, help_text="The mailbox address or phone number of this account."
    )
    credentials = EncryptedJSONField(blank=True, default=dict, editable=False)
    config = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.CONNECTED)
    sharing = models.CharField(max_length=10, choices=Sharing.choices, default=Sharing.PRIVATE)
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
    # Kept by the ingest and delete paths so that listing accounts with their counts reads one
    # row each instead of counting millions (``manage.py recount_communications`` repairs it).
    communication_count = models.PositiveBigIntegerField(default=0, editable=False)
    # Push (provider notifications): when the provider's watch/subscription lapses, and what
    # the provider needs to renew or stop it (ids, client state). Empty: no push.
    push_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    push_state = models.JSONField(default=dict, blank=True, editable=False)
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

    @classmethod
    def from_db(cls, db, field_names, values):  # type: ignore[no-untyped-def]
        instance = super().from_db(db, field_names, values)
        loaded = instance.__dict__
        if "config" in loaded and "credentials" in loaded:
            instance._loaded_connection = instance.connection_settings()
            # Identity, not equality: assigning credentials (even the same password again) is
            # supplying them; only untouched ones are forgotten when the connection changes.
            instance._loaded_credentials = instance.credentials
        return instance

    def connection_settings(self) -> dict[str, object]:
        config = self.config if isinstance(self.config, dict) else {}
        return {key: config.get(key) for key in CONNECTION_KEYS}

    def save(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        loaded = getattr(self, "_loaded_connection", None)
        current = self.connection_settings()
        if (
            loaded is not None
            and loaded != current
            and self.credentials
            and self.credentials is self._loaded_credentials
        ):
            changed = sorted(k for k, v in current.items() if loaded.get(k) != v)
            self.credentials = {}
            self.status = self.Status.REAUTH_REQUIRED
            self.next_sync_at = None
            self.last_error = (
                f"The connection settings changed ({', '.join(changed)}), so the stored credentials were "
                "removed. Reconnect the account (enter the password or sign in again) to resume syncing."
            )
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "credentials", "status", "next_sync_at",
                                           "last_error"}
        if kwargs.get("update_fields") is None and not self._state.adding and not kwargs.get("force_insert"):
            # communication_count moves only by F() updates in ingest: a plain save of an
            # instance read earlier must not write back its stale count.
            kwargs["update_fields"] = _FIELDS_BUT_COUNT
        super().save(*args, **kwargs)
        self._loaded_connection = current
        self._loaded_credentials = self.credentials

    def own_addresses(self) -> set[str]:
        """The owner's own addresses: never turned into contacts, and they mark outbound mail."""
        addresses = {self.external_address, self.owner.email, *self.config.get("aliases", [])}
        return {a.strip().lower() for a in addresses if a and a.strip()}


_FIELDS_BUT_COUNT = [field.name for field in ProviderAccount._meta.concrete_fields
                     if not field.primary_key and field.name != "communication_count"]


class SyncRun(models.Model):
    """One sync of one account. A run asked for through integrations.tasks.request_sync is
    created QUEUED and adopted (-> RUNNING) by the worker that claims the account for it; a
    historical run goes back to QUEUED between its chunks (``queued_at`` says since when)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        ABANDONED = "abandoned", "Abandoned"

    class Kind(models.TextChoices):
        INITIAL = "initial", "Initial backfill"
        DELTA = "delta", "Delta"
        FULL_RESYNC = "full_resync", "Full resync"
        HISTORICAL = "historical", "Historical range"

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
    # Progress in the provider's own units (messages for IMAP, bytes for mbox): done of total.
    progress_done = models.PositiveBigIntegerField(default=0)
    progress_total = models.PositiveBigIntegerField(null=True, blank=True)
    # A historical run covers [since, until) and never moves the delta cursor; ``state`` is
    # where it stands (chunk and page token), so an interrupted run resumes there.
    since = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField(null=True, blank=True)
    state = models.JSONField(null=True, blank=True)
    # When a QUEUED run was (re)queued; one left queued past SYNC_STALE_CLAIM_SECONDS on a free
    # account lost its task and is swept (abandoned).
    queued_at = models.DateTimeField(null=True, blank=True)
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


class QuarantinedMessage(models.Model):
    """A message that could not be stored. The rest of its batch was, and the sync moved on.

    ``copy`` is the parsed message as JSON (message_to_json, capped by
    QUARANTINE_COPY_MAX_BYTES; ``truncated`` says it was cut) and ``ref`` where the
    provider keeps the original. "Retry" in the admin stores the copy again.
    """

    account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, related_name="quarantined_messages")
    provider_message_id = models.CharField(max_length=255)
    ref = models.CharField(max_length=255, blank=True, help_text="Where the provider keeps the original.")
    reason = models.TextField()
    copy = models.JSONField(default=dict, blank=True)
    truncated = models.BooleanField(default=False, help_text="The copy was cut to the size cap.")
    raw_size = models.PositiveBigIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    last_attempt_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-last_attempt_at"]
        constraints = [
            models.UniqueConstraint(fields=["account", "provider_message_id"], name="quarantine_unique_message")
        ]

    def __str__(self) -> str:
        return f"{self.provider_message_id} of {self.account}"


class OAuthState(models.Model):
    """A sign-in in progress (integrations.oauth): created when the user is sent to the provider's
    consent page, consumed by the callback. One use only, valid for oauth.STATE_TTL, and only
    for the user who started it and the provider it was started for.

    The PKCE code_verifier is kept here, encrypted, never in the browser: whoever steals the
    code from the redirect cannot exchange it without it.
    """

    state = models.CharField(max_length=128, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    provider = models.CharField(max_length=20)
    code_verifier = EncryptedTextField()
    # Set when the sign-in reconnects an existing account of the user (not for a new one).
    account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.provider} sign-in of {self.user_id} at {self.created_at:%Y-%m-%d %H:%M}"
