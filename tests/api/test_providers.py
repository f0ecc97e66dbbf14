"""/api/v1/providers/ and the connect plug point: a provider added to the registry with a ``connect``
attribute is listed and connected by the same views, whatever its way (credentials, OAuth, upload)."""
from __future__ import annotations

from typing import Any

import pytest
from rest_framework import serializers

from integrations.models import ProviderAccount
from integrations.providers import registry
from integrations.providers.base import AuthError, Capability, MessageProvider
from integrations.providers.connect import CredentialsConnect, OAuthConnect
from tests.api.test_connectors import api, body  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


# --- two providers of the future, declared the way a real one would be ----------------------------

class KeyConfig(serializers.Serializer):
    region = serializers.ChoiceField(choices=["eu", "us"], default="eu")
    number = serializers.CharField(max_length=20)


class KeyCredentials(serializers.Serializer):
    api_key = serializers.CharField(write_only=True)


class KeyConnect(CredentialsConnect):
    config_serializer = KeyConfig
    credentials_serializer = KeyCredentials
    identity_keys = ("number",)

    def account_defaults(self, config: dict[str, Any]) -> dict[str, str]:
        return {"display_name": f"Texts to {config['number']}", "external_address": config["number"]}


class KeyProvider(MessageProvider):
    """Logs in with an API key: "good-key" works."""

    key = "keyed"
    display_name = "Keyed SMS"
    capabilities = frozenset({Capability.SMS})
    connect = KeyConnect()

    def authenticate(self) -> None:
        if self.account.credentials.get("api_key") != "good-key":
            raise AuthError("The provider refused the API key (401 Unauthorized).", permanent=True)


class FakeOAuth(OAuthConnect):
    configured = True

    def is_configured(self) -> bool:
        return self.configured

    def start(self, request: Any) -> str:
        return f"https://login.example.com/authorize?client_id=abc&state=for-{request.user.pk}"


class OAuthProvider(MessageProvider):
    key = "signin"
    display_name = "Sign-in mail"
    capabilities = frozenset({Capability.EMAIL, Capability.OAUTH})
    connect = FakeOAuth()


class Unconnectable(MessageProvider):
    key = "bare"
    display_name = "Bare"


@pytest.fixture
def more_providers(monkeypatch):
    """Three more registry lines: nothing else in the tree changes."""
    monkeypatch.setitem(registry.PROVIDERS, "keyed", ("Keyed SMS", f"{__name__}.KeyProvider"))
    monkeypatch.setitem(registry.PROVIDERS, "signin", ("Sign-in mail", f"{__name__}.OAuthProvider"))
    monkeypatch.setitem(registry.PROVIDERS, "bare", ("Bare", f"{__name__}.Unconnectable"))
    registry.provider_class.cache_clear()
    yield
    registry.provider_class.cache_clear()
    FakeOAuth.configured = True


def test_providers_list_how_each_connects(api):
    providers = {p["key"]: p for p in body(api.get("/api/v1/providers/"))}
    assert set(providers) == set(registry.PROVIDERS)
    imap, mbox = providers["imap"], providers["mbox"]
    assert (imap["display_name"], imap["connect"], imap["configured"], imap["instructions"]) == (
        "IMAP mailbox", "credentials", True, "")
    assert "email" in imap["capabilities"]
    fields = {(f["section"], f["name"]): f for f in imap["fields"]}
    assert set(fields) == {("config", "host"), ("config", "port"), ("config", "security"), ("config", "username"),
                           ("config", "folders"), ("credentials", "password")}
    assert fields["config", "security"]["choices"] == ["ssl", "starttls", "none"]
    assert fields["config", "security"]["default"] == "ssl"
    assert fields["credentials", "password"]["secret"] and fields["credentials", "password"]["required"]
    assert not fields["config", "host"]["secret"]
    assert (mbox["connect"], mbox["configured"], mbox["fields"]) == ("upload", True, [])
    assert "manage.py import_mbox" in mbox["instructions"]


def test_one_provider_and_an_unknown_one(api):
    assert body(api.get("/api/v1/providers/imap/"))["connect"] == "credentials"
    missing = api.get("/api/v1/providers/pigeon/")
    assert missing.status_code == 404 and body(missing)["error"]["code"] == "not_found"


def test_providers_need_a_sign_in():
    from rest_framework.test import APIClient

    assert APIClient().get("/api/v1/providers/").status_code == 401


def test_authorize_is_for_oauth_providers_only(api):
    for key in ("imap", "mbox"):
        response = api.post(f"/api/v1/providers/{key}/authorize/")
        assert response.status_code == 400
        assert "not connected by signing in" in body(response)["error"]["message"]


