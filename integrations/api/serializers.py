"""Serializers of the integrations API, explicit fields only.

Nothing read ever carries a credential: ``credentials`` is never a readable field, and
``config`` is shown through its provider's allow-list (ConnectMethod.public_config).
"""
from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from crmext.api_schema import ErrorBodySerializer, ErrorSerializer  # noqa: F401 - re-exported for the views
from integrations.models import ProviderAccount, SyncRun
from integrations.providers.connect import ConnectMethod, CredentialsConnect, OAuthConnect, connect_method
from integrations.providers.registry import PROVIDERS, provider_choices

# The sync interval a user may choose: the scheduler ticks once a minute; a week at most.
MIN_INTERVAL_SECONDS = 60
MAX_INTERVAL_SECONDS = 7 * 24 * 3600


# --- errors (the shape of crmext.api.exception_handler, for the schema) ----------------------

# ErrorBodySerializer and ErrorSerializer live in crmext.api_schema; imported here
# for the views and for SyncConflictBodySerializer.


# --- sync runs ----------------------------------------------------------------------------

class SyncRunSerializer(serializers.ModelSerializer):
    connector = serializers.IntegerField(source="account_id", read_only=True)

    class Meta:
        model = SyncRun
        fields = ["id", "connector", "kind", "status", "queued_at", "started_at", "finished_at", "since", "until",
                  "fetched", "created", "updated", "skipped", "failed", "api_calls", "progress_done",
                  "progress_total", "error"]
        read_only_fields = fields


class SyncConflictBodySerializer(ErrorBodySerializer):
    run = SyncRunSerializer(help_text="The run in progress.")


class SyncConflictSerializer(serializers.Serializer):
    error = SyncConflictBodySerializer()


def current_run(account: ProviderAccount) -> SyncRun | None:
    """The account's running run, else its newest queued one (prefetched as ``active_runs`` by the views)."""
    runs = getattr(account, "active_runs", None)
    if runs is None:
        runs = list(account.sync_runs.filter(status__in=(SyncRun.Status.QUEUED, SyncRun.Status.RUNNING))
                    .order_by("-id"))
    return next((run for run in runs if run.status == SyncRun.Status.RUNNING), runs[0] if runs else None)


class SyncRequestSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["delta", "full", "historical"], default="delta",
                                   help_text="delta: what the schedule does; full: refetch everything; "
                                             "historical: the messages received in [since, until).")
    since = serializers.DateField(required=False, help_text="Historical syncs: the first day.")
    until = serializers.DateField(required=False, help_text="Historical syncs: the day after the last.")


# --- connectors -------------------------------------------------------------------------

@extend_schema_field({"type": "object", "additionalProperties": True,
                      "description": "The provider's settings (see /api/v1/providers/); never a secret."})
