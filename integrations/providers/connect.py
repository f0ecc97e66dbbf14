"""How an account of a provider gets connected: the plug point the connectors API reads.

A provider class declares ``connect``, an instance of one of these:

- CredentialsConnect: connection settings (``config``) and secrets (``credentials``), each a
  DRF serializer, tested by logging in before anything is saved (IMAP; later Twilio).
- OAuthConnect: a redirect to the provider's consent page: ``start`` returns the authorize
  URL, ``finish`` (the callback) creates the account (later Gmail, Outlook);
  ``is_configured()`` says whether the app's client id and secret are in the environment.
- UploadConnect: an import, connected by uploading a file (mbox), never through the API.

A provider without ``connect`` cannot be connected at all (NOT_CONNECTABLE). The views ask
only this interface, so a new provider changes no view: it subclasses one of these next to
its class (``providers/<key>/connect.py``) and sets ``connect = ItsConnect()``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rest_framework import serializers

from integrations.providers.registry import provider_class

if TYPE_CHECKING:
    from django.http import HttpRequest

    from integrations.models import ProviderAccount


class ConnectMethod:
    """Base of every way to connect; on its own, the way of a provider that cannot be connected.

    ``kind`` is what /api/v1/providers/ reports; ``instructions`` tell a user how to
    connect when the API cannot do it (empty otherwise).
    """

    kind: ClassVar[str] = "none"
    instructions: str = "Accounts of this provider cannot be connected."
    # The config keys naming one mailbox: a second account of one owner with the same values is refused.
    identity_keys: ClassVar[tuple[str, ...]] = ()

    def is_configured(self) -> bool:
        """Whether the app credentials this provider needs (client id, secret...) are set."""
        return True

    def fields(self) -> list[dict[str, Any]]:
        """The fields a user fills in to connect (credentials only)."""
        return []

    def public_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """What of an account's ``config`` may be shown: an allow-list, nothing by default."""
        return {}


class CredentialsConnect(ConnectMethod):
    """Connected with a form: ``config_serializer`` (settings) and ``credentials_serializer`` (secrets).

    Subclasses set both serializers. Every field of ``config_serializer`` is shown back
    (it is the allow-list of ``public_config``), so a secret must never be one of them.
    The validated config is what the account stores; the validated credentials are tested
    (integrations.accounts.connect_account) before either is saved.
    """

    kind = "credentials"
    instructions = ""
    # What the Connections page tells a user about connecting (one sentence).
    summary: ClassVar[str] = "Enter the settings and credentials; they are tested before anything is saved."
    config_serializer: ClassVar[type[serializers.Serializer]]
    credentials_serializer: ClassVar[type[serializers.Serializer]]

    def account_defaults(self, config: dict[str, Any]) -> dict[str, str]:
        """``display_name`` and ``external_address`` derived from a validated config, for fields left blank."""
        return {}

    def fields(self) -> list[dict[str, Any]]:
        return [*_describe("config", self.config_serializer()),
                *_describe("credentials", self.credentials_serializer())]

    def public_config(self, config: dict[str, Any]) -> dict[str, Any]:
        allowed = self.config_serializer().fields
        return {key: value for key, value in config.items() if key in allowed}


class OAuthError(Exception):
    """A sign-in that cannot be completed. The message is shown to the user as it is, so it
    says what happened and what to do, and never carries a code, token or secret.

    ``code`` names the case for callers and tests: access_denied, provider_error, bad_state,
    exchange_failed, token_endpoint, not_granted, wrong_account, mailbox_unreadable.
    """

    def __init__(self, message: str, *, code: str = "oauth_failed") -> None:
        super().__init__(message)
        self.code = code


class OAuthConnect(ConnectMethod):
    """Connected by signing in at the provider. Subclasses implement all three methods.

    ``start`` returns the URL to send the user to, with a state that ties the callback to
    ``request.user`` (integrations.oauth.begin); with ``account``, the sign-in reconnects that
    account of the user. ``finish`` handles the callback
    (GET /connections/oauth/<provider>/callback/): it checks the state
    (integrations.oauth.complete), exchanges the code and creates or updates the user's
    account, which it returns; on any failure it raises OAuthError having stored nothing.
    """

    kind = "oauth"
    instructions = ""

    def is_configured(self) -> bool:
        raise NotImplementedError

    def start(self, request: HttpRequest, account: ProviderAccount | None = None) -> str:
        raise NotImplementedError

    def finish(self, request: HttpRequest) -> ProviderAccount:
        raise NotImplementedError


class UploadConnect(ConnectMethod):
    """An import: the account is created by uploading a file, not through the connectors API."""

    kind = "upload"

    def __init__(self, instructions: str) -> None:
        self.instructions = instructions


NOT_CONNECTABLE = ConnectMethod()


def connect_method(provider_key: str) -> ConnectMethod:
    """How accounts of the provider ``provider_key`` are connected (LookupError if no such provider)."""
    return provider_class(provider_key).connect or NOT_CONNECTABLE


# Most specific first: EmailField is a CharField, MultipleChoiceField a ChoiceField.
_FIELD_TYPES: tuple[tuple[type[serializers.Field], str], ...] = (
    (serializers.BooleanField, "boolean"),
    (serializers.IntegerField, "integer"),
    (serializers.MultipleChoiceField, "multiple_choice"),
    (serializers.ChoiceField, "choice"),
    (serializers.ListField, "list"),
    (serializers.EmailField, "email"),
)


def _describe(section: str, serializer: serializers.Serializer) -> list[dict[str, Any]]:
    described = []
    for name, field in serializer.fields.items():
        kind = next((label for cls, label in _FIELD_TYPES if isinstance(field, cls)), "string")
        default = field.default if field.default is not serializers.empty and not callable(field.default) else None
        described.append({
            "section": section, "name": name, "type": kind, "required": field.required,
            "secret": section == "credentials", "default": default,
            "choices": list(field.choices) if isinstance(field, serializers.ChoiceField) else None,
            "help_text": str(field.help_text or ""),
        })
    return described
