"""Connecting Gmail through the OAuth views, end to end: Django's test client on our side, the
fake Google (tests/fakes/gmail.py) on the other, the real google-auth-oauthlib in between."""
from __future__ import annotations

import datetime as dt
import json
import urllib.parse
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from integrations.models import OAuthState, ProviderAccount, SyncRun
from integrations.providers.gmail.connect import GMAIL_MODIFY, GMAIL_READONLY
from tests.fakes.gmail import FakeGmail
from tests.web.oauth_signin import SignIn

pytestmark = pytest.mark.django_db

PUBLIC_URL = "https://crm.example.test"
CALLBACK = "/connections/oauth/gmail/callback/"


@pytest.fixture(autouse=True)
def google(gmail_fake: FakeGmail, settings, monkeypatch) -> FakeGmail:
    settings.APP_PUBLIC_URL = PUBLIC_URL
    settings.GMAIL_PUBSUB_TOPIC = ""
    # The fake speaks plain HTTP on loopback; oauthlib refuses that unless told (production is https).
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    gmail_fake.consent_as("alice.work@example.com")
    return gmail_fake


SIGN_IN = SignIn("gmail", PUBLIC_URL)
start, consent, callback, connect = SIGN_IN.start, SIGN_IN.consent, SIGN_IN.callback, SIGN_IN.connect


def stored_credentials_column(account: ProviderAccount) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM integrations_provideraccount WHERE id = %s", [account.pk])
        return cursor.fetchone()[0]


def assert_refused(response: Any, code: str, words: str) -> None:
    assert response.status_code == 400
    page = response.content.decode()
    assert f'data-oauth-error="{code}"' in page, page
    assert words in page
    assert "was not connected" in page
    assert not ProviderAccount.objects.exists()


# --- connecting -----------------------------------------------------------------------------

def test_connect_gmail_end_to_end(signed_in, user, google):
    authorize_url = start(signed_in)
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize_url).query))
    assert authorize_url.startswith(google.url + "/o/oauth2/auth?")
    assert query["scope"] == GMAIL_READONLY  # read-only, nothing else
    assert (query["access_type"], query["prompt"], query["response_type"]) == ("offline", "consent", "code")
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["redirect_uri"] == PUBLIC_URL + CALLBACK
    record = OAuthState.objects.get()
    assert (record.state, record.user, record.provider, record.used_at) == (query["state"], user, "gmail", None)
    assert record.code_verifier not in authorize_url  # only its hash travels

    response = callback(signed_in, consent(authorize_url))
    assert response.status_code == 302 and response["Location"] == "/connections/"
    account = ProviderAccount.objects.get()
    assert (account.owner, account.provider, account.external_address, account.config, account.status) == (
        user, "gmail", "alice.work@example.com", {"email": "alice.work@example.com"}, "connected")
    stored = account.credentials
    assert stored["kind"] == "oauth" and stored["scopes"] == [GMAIL_READONLY]
    assert stored["refresh_token"].startswith("1//fake-") and stored["access_token"].startswith("ya29.fake-")
    assert dt.datetime.fromisoformat(stored["expiry"]) > timezone.now()
    column = stored_credentials_column(account)  # encrypted at rest
    assert stored["refresh_token"] not in column and stored["access_token"] not in column and "oauth" not in column
    run = SyncRun.objects.get(account=account)
    assert run.status == SyncRun.Status.QUEUED  # the first sync (the backfill) is queued
    assert OAuthState.objects.get().used_at is not None
    page = signed_in.get("/connections/").content.decode()
    assert "Connected alice.work@example.com" in page
    for secret in (stored["refresh_token"], stored["access_token"], record.code_verifier):
        assert secret not in page


def test_the_callback_replayed_is_refused(signed_in, google):
    location = consent(start(signed_in))
    assert callback(signed_in, location).status_code == 302
    ProviderAccount.objects.all().delete()
    assert_refused(callback(signed_in, location), "bad_state", "already used")


def test_a_replayed_code_is_refused_by_google_and_nothing_is_stored(signed_in, google):
    first = consent(start(signed_in))
    used_code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(first).query))["code"]
    assert callback(signed_in, first).status_code == 302
    ProviderAccount.objects.all().delete()
    # A fresh sign-in whose callback carries the code already exchanged.
    second = consent(start(signed_in))
    split = urllib.parse.urlsplit(second)
    query = {**dict(urllib.parse.parse_qsl(split.query)), "code": used_code}
    response = signed_in.get(split.path, query)
    assert_refused(response, "exchange_failed", "already used, or it expired")
    assert used_code not in response.content.decode()


