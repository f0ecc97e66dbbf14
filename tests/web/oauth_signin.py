"""The browser's part of an OAuth sign-in, against a fake provider: shared by each provider's
connect tests (tests/web/test_<provider>_connect.py)."""
from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

import requests
from django.test import Client


@dataclass(frozen=True)
class SignIn:
    """Sign-in steps for ``provider``, whose callback the tests expect under ``public_url``."""

    provider: str
    public_url: str

    @property
    def callback_url(self) -> str:
        return f"{self.public_url}/connections/oauth/{self.provider}/callback/"

    def start(self, client: Client, url: str | None = None, **extra: Any) -> str:
        """POSTs the sign-in form (or ``url``, e.g. a reconnect) and returns the consent page URL."""
        response = client.post(url or f"/connections/connect/{self.provider}/", **extra)
        assert response.status_code == 302, response.content[:500]
        return response["Location"]

    @staticmethod
    def consent(authorize_url: str) -> str:
        """The browser at the provider's consent page: returns where it is sent back (the callback URL)."""
        answer = requests.get(authorize_url, allow_redirects=False, timeout=10)
        assert answer.status_code == 302, answer.text
        return answer.headers["Location"]

    def callback(self, client: Client, location: str) -> Any:
        """The browser following the provider's redirect back to this site."""
        assert location.startswith(self.callback_url), location
        split = urllib.parse.urlsplit(location)
        return client.get(split.path, dict(urllib.parse.parse_qsl(split.query)))

    def connect(self, client: Client) -> Any:
        return self.callback(client, self.consent(self.start(client)))
