"""pytest plugin: one fake Microsoft Graph and identity platform (tests/fakes/graph.py) per session,
reset per test.

``graph_fake`` points msal and the Graph client at it through the settings (MS_AUTHORITY_HOST,
MS_TENANT, MS_CLIENT_ID/SECRET, GRAPH_API_BASE_URL) and makes requests trust the fake's test CA
through REQUESTS_CA_BUNDLE (verification stays on). ``outlook_credentials`` gives the stored
credentials (package storage contract) of a mailbox, made by the real msal.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msal
import pytest

from integrations.providers.outlook import auth
from integrations.providers.outlook import client as graph_client
from tests.fakes.graph import FakeGraph


@pytest.fixture(scope="session")
def graph_server() -> Iterator[FakeGraph]:
    fake = FakeGraph().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def graph_fake(graph_server: FakeGraph, settings, monkeypatch) -> FakeGraph:
    """The session's fake, emptied, with the settings and the CA bundle pointing at it."""
    graph_server.reset()
    for name, value in graph_server.settings().items():
        setattr(settings, name, value)
    settings.OUTLOOK_PUSH = False
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(graph_server.tls.ca_path))
    monkeypatch.setattr(graph_client, "sleep", lambda seconds: None)  # Retry-After waits are not slept in tests
    graph_client._limits.clear()
    return graph_server


def make_credentials(fake: FakeGraph, email: str, scopes: tuple[str, ...] | list[str] = tuple(auth.SCOPES)
                     ) -> dict[str, Any]:
    """Credentials as a connect stores them: msal's cache, filled by msal from tokens the fake
    issued for ``scopes`` (add auth.MAIL_READ_WRITE for an account that allowed write-back)."""
    tokens = fake.issue_tokens(email, scopes=scopes)
    cache = msal.SerializableTokenCache()
    result = auth.msal_app(cache).acquire_token_by_refresh_token(tokens["refresh_token"], list(scopes))
    assert "access_token" in result, result
    account = next(iter(cache.search(msal.TokenCache.CredentialType.ACCOUNT)))
    return {"token_cache": cache.serialize(), "home_account_id": account["home_account_id"],
            "scopes": auth.granted_scopes(result.get("scope") or list(scopes))}


@pytest.fixture
def outlook_credentials(graph_fake: FakeGraph) -> Callable[[str], dict[str, Any]]:
    return lambda email: make_credentials(graph_fake, email)