def test_reconnect_lifts_reauth_required_and_reuses_the_account(signed_in, user, google):
    connect(signed_in)
    account = ProviderAccount.objects.get()
    old = account.credentials
    ProviderAccount.objects.filter(pk=account.pk).update(
        status="reauth_required", next_sync_at=None, last_error="Reconnect Gmail: access was revoked or expired.")
    SyncRun.objects.all().delete()
    google.revoke("alice.work@example.com")

    authorize_url = start(signed_in, f"/connections/{account.pk}/reconnect/")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize_url).query))
    assert query["login_hint"] == "alice.work@example.com"
    assert OAuthState.objects.get(state=query["state"]).account == account
    response = callback(signed_in, consent(authorize_url))
    assert response.status_code == 302
    account.refresh_from_db()
    assert ProviderAccount.objects.count() == 1
    assert (account.status, account.last_error, account.next_sync_at is not None) == ("connected", "", True)
    assert account.credentials["refresh_token"] != old["refresh_token"]
    assert SyncRun.objects.filter(account=account, status="queued").exists()


def scopes_asked(authorize_url: str) -> list[str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize_url).query))["scope"].split()


def test_write_back_makes_the_reconnect_ask_for_gmail_modify_and_only_then(signed_in, google):
    from automation.models import AccountAutomation

    connect(signed_in)
    account = ProviderAccount.objects.get()
    assert scopes_asked(start(signed_in, f"/connections/{account.pk}/reconnect/")) == [GMAIL_READONLY]
    automation = AccountAutomation.objects.create(account=account, write_back=True)
    assert scopes_asked(start(signed_in, "/connections/connect/gmail/")) == [GMAIL_READONLY]  # a new account
    authorize_url = start(signed_in, f"/connections/{account.pk}/reconnect/")
    assert scopes_asked(authorize_url) == [GMAIL_READONLY, GMAIL_MODIFY]
    response = callback(signed_in, consent(authorize_url))
    assert response.status_code == 302
    account.refresh_from_db()
    assert sorted(account.credentials["scopes"]) == sorted([GMAIL_READONLY, GMAIL_MODIFY])
    page = signed_in.get("/connections/").content.decode()
    assert "read-only access" not in page
    # Write-back turned off again: the next sign-in is read-only, and so is what it stores.
    automation.write_back = False
    automation.save()
    callback(signed_in, consent(start(signed_in, f"/connections/{account.pk}/reconnect/")))
    account.refresh_from_db()
    assert account.credentials["scopes"] == [GMAIL_READONLY]


def test_modify_unticked_on_the_consent_page_connects_read_only_and_says_so(signed_in, google):
    from automation.models import AccountAutomation

    connect(signed_in)
    account = ProviderAccount.objects.get()
    AccountAutomation.objects.create(account=account, write_back=True)
    google.untick_on_consent(GMAIL_MODIFY)
    response = callback(signed_in, consent(start(signed_in, f"/connections/{account.pk}/reconnect/")))
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.status == "connected" and account.credentials["scopes"] == [GMAIL_READONLY]
    page = signed_in.get("/connections/").content.decode()
    assert "Connected alice.work@example.com" in page
    assert "was connected with read-only access" in page and "allow Gmail to modify your messages" in page


def test_connect_again_reuses_the_account_of_the_same_address(signed_in, google):
    connect(signed_in)
    connect(signed_in)
    assert ProviderAccount.objects.count() == 1


def test_reconnecting_as_another_google_account_changes_nothing(signed_in, google):
    connect(signed_in)
    account = ProviderAccount.objects.get()
    before = account.credentials
    google.consent_as("someone.else@example.com")
    response = callback(signed_in, consent(start(signed_in, f"/connections/{account.pk}/reconnect/")))
    assert response.status_code == 400
    assert 'data-oauth-error="wrong_account"' in response.content.decode()
    account.refresh_from_db()
    assert account.credentials == before and ProviderAccount.objects.count() == 1


def test_another_user_is_a_separate_account(signed_in, other_user, google):
    connect(signed_in)
    bob = Client()
    bob.force_login(other_user)
    connect(bob)
    assert sorted(ProviderAccount.objects.values_list("owner__username", flat=True)) == ["alice", "bob"]


# --- refusals: a clear page, nothing stored ---------------------------------------------------------

def test_denied_consent(signed_in, google):
    google.deny_consent()
    location = consent(start(signed_in))
    assert "error=access_denied" in location
    assert_refused(callback(signed_in, location), "access_denied", "You did not allow access to Gmail")
    assert OAuthState.objects.get().used_at is not None  # that sign-in is over


def test_a_missing_or_forged_state(signed_in, google):
    location = consent(start(signed_in))
    split = urllib.parse.urlsplit(location)
    query = dict(urllib.parse.parse_qsl(split.query))
    without = {k: v for k, v in query.items() if k != "state"}
    assert_refused(signed_in.get(split.path, without), "bad_state", "without its state")
    assert_refused(signed_in.get(split.path, {**query, "state": "forged"}), "bad_state", "unknown here")
    # Neither refusal used the real sign-in up: it still works.
    assert signed_in.get(split.path, query).status_code == 302


