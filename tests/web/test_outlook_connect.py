"""Connecting Outlook through the OAuth views, end to end: Django's test client on our side, the fake
identity platform and Graph (tests/fakes/graph.py, over TLS) on the other, the real msal in between."""
from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from integrations.models import OAuthState, ProviderAccount, SyncRun
from tests.fakes.graph import CLIENT_SECRET, FakeGraph
from tests.web.oauth_signin import SignIn

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://crm.example.test"
CALLBACK = "/connections/oauth/outlook/callback/"
EMAIL = "alice@contoso.example"


@pytest.fixture(autouse=True)
def microsoft(graph_fake: FakeGraph, settings) -> FakeGraph:
    settings.APP_PUBLIC_URL = PUBLIC_URL
    graph_fake.consent_as(EMAIL)
    return graph_fake


SIGN_IN = SignIn("outlook", PUBLIC_URL)
start, consent, callback, connect = SIGN_IN.start, SIGN_IN.consent, SIGN_IN.callback, SIGN_IN.connect


def assert_refused(response: Any, code: str, words: str) -> None:
    assert response.status_code == 400
    page = response.content.decode()
    assert f'data-oauth-error="{code}"' in page, page
    assert words in page
    assert not ProviderAccount.objects.exists()


def test_connect_outlook_end_to_end(signed_in, user, microsoft):
    authorize_url = start(signed_in)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize_url).query))
    assert authorize_url.startswith(microsoft.url + "/fake-tenant/oauth2/v2.0/authorize?")
    assert set(query["scope"].split()) == {"Mail.Read", "User.Read", "offline_access", "openid", "profile"}
    assert query["code_challenge_method"] == "S256" and query["nonce"]
    assert query["redirect_uri"] == PUBLIC_URL + CALLBACK
    record = OAuthState.objects.get()
    assert (record.state, record.user, record.provider) == (query["state"], user, "outlook")
    flow = json.loads(record.code_verifier)  # msal's flow, kept on the server
    assert flow["code_verifier"] not in authorize_url and flow["nonce"] not in authorize_url

    response = callback(signed_in, consent(authorize_url))
    assert response.status_code == 302 and response["Location"] == "/connections/"
    account = ProviderAccount.objects.get()
    assert (account.owner, account.provider, account.external_address, account.config, account.status) == (
        user, "outlook", EMAIL, {"email": EMAIL}, "connected")
    assert set(account.credentials) == {"token_cache", "home_account_id", "scopes"}
    assert account.credentials["scopes"] == ["Mail.Read", "User.Read"]  # read-only: no write-back asked
    cache = json.loads(account.credentials["token_cache"])
    [refresh_token] = [entry["secret"] for entry in cache["RefreshToken"].values()]
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM integrations_provideraccount WHERE id = %s", [account.pk])
        column = cursor.fetchone()[0]
    assert refresh_token not in column and "token_cache" not in column  # encrypted at rest
    assert SyncRun.objects.get(account=account).status == SyncRun.Status.QUEUED
    page = signed_in.get("/connections/").content.decode()
    assert f"Connected {EMAIL}" in page and refresh_token not in page


def test_the_connected_account_syncs(signed_in, microsoft):
    microsoft.mailbox(EMAIL).add(subject="Welcome")
    connect(signed_in)
    from integrations.sync import sync_account

    account = ProviderAccount.objects.get()
    SyncRun.objects.all().delete()
    assert sync_account(account.pk).status == "succeeded"
    assert account.communications.count() == 1


def test_reconnect_lifts_reauth_required_and_reuses_the_account(signed_in, microsoft):
    connect(signed_in)
    account = ProviderAccount.objects.get()
    old = account.credentials["token_cache"]
    ProviderAccount.objects.filter(pk=account.pk).update(
        status="reauth_required", next_sync_at=None, last_error="Reconnect Outlook: access was revoked or expired.")
    SyncRun.objects.all().delete()
    microsoft.revoke(EMAIL)
    authorize_url = start(signed_in, f"/connections/{account.pk}/reconnect/")
    assert dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize_url).query))["login_hint"] == EMAIL
    assert callback(signed_in, consent(authorize_url)).status_code == 302
    account.refresh_from_db()
    assert ProviderAccount.objects.count() == 1
    assert (account.status, account.last_error) == ("connected", "")
    assert account.credentials["token_cache"] != old


def scopes_asked(authorize_url: str) -> list[str]:
    """The Graph scopes a sign-in asks for (msal's OpenID ones left out), sorted."""
    scope = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize_url).query))["scope"]
    return sorted(set(scope.split()) - {"offline_access", "openid", "profile"})


READ_ONLY = ["Mail.Read", "User.Read"]
READ_WRITE = ["Mail.Read", "Mail.ReadWrite", "User.Read"]