def test_a_new_credentials_provider_is_listed_and_connected_by_the_same_views(api, more_providers, user):
    listed = {p["key"]: p for p in body(api.get("/api/v1/providers/"))}["keyed"]
    assert (listed["connect"], listed["capabilities"]) == ("credentials", ["sms"])
    assert [(f["section"], f["name"]) for f in listed["fields"]] == [
        ("config", "region"), ("config", "number"), ("credentials", "api_key")]

    refused = api.post("/api/v1/connectors/", {"provider": "keyed", "config": {"number": "+15550100"},
                                              "credentials": {"api_key": "bad-key"}}, format="json")
    assert refused.status_code == 400 and body(refused)["error"]["code"] == "login_failed"
    assert "refused the API key" in body(refused)["error"]["message"]
    assert not ProviderAccount.objects.exists()

    created = api.post("/api/v1/connectors/", {"provider": "keyed", "config": {"number": "+15550100"},
                                              "credentials": {"api_key": "good-key"}}, format="json")
    assert created.status_code == 201, body(created)
    data = body(created)
    assert (data["provider"], data["display_name"], data["address"], data["config"]) == (
        "keyed", "Texts to +15550100", "+15550100", {"region": "eu", "number": "+15550100"})
    assert ProviderAccount.objects.get().credentials == {"api_key": "good-key"}
    assert "good-key" not in created.content.decode()


def test_a_new_oauth_provider_starts_its_sign_in_through_the_same_views(api, more_providers, user):
    listed = {p["key"]: p for p in body(api.get("/api/v1/providers/"))}["signin"]
    assert (listed["connect"], listed["configured"], listed["fields"]) == ("oauth", True, [])
    started = api.post("/api/v1/providers/signin/authorize/")
    assert started.status_code == 200
    assert body(started) == {"authorize_url": f"https://login.example.com/authorize?client_id=abc&state=for-{user.pk}"}
    # The connectors endpoint starts it the same way: the provider alone answers the consent page.
    response = api.post("/api/v1/connectors/", {"provider": "signin"}, format="json")
    assert response.status_code == 200
    assert body(response) == {"authorize_url": f"https://login.example.com/authorize?client_id=abc&state=for-{user.pk}"}
    assert not ProviderAccount.objects.exists()


def test_an_oauth_provider_without_app_credentials_shows_unavailable(api, more_providers):
    FakeOAuth.configured = False
    listed = {p["key"]: p for p in body(api.get("/api/v1/providers/"))}["signin"]
    assert listed["configured"] is False
    response = api.post("/api/v1/providers/signin/authorize/")
    assert response.status_code == 400 and "not configured" in body(response)["error"]["message"]
    response = api.post("/api/v1/connectors/", {"provider": "signin"}, format="json")
    assert response.status_code == 400 and "not configured" in body(response)["error"]["message"]


def test_a_provider_that_declares_no_way_to_connect(api, more_providers):
    listed = {p["key"]: p for p in body(api.get("/api/v1/providers/"))}["bare"]
    assert listed["connect"] == "none"
    response = api.post("/api/v1/connectors/", {"provider": "bare", "config": {}, "credentials": {}}, format="json")
    assert response.status_code == 400 and "cannot be connected" in body(response)["error"]["message"]


def test_the_schema_describes_each_credentials_providers_request(api):
    import yaml

    schema = yaml.safe_load(api.get("/api/schema/").content)
    components = schema["components"]["schemas"]
    assert components["ConnectorCreate"]["discriminator"]["mapping"] == {
        "imap": "#/components/schemas/ImapConnectorCreate", "gmail": "#/components/schemas/GmailConnectorAuthorize",
        "outlook": "#/components/schemas/OutlookConnectorAuthorize",
        "twilio": "#/components/schemas/TwilioConnectorCreate"}
    assert set(components["GmailConnectorAuthorize"]["properties"]) == {"provider"}  # an OAuth one: nothing else
    imap = components["ImapConnectorCreate"]["properties"]
    assert imap["credentials"]["allOf"][0]["$ref"] == "#/components/schemas/ImapCredentials"
    assert components["ImapCredentials"]["properties"]["password"]["writeOnly"] is True
    create = schema["paths"]["/api/v1/connectors/"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ConnectorCreate")
    assert set(create["responses"]) == {"200", "201", "400", "401"}  # 200: an OAuth provider's authorize_url; 401: every operation documents it (crmext.api_schema)
    sync = schema["paths"]["/api/v1/connectors/{id}/sync/"]["post"]
    assert set(sync["responses"]) == {"202", "400", "401", "404", "409"}
