"""Connecting Gmail: Google's authorization-code flow with PKCE (google-auth-oauthlib)."""
from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from django.conf import settings

from integrations.providers.connect import OAuthConnect

if TYPE_CHECKING:
    from django.http import HttpRequest

    from integrations.models import ProviderAccount

GMAIL_READONLY = "https://www.googleapis.com/auth/gmail.readonly"


class GmailConnect(OAuthConnect):
    provider_key: ClassVar[str] = "gmail"
    scopes: ClassVar[tuple[str, ...]] = (GMAIL_READONLY,)

    def is_configured(self) -> bool:
        return bool(settings.GOOGLE_CLIENT_ID and settings.GOOGLE_CLIENT_SECRET)

    def public_config(self, config: dict) -> dict:
        return {key: config[key] for key in ("email", "initial_days") if key in config}

    def start(self, request: HttpRequest) -> str:
        raise NotImplementedError  # being written (issue 8)

    def finish(self, request: HttpRequest) -> ProviderAccount:
        raise NotImplementedError  # being written (issue 8)