class PublicConfigField(serializers.Field):
    """An account's config through its provider's allow-list."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, account: ProviderAccount) -> dict[str, Any]:
        return connect_method(account.provider).public_config(account.config or {})


class ConnectorSerializer(serializers.ModelSerializer):
    address = serializers.CharField(source="external_address", read_only=True)
    config = PublicConfigField()
    enabled = serializers.SerializerMethodField()
    communication_count = serializers.IntegerField(read_only=True,
                                                   help_text="Communications stored (not deleted at the provider).")
    current_run = serializers.SerializerMethodField(help_text="The sync queued or running, with its progress.")

    class Meta:
        model = ProviderAccount
        fields = ["id", "owner", "provider", "display_name", "address", "config", "status", "enabled", "last_error",
                  "last_synced_at", "next_sync_at", "sync_interval", "sharing", "communication_count", "current_run",
                  "created_at", "updated_at"]
        read_only_fields = fields

    def get_enabled(self, account: ProviderAccount) -> bool:
        return account.status != ProviderAccount.Status.DISABLED

    @extend_schema_field(SyncRunSerializer(allow_null=True))
    def get_current_run(self, account: ProviderAccount) -> dict[str, Any] | None:
        run = current_run(account)
        return None if run is None else SyncRunSerializer(run).data


# The connector statuses, as health: what each means for the syncs.
HEALTH = [
    (ProviderAccount.Status.CONNECTED, "Connected: syncs on schedule"),
    (ProviderAccount.Status.SYNCING, "Syncing now"),
    (ProviderAccount.Status.ERROR, "Error: retried with backoff"),
    (ProviderAccount.Status.REAUTH_REQUIRED, "Re-authentication required: no syncs until new credentials"),
    (ProviderAccount.Status.DISABLED, "Disabled: no syncs until re-enabled"),
]
assert {value for value, _label in HEALTH} == set(ProviderAccount.Status.values)


class ConnectorStatusSerializer(serializers.ModelSerializer):
    health = serializers.ChoiceField(source="status", choices=HEALTH, read_only=True,
                                     help_text="The connector's status, and what it means for its syncs.")
    # Null before the first successful sync, and while no sync is scheduled (disabled, reauth required).
    last_success = serializers.DateTimeField(source="last_synced_at", read_only=True, allow_null=True)
    next_run = serializers.DateTimeField(source="next_sync_at", read_only=True, allow_null=True)
    cursor_age_seconds = serializers.SerializerMethodField(help_text="Seconds since the last successful sync.")
    current_run = serializers.SerializerMethodField(help_text="The sync queued or running, with its progress.")

    class Meta:
        model = ProviderAccount
        fields = ["id", "health", "last_success", "last_error", "next_run", "cursor_age_seconds", "current_run"]
        read_only_fields = fields

    def get_cursor_age_seconds(self, account: ProviderAccount) -> int | None:
        if account.last_synced_at is None:
            return None
        return max(0, int((timezone.now() - account.last_synced_at) / dt.timedelta(seconds=1)))

    @extend_schema_field(SyncRunSerializer(allow_null=True))
    def get_current_run(self, account: ProviderAccount) -> dict[str, Any] | None:
        run = current_run(account)
        return None if run is None else SyncRunSerializer(run).data


def _not_creatable(key: str, method: ConnectMethod) -> str:
    if method.kind == "oauth":
        return f"{PROVIDERS[key][0]} accounts are connected by signing in: POST /api/v1/providers/{key}/authorize/."
    return method.instructions or f"{PROVIDERS[key][0]} accounts cannot be connected through this endpoint."


def not_configured(key: str) -> str:
    return f"{PROVIDERS[key][0]} is not configured on this server (its app credentials are missing)."


def _validated(serializer_class: type[serializers.Serializer], data: Any, name: str,
               errors: dict[str, Any]) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        errors[name] = serializer.errors
        return {}
    return dict(serializer.validated_data)


class ConnectorWriteSerializer(serializers.Serializer):
    """What creating and editing a connector share."""

    display_name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    address = serializers.CharField(max_length=320, required=False, allow_blank=True,
                                    help_text="The mailbox address or phone number.")
    sharing = serializers.ChoiceField(choices=ProviderAccount.Sharing.choices, required=False)
    sync_interval = serializers.IntegerField(min_value=MIN_INTERVAL_SECONDS, max_value=MAX_INTERVAL_SECONDS,
                                             required=False, help_text="Seconds between scheduled syncs.")

    def to_representation(self, account: ProviderAccount) -> dict[str, Any]:
        # What was written is answered with the connector as read (and no secret).
        return ConnectorSerializer(account, context=self.context).data

    @staticmethod
    def model_fields(attrs: dict[str, Any]) -> dict[str, Any]:
        names = {"display_name": "display_name", "address": "external_address", "sharing": "sharing",
                 "sync_interval": "sync_interval"}
        return {names[key]: value for key, value in attrs.items() if key in names}


class ConnectorCreateSerializer(ConnectorWriteSerializer):
    """Connects a new account of a provider connected by credentials (its login is tested first)."""

    provider = serializers.ChoiceField(choices=[])
    config = serializers.DictField(help_text="The provider's settings: see its fields in /api/v1/providers/.")
    credentials = serializers.DictField(write_only=True, help_text="The provider's secrets, never shown back.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.fields["provider"].choices:  # the registry's, as they are now
            self.fields["provider"].choices = provider_choices()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        key = attrs["provider"]
        method = connect_method(key)
        if not isinstance(method, CredentialsConnect):
            raise serializers.ValidationError({"provider": [_not_creatable(key, method)]})
        if not method.is_configured():
            raise serializers.ValidationError({"provider": [not_configured(key)]})
        errors: dict[str, Any] = {}
        attrs["config"] = _validated(method.config_serializer, attrs["config"], "config", errors)
        attrs["credentials"] = _validated(method.credentials_serializer, attrs["credentials"], "credentials", errors)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


@cache
def provider_create_serializer(key: str) -> type[ConnectorCreateSerializer]:
    """The create request of one provider, with its own config and credentials (for the schema)."""
    method = connect_method(key)
    assert isinstance(method, CredentialsConnect)
    return type(f"{key.capitalize()}ConnectorCreateSerializer", (ConnectorCreateSerializer,), {
        "__module__": __name__,
        "provider": serializers.ChoiceField(choices=[key]),
        "config": method.config_serializer(),
        "credentials": method.credentials_serializer(write_only=True),
    })


def credentials_providers() -> dict[str, type[ConnectorCreateSerializer]]:
    return {key: provider_create_serializer(key) for key in PROVIDERS
            if isinstance(connect_method(key), CredentialsConnect)}


class OAuthConnectorCreateSerializer(serializers.Serializer):
    """Starts connecting an account of a provider connected by signing in (OAuth): the answer is
    the URL of the provider's consent page; the account is created when the user comes back."""

    provider = serializers.ChoiceField(choices=[])