def test_a_state_started_by_another_user_is_refused(signed_in, other_user, google):
    location = consent(start(signed_in))
    mallory = Client()
    mallory.force_login(other_user)
    assert_refused(callback(mallory, location), "bad_state", "started by another user")


def test_an_expired_state(signed_in, google):
    location = consent(start(signed_in))
    OAuthState.objects.update(created_at=timezone.now() - dt.timedelta(minutes=11))
    assert_refused(callback(signed_in, location), "bad_state", "expired")


def test_a_state_of_another_provider_is_refused(signed_in, user, google):
    from integrations import oauth

    state, _verifier = oauth.begin(user, "outlook")
    location = consent(start(signed_in))
    split = urllib.parse.urlsplit(location)
    query = {**dict(urllib.parse.parse_qsl(split.query)), "state": state}
    assert_refused(signed_in.get(split.path, query), "bad_state", "unknown here")


@pytest.mark.parametrize("status", [500, 503, 401])
def test_a_token_endpoint_error(signed_in, google, status, caplog):
    location = consent(start(signed_in))
    google.token_endpoint_failure = status
    response = callback(signed_in, location)
    code = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))["code"]
    assert_refused(response, "token_endpoint", "Google")
    assert code not in response.content.decode() and code not in caplog.text
    assert google.client_secret not in response.content.decode() and google.client_secret not in caplog.text


def test_the_callback_needs_a_sign_in(client, google):
    response = client.get(CALLBACK, {"state": "x", "code": "y"})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_the_sign_in_starts_only_from_a_post(signed_in, google):
    page = signed_in.get("/connections/connect/gmail/")
    assert page.status_code == 200 and b"Sign in with Gmail" in page.content
    assert not OAuthState.objects.exists()


# --- the redirect URI, configuration, the API --------------------------------------------------------

def test_the_redirect_uri_comes_from_app_public_url_not_the_host_header(signed_in, google, settings):
    settings.ALLOWED_HOSTS = ["*"]
    authorize_url = start(signed_in, HTTP_HOST="evil.example.net", HTTP_X_FORWARDED_HOST="evil.example.net")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize_url).query))
    assert query["redirect_uri"] == PUBLIC_URL + CALLBACK
    assert "evil" not in authorize_url


def test_gmail_shows_unavailable_without_a_client_id(signed_in, user, google, settings):
    settings.GOOGLE_CLIENT_ID = ""
    page = signed_in.get("/connections/").content.decode()
    assert "Gmail" in page and "unavailable" in page.lower()
    response = signed_in.post("/connections/connect/gmail/", follow=True)
    assert "Gmail is unavailable" in response.content.decode()
    assert not OAuthState.objects.exists()
    api = APIClient()
    api.force_authenticate(user)
    refused = api.post("/api/v1/connectors/", {"provider": "gmail"}, format="json")
    assert refused.status_code == 400 and "not configured" in json.loads(refused.content)["error"]["message"]
    providers = {p["key"]: p for p in json.loads(api.get("/api/v1/providers/").content)}
    assert (providers["gmail"]["connect"], providers["gmail"]["configured"]) == ("oauth", False)


def test_the_api_answers_the_authorize_url_and_the_browser_finishes(signed_in, user, google):
    api = APIClient()
    api.force_authenticate(user)
    response = api.post("/api/v1/connectors/", {"provider": "gmail"}, format="json")
    assert response.status_code == 200, response.content
    authorize_url = json.loads(response.content)["authorize_url"]
    assert authorize_url.startswith(google.url + "/o/oauth2/auth?")
    assert not ProviderAccount.objects.exists()
    # The user opens it in a browser signed in here as the same user.
    assert callback(signed_in, consent(authorize_url)).status_code == 302
    assert ProviderAccount.objects.get().owner == user


def test_connect_starts_push_when_a_topic_is_configured(signed_in, google, settings):
    settings.GMAIL_PUBSUB_TOPIC = "projects/crm/topics/gmail"
    connect(signed_in)
    account = ProviderAccount.objects.get()
    assert google.mailbox("alice.work@example.com").watch_requests == [{"topicName": "projects/crm/topics/gmail"}]
    assert account.push_expires_at > timezone.now() + dt.timedelta(days=6)
    assert account.push_state["topic"] == "projects/crm/topics/gmail"


def test_a_failed_watch_never_fails_the_connect(signed_in, google, settings, caplog):
    settings.GMAIL_PUBSUB_TOPIC = "projects/crm/topics/gmail"
    google.fail("POST", r"/watch$", 403, reason="forbidden", times=5)
    response = connect(signed_in)
    assert response.status_code == 302
    account = ProviderAccount.objects.get()
    assert account.push_expires_at is None and account.status == "connected"
    assert "Could not start Gmail push" in caplog.text