def test_write_back_makes_the_reconnect_ask_for_mail_readwrite_and_only_then(signed_in, microsoft):
    from automation.models import AccountAutomation

    connect(signed_in)
    account = ProviderAccount.objects.get()
    assert scopes_asked(start(signed_in, f"/connections/{account.pk}/reconnect/")) == READ_ONLY
    automation = AccountAutomation.objects.create(account=account, write_back=True)
    assert scopes_asked(start(signed_in, "/connections/connect/outlook/")) == READ_ONLY  # a new account
    authorize_url = start(signed_in, f"/connections/{account.pk}/reconnect/")
    assert scopes_asked(authorize_url) == READ_WRITE
    response = callback(signed_in, consent(authorize_url))
    assert response.status_code == 302
    account.refresh_from_db()
    assert sorted(account.credentials["scopes"]) == READ_WRITE
    page = signed_in.get("/connections/").content.decode()
    assert "read-only access" not in page
    # A refresh keeps what was granted: the new access token can still mark messages read.
    message_id = microsoft.mailbox(EMAIL).add(subject="Task")
    microsoft.expire_access_tokens(EMAIL)
    from integrations.providers.registry import provider_class

    with provider_class("outlook")(account) as provider:
        provider.mark_read([f"Inbox:{message_id}"])
    assert microsoft.mailbox(EMAIL).messages[message_id].fields["isRead"] is True
    # Write-back turned off again: the next sign-in is read-only, and so is what it stores.
    automation.write_back = False
    automation.save()
    callback(signed_in, consent(start(signed_in, f"/connections/{account.pk}/reconnect/")))
    account.refresh_from_db()
    assert account.credentials["scopes"] == READ_ONLY


def test_readwrite_unticked_on_the_consent_page_connects_read_only_and_says_so(signed_in, microsoft):
    from automation.models import AccountAutomation

    connect(signed_in)
    account = ProviderAccount.objects.get()
    AccountAutomation.objects.create(account=account, write_back=True)
    microsoft.untick_on_consent("Mail.ReadWrite")
    response = callback(signed_in, consent(start(signed_in, f"/connections/{account.pk}/reconnect/")))
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.status == "connected" and account.credentials["scopes"] == READ_ONLY
    page = signed_in.get("/connections/").content.decode()
    assert f"Connected {EMAIL}" in page
    assert "was connected with read-only access" in page and "allow Outlook to read and write your mail" in page


def test_connect_again_reuses_the_account_of_the_same_address(signed_in):
    connect(signed_in)
    connect(signed_in)
    assert ProviderAccount.objects.count() == 1


def test_denied_consent(signed_in, microsoft):
    microsoft.deny_consent()
    location = consent(start(signed_in))
    assert "error=access_denied" in location
    assert_refused(callback(signed_in, location), "access_denied", "You did not allow access to Outlook")


def test_a_bad_state(signed_in):
    location = consent(start(signed_in))
    split = urllib.parse.urlsplit(location)
    query = dict(urllib.parse.parse_qsl(split.query))
    assert_refused(signed_in.get(split.path, {**query, "state": "forged"}), "bad_state", "unknown here")
    assert_refused(signed_in.get(split.path, {k: v for k, v in query.items() if k != "state"}), "bad_state",
                   "without its state")
    assert signed_in.get(split.path, query).status_code == 302  # the real one still works, once
    ProviderAccount.objects.all().delete()
    assert_refused(signed_in.get(split.path, query), "bad_state", "already used")


def test_a_state_of_another_user_is_refused(signed_in, other_user):
    location = consent(start(signed_in))
    mallory = Client()
    mallory.force_login(other_user)
    assert_refused(callback(mallory, location), "bad_state", "started by another user")


def test_a_replayed_code_is_refused_and_nothing_is_stored(signed_in):
    first = consent(start(signed_in))
    used_code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(first).query))["code"]
    callback(signed_in, first)
    ProviderAccount.objects.all().delete()
    second = consent(start(signed_in))
    split = urllib.parse.urlsplit(second)
    response = signed_in.get(split.path, {**dict(urllib.parse.parse_qsl(split.query)), "code": used_code})
    assert_refused(response, "exchange_failed", "already used, or it expired")
    assert used_code not in response.content.decode()


def test_a_token_endpoint_error(signed_in, settings, caplog):
    location = consent(start(signed_in))
    settings.MS_CLIENT_SECRET = "a-wrong-secret"  # the token endpoint answers invalid_client
    response = callback(signed_in, location)
    assert_refused(response, "token_endpoint", "Ask an administrator")
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))["code"]
    for secret in (code, "a-wrong-secret", CLIENT_SECRET):
        assert secret not in response.content.decode() and secret not in caplog.text


def test_outlook_shows_unavailable_without_app_credentials(signed_in, user, settings):
    settings.MS_CLIENT_SECRET = ""
    response = signed_in.post("/connections/connect/outlook/", follow=True)
    assert "Outlook / Microsoft 365 is unavailable" in response.content.decode()
    assert not OAuthState.objects.exists()
    api = APIClient()
    api.force_authenticate(user)
    providers = {p["key"]: p for p in json.loads(api.get("/api/v1/providers/").content)}
    assert (providers["outlook"]["connect"], providers["outlook"]["configured"]) == ("oauth", False)


def test_the_api_answers_the_authorize_url_and_the_browser_finishes(signed_in, user, microsoft):
    api = APIClient()
    api.force_authenticate(user)
    response = api.post("/api/v1/connectors/", {"provider": "outlook"}, format="json")
    assert response.status_code == 200, response.content
    authorize_url = json.loads(response.content)["authorize_url"]
    assert authorize_url.startswith(microsoft.url + "/fake-tenant/oauth2/v2.0/authorize?")
    # Opened in a browser signed in here (another session than the API's): the flow is on the server.
    assert callback(signed_in, consent(authorize_url)).status_code == 302
    assert ProviderAccount.objects.get().owner == user


def test_connect_subscribes_when_push_is_on(signed_in, microsoft, settings):
    settings.OUTLOOK_PUSH = True
    connect(signed_in)
    account = ProviderAccount.objects.get()
    assert account.push_state["subscription_id"] in microsoft.subscriptions
    assert account.credentials["client_state"]