@cache
def provider_oauth_serializer(key: str) -> type[OAuthConnectorCreateSerializer]:
    """The create request of one OAuth provider (for the schema): only ``provider``."""
    return type(f"{key.capitalize()}ConnectorAuthorizeSerializer", (OAuthConnectorCreateSerializer,), {
        "__module__": __name__,
        "provider": serializers.ChoiceField(choices=[key]),
    })


def oauth_providers() -> dict[str, type[OAuthConnectorCreateSerializer]]:
    return {key: provider_oauth_serializer(key) for key in PROVIDERS if isinstance(connect_method(key), OAuthConnect)}


def connector_create_requests() -> dict[str, type[serializers.Serializer]]:
    """Every provider's create request, by provider key: credentials ones and OAuth ones."""
    return {**credentials_providers(), **oauth_providers()}


class ConnectorUpdateSerializer(ConnectorWriteSerializer):
    """An edit. New connection settings (host, port, security, username) need ``credentials``:
    they are tested with the new settings before anything is saved."""

    config = serializers.DictField(required=False, help_text="Settings to change; the others are kept.")
    credentials = serializers.DictField(required=False, write_only=True,
                                        help_text="New secrets, tested before they are saved.")
    enabled = serializers.BooleanField(required=False, help_text="false disables syncing; true re-enables it.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        account: ProviderAccount = self.instance
        method = connect_method(account.provider)
        errors: dict[str, Any] = {}
        if ("config" in attrs or "credentials" in attrs) and not isinstance(method, CredentialsConnect):
            raise serializers.ValidationError(
                {"config" if "config" in attrs else "credentials": [_not_creatable(account.provider, method)]})
        if "config" in attrs:
            assert isinstance(method, CredentialsConnect)
            known = method.config_serializer().fields
            unknown = sorted(set(attrs["config"]) - set(known))
            if unknown:
                raise serializers.ValidationError({"config": {key: ["Unknown setting."] for key in unknown}})
            merged = {**method.public_config(account.config or {}), **attrs["config"]}
            attrs["config"] = {**account.config, **_validated(method.config_serializer, merged, "config", errors)}
        if "credentials" in attrs:
            assert isinstance(method, CredentialsConnect)
            attrs["credentials"] = _validated(method.credentials_serializer, attrs["credentials"], "credentials",
                                              errors)
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


# --- providers --------------------------------------------------------------------------

class ConnectFieldSerializer(serializers.Serializer):
    section = serializers.ChoiceField(choices=["config", "credentials"])
    name = serializers.CharField()
    type = serializers.CharField(help_text="string, integer, boolean, email, choice, multiple_choice or list.")
    required = serializers.BooleanField()
    secret = serializers.BooleanField()
    default = serializers.JSONField(allow_null=True)
    choices = serializers.ListField(child=serializers.CharField(), allow_null=True)
    help_text = serializers.CharField()


class ProviderSerializer(serializers.Serializer):
    key = serializers.CharField()
    display_name = serializers.CharField()
    capabilities = serializers.ListField(child=serializers.CharField())
    connect = serializers.ChoiceField(choices=["credentials", "oauth", "upload", "none"],
                                      help_text="How an account is connected: POST /api/v1/connectors/ with "
                                                "credentials; for oauth POST /api/v1/connectors/ with only the "
                                                "provider (or …/providers/{key}/authorize/), then open the "
                                                "authorize_url answered; a file upload (not through the API); "
                                                "or not at all.")
    configured = serializers.BooleanField(help_text="Whether the app credentials it needs are set on this server.")
    fields = ConnectFieldSerializer(many=True, help_text="What to send to connect (credentials only).")
    instructions = serializers.CharField(help_text="How to connect when the API cannot.")


class AuthorizeSerializer(serializers.Serializer):
    authorize_url = serializers.URLField(help_text="The provider's consent page: open it in a browser signed in "
                                                   "here; the account is connected when it comes back.")


class UnlockSerializer(ConnectorStatusSerializer):
    abandoned_runs = serializers.IntegerField(read_only=True, help_text="Running runs marked abandoned.")

    class Meta(ConnectorStatusSerializer.Meta):
        fields = [*ConnectorStatusSerializer.Meta.fields, "abandoned_runs"]
        read_only_fields = fields
