"""/api/v1/connectors/: owner scoping, reading without secrets, connecting IMAP with a tested login,
editing, disconnecting (and purging), against the real Dovecot fixture."""
from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test.utils import CaptureQueriesContext
from django.db import connection
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversations.ingest import mark_deleted
from conversations.models import Communication, Conversation
from integrations import accounts
from integrations.models import ProviderAccount, SyncRun
from tests.factories import message

pytestmark = pytest.mark.django_db

STORED_SECRET = "stored-Secret-8c1f"


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def body(response: Any) -> Any:
    return json.loads(response.content) if response.content else None


@pytest.fixture
def api(user) -> APIClient:
    return client_for(user)


@pytest.fixture
def other_api(other_user) -> APIClient:
    return client_for(other_user)


@pytest.fixture
def staff(db):
    return get_user_model().objects.create_user("carol", email="carol@example.com", password="pw-carol-123",
                                                is_staff=True)


@pytest.fixture
def staff_api(staff) -> APIClient:
    return client_for(staff)


def imap_config(imap_user: Any, **changes: Any) -> dict[str, Any]:
    return {"host": imap_user.host, "port": imap_user.port, "security": "none", "username": imap_user.username,
            **changes}


@pytest.fixture
def imap_account(user, imap_user) -> ProviderAccount:
    """Alice's IMAP connector on the test Dovecot, with its real password stored."""
    account = ProviderAccount(owner=user, provider="imap", display_name="Alice mail", config=imap_config(imap_user))
    return accounts.save_credentials(account, {"password": imap_user.password})


def store(account: ProviderAccount, count: int) -> None:
    from conversations.ingest import store_batch

    store_batch(account, [message() for _ in range(count)])


# --- reading and scoping -----------------------------------------------------------------------------------

def test_a_user_lists_only_their_connectors(api, account, other_account):
    response = api.get("/api/v1/connectors/")
    assert response.status_code == 200
    assert [c["id"] for c in body(response)["results"]] == [account.pk]


def test_a_connector_reads_its_fields_counts_and_progress(api, account):
    store(account, 3)
    gone = Communication.objects.filter(account=account).order_by("pk").first()
    mark_deleted(account, [gone.provider_message_id])  # deleted at the provider
    run = SyncRun.objects.create(account=account, kind="delta", status="running", progress_done=5, progress_total=9,
                                 fetched=4, created=2)
    SyncRun.objects.create(account=account, kind="delta", status="succeeded")
    data = body(api.get(f"/api/v1/connectors/{account.pk}/"))
    assert data == {
        "id": account.pk, "owner": account.owner_id, "provider": "mbox", "display_name": "Alice archive",
        "address": "alice@example.org", "config": {}, "status": "connected", "enabled": True, "last_error": "",
        "last_synced_at": None, "next_sync_at": data["next_sync_at"], "sync_interval": account.sync_interval,
        "sharing": "private", "communication_count": 2, "current_run": data["current_run"],
        "created_at": data["created_at"], "updated_at": data["updated_at"],
    }
    progress = {key: data["current_run"][key] for key in
                ["id", "kind", "status", "progress_done", "progress_total", "fetched", "created"]}
    assert progress == {"id": run.pk, "kind": "delta", "status": "running", "progress_done": 5,
                        "progress_total": 9, "fetched": 4, "created": 2}


def test_the_list_costs_the_same_queries_for_many_connectors(api, user):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert api.get("/api/v1/connectors/").status_code == 200
        return len(captured)

    ProviderAccount.objects.create(owner=user, provider="mbox", display_name="one")
    few = queries()
    for n in range(5):
        account = ProviderAccount.objects.create(owner=user, provider="mbox", display_name=f"more {n}")
        SyncRun.objects.create(account=account, kind="delta", status="queued")
    assert queries() == few


def test_another_users_connector_is_a_404_for_every_action(other_api, account):
    base = f"/api/v1/connectors/{account.pk}/"
    attempts = [other_api.get(base), other_api.patch(base, {"display_name": "mine"}, format="json"),
                other_api.delete(base), other_api.get(base + "status/"), other_api.get(base + "sync-runs/"),
                other_api.post(base + "sync/", {"kind": "delta"}, format="json"), other_api.post(base + "unlock/")]
    assert [r.status_code for r in attempts] == [404] * len(attempts)
    assert body(attempts[0])["error"]["code"] == "not_found"
    account.refresh_from_db()
    assert (account.display_name, account.status) == ("Alice archive", "connected")


def test_an_unknown_or_malformed_id_is_a_404(api):
    assert api.get("/api/v1/connectors/999999/").status_code == 404
    assert api.get("/api/v1/connectors/abc/").status_code == 404


def test_staff_see_everyones_connectors_and_filter_by_owner(staff_api, account, other_account, other_user):
    assert {c["id"] for c in body(staff_api.get("/api/v1/connectors/"))["results"]} == {account.pk,
                                                                                        other_account.pk}
    only = body(staff_api.get(f"/api/v1/connectors/?owner={other_user.pk}"))["results"]
    assert [c["id"] for c in only] == [other_account.pk]
    assert staff_api.get(f"/api/v1/connectors/{other_account.pk}/").status_code == 200
    bad = staff_api.get("/api/v1/connectors/?owner=bob")
    assert bad.status_code == 400 and body(bad)["error"]["fields"] == {"owner": ["An id (a whole number)."]}
    assert staff_api.get("/api/v1/connectors/?owner=²").status_code == 400


def test_owner_filter_cannot_widen_a_users_scope(api, other_user, other_account):
    assert body(api.get(f"/api/v1/connectors/?owner={other_user.pk}"))["results"] == []


def test_anonymous_requests_are_refused(account):
    response = APIClient().get("/api/v1/connectors/")
    assert response.status_code == 401 and body(response)["error"]["code"] == "not_authenticated"


# --- connecting (IMAP) ----------------------------------------------------------------------------------------

def test_connecting_imap_tests_the_login_then_saves(api, user, imap_user):
    response = api.post("/api/v1/connectors/", {
        "provider": "imap", "config": imap_config(imap_user), "credentials": {"password": imap_user.password},
        "sharing": "subject",
    }, format="json")
    assert response.status_code == 201, body(response)
    data = body(response)
    account = ProviderAccount.objects.get(pk=data["id"])
    assert account.owner == user and account.credentials == {"password": imap_user.password}
    assert data["config"] == imap_config(imap_user)
    assert data["display_name"] == f"{imap_user.username} on {imap_user.host}"
    assert (data["status"], data["sharing"], data["communication_count"]) == ("connected", "subject", 0)
    assert imap_user.password not in response.content.decode()


def test_a_refused_login_is_a_400_with_the_servers_reason_and_nothing_saved(api, imap_user):
    response = api.post("/api/v1/connectors/", {
        "provider": "imap", "config": imap_config(imap_user), "credentials": {"password": "wrong-Password-77"},
    }, format="json")
    assert response.status_code == 400
    error = body(response)["error"]
    assert error["code"] == "login_failed"
    assert "rejected the login" in error["message"] and "Nothing was saved" in error["message"]
    assert "wrong-Password-77" not in response.content.decode()
    assert not ProviderAccount.objects.exists()


def test_an_unreachable_server_is_a_400_and_nothing_saved(api, imap_user):
    response = api.post("/api/v1/connectors/", {
        "provider": "imap", "config": imap_config(imap_user, port=1), "credentials": {"password": "x-Secret-1"},
    }, format="json")
    assert response.status_code == 400 and body(response)["error"]["code"] == "connection_failed"
    assert not ProviderAccount.objects.exists()


def test_security_none_is_refused_unless_allowed(api, settings):
    settings.ALLOW_INSECURE_IMAP = False
    response = api.post("/api/v1/connectors/", {
        "provider": "imap", "config": {"host": "mail.example.org", "security": "none", "username": "alice"},
        "credentials": {"password": "clear-Text-9"},
    }, format="json")
    assert response.status_code == 400
    assert "clear text" in body(response)["error"]["fields"]["config"]["security"][0]
    assert not ProviderAccount.objects.exists()


def test_create_validates_config_and_credentials(api):
    response = api.post("/api/v1/connectors/", {"provider": "imap", "config": {"port": 0}, "credentials": {}},
                        format="json")
    assert response.status_code == 400
    fields = body(response)["error"]["fields"]
    assert set(fields["config"]) == {"host", "username", "port"}
    assert fields["credentials"] == {"password": ["This field is required."]}


def test_an_unknown_provider_is_a_400(api):
    response = api.post("/api/v1/connectors/", {"provider": "pigeon", "config": {}, "credentials": {}},
                        format="json")
    assert response.status_code == 400 and "provider" in body(response)["error"]["fields"]


def test_mbox_is_connected_by_upload_not_by_this_endpoint(api):
    response = api.post("/api/v1/connectors/", {"provider": "mbox", "config": {"path": "x.mbox"},
                                                "credentials": {}}, format="json")
    assert response.status_code == 400
    assert "uploading the file" in body(response)["error"]["fields"]["provider"][0]
    assert not ProviderAccount.objects.exists()


def test_the_same_mailbox_twice_is_refused(api, imap_account, imap_user):
    response = api.post("/api/v1/connectors/", {
        "provider": "imap", "config": imap_config(imap_user), "credentials": {"password": imap_user.password},
    }, format="json")
    assert response.status_code == 400
    assert f"connector {imap_account.pk}" in body(response)["error"]["message"]
    assert ProviderAccount.objects.count() == 1


def test_add_imap_account_and_the_api_share_the_connect_service(imap_user, user, monkeypatch):
    import io

    from django.core.management import call_command

    monkeypatch.setattr("sys.stdin", io.StringIO(imap_user.password + "\n"))
    calls = []
    real = accounts.connect_account
    monkeypatch.setattr(accounts, "connect_account", lambda *a, **k: calls.append(a) or real(*a, **k))
    monkeypatch.setattr("integrations.management.commands.add_imap_account.connect_account", accounts.connect_account)
    call_command("add_imap_account", "--owner", user.username, "--host", imap_user.host, "--port",
                 str(imap_user.port), "--security", "none", "--username", imap_user.username, "--password-stdin",
                 stdout=io.StringIO(), stderr=io.StringIO())
    assert len(calls) == 1 and ProviderAccount.objects.get().credentials == {"password": imap_user.password}


# --- editing -------------------------------------------------------------------------------------------

def test_patch_changes_the_plain_fields(api, account):
    response = api.patch(f"/api/v1/connectors/{account.pk}/", {
        "display_name": "Old mail", "sync_interval": 900, "sharing": "metadata", "address": "a@example.org",
    }, format="json")
    assert response.status_code == 200, body(response)
    account.refresh_from_db()
    assert (account.display_name, account.sync_interval, account.sharing, account.external_address) == (
        "Old mail", 900, "metadata", "a@example.org")
    assert body(response)["display_name"] == "Old mail"


def test_patch_validates_the_interval_and_sharing(api, account):
    response = api.patch(f"/api/v1/connectors/{account.pk}/", {"sync_interval": 5, "sharing": "all"}, format="json")
    assert response.status_code == 400
    assert set(body(response)["error"]["fields"]) == {"sync_interval", "sharing"}


def test_put_is_not_offered(api, account):
    assert api.put(f"/api/v1/connectors/{account.pk}/", {}, format="json").status_code == 405


def test_disable_then_enable(api, account):
    url = f"/api/v1/connectors/{account.pk}/"
    assert body(api.patch(url, {"enabled": False}, format="json"))["status"] == "disabled"
    account.refresh_from_db()
    assert account.next_sync_at is None and "Disabled by alice" in account.last_error
    data = body(api.patch(url, {"enabled": True}, format="json"))
    assert (data["status"], data["enabled"], data["last_error"]) == ("connected", True, "")


def test_disabling_releases_the_claim_of_a_running_sync(api, account):
    ProviderAccount.objects.filter(pk=account.pk).update(claim_token="t" * 32, claimed_at=timezone.now(),
                                                         status="syncing")
    api.patch(f"/api/v1/connectors/{account.pk}/", {"enabled": False}, format="json")
    account.refresh_from_db()
    # The worker's next write is fenced off by its token: it stops instead of marking the account connected.
    assert (account.status, account.claim_token) == ("disabled", "")


def test_enabling_keeps_reauth_required_until_credentials_come(api, imap_account):
    ProviderAccount.objects.filter(pk=imap_account.pk).update(status="reauth_required", last_error="Bad password")
    data = body(api.patch(f"/api/v1/connectors/{imap_account.pk}/", {"enabled": True}, format="json"))
    assert data["status"] == "reauth_required"


def test_new_credentials_are_tested_and_lift_reauth_required(api, imap_account, imap_user):
    ProviderAccount.objects.filter(pk=imap_account.pk).update(status="reauth_required", last_error="Bad password",
                                                              next_sync_at=None)
    url = f"/api/v1/connectors/{imap_account.pk}/"
    bad = api.patch(url, {"credentials": {"password": "not-It-42"}}, format="json")
    assert bad.status_code == 400 and body(bad)["error"]["code"] == "login_failed"
    imap_account.refresh_from_db()
    assert imap_account.status == "reauth_required"
    good = api.patch(url, {"credentials": {"password": imap_user.password}}, format="json")
    assert good.status_code == 200 and body(good)["status"] == "connected"
    imap_account.refresh_from_db()
    assert imap_account.next_sync_at is not None and imap_account.credentials == {"password": imap_user.password}


def test_a_connection_change_without_credentials_is_refused(api, imap_account, imap_user):
    response = api.patch(f"/api/v1/connectors/{imap_account.pk}/", {"config": {"host": "localhost"}},
                         format="json")
    assert response.status_code == 400
    assert "needs the credentials" in body(response)["error"]["fields"]["credentials"][0]
    imap_account.refresh_from_db()
    # The stored password is kept, and was never sent to the new host.
    assert imap_account.config["host"] == imap_user.host and imap_account.credentials == {
        "password": imap_user.password}


def test_a_connection_change_is_retested_with_the_new_settings(api, imap_account, imap_user):
    url = f"/api/v1/connectors/{imap_account.pk}/"
    failing = api.patch(url, {"config": {"port": 1}, "credentials": {"password": imap_user.password}}, format="json")
    assert failing.status_code == 400 and body(failing)["error"]["code"] == "connection_failed"
    imap_account.refresh_from_db()
    assert imap_account.config["port"] == imap_user.port and imap_account.status == "connected"
    moved = api.patch(url, {"config": {"host": "localhost"}, "credentials": {"password": imap_user.password},
                            "display_name": "Moved"}, format="json")
    assert moved.status_code == 200, body(moved)
    imap_account.refresh_from_db()
    assert (imap_account.config["host"], imap_account.display_name) == ("localhost", "Moved")
    assert imap_account.credentials == {"password": imap_user.password} and imap_account.status == "connected"


def test_non_connection_config_changes_need_no_credentials(api, imap_account):
    response = api.patch(f"/api/v1/connectors/{imap_account.pk}/", {"config": {"folders": ["INBOX"]}},
                         format="json")
    assert response.status_code == 200 and body(response)["config"]["folders"] == ["INBOX"]
    imap_account.refresh_from_db()
    assert imap_account.credentials and imap_account.config["folders"] == ["INBOX"]


def test_unknown_settings_and_upload_providers_config_are_refused(api, imap_account, account):
    unknown = api.patch(f"/api/v1/connectors/{imap_account.pk}/", {"config": {"proxy": "x"}}, format="json")
    assert unknown.status_code == 400
    assert body(unknown)["error"]["fields"] == {"config": {"proxy": ["Unknown setting."]}}
    # An import's file is chosen by uploading it: no API client points it at another file.
    mbox = api.patch(f"/api/v1/connectors/{account.pk}/", {"config": {"path": "/etc/passwd"}}, format="json")
    assert mbox.status_code == 400 and "uploading" in body(mbox)["error"]["fields"]["config"][0]


def test_a_staff_user_cannot_redirect_the_owners_password(staff_api, imap_account, imap_user):
    response = staff_api.patch(f"/api/v1/connectors/{imap_account.pk}/", {"config": {"host": "evil.example"}},
                               format="json")
    assert response.status_code == 400
    imap_account.refresh_from_db()
    assert imap_account.config["host"] == imap_user.host


# --- disconnecting -------------------------------------------------------------------------------------------

def test_delete_erases_the_credentials_and_keeps_the_communications(api, imap_account):
    store(imap_account, 2)
    response = api.delete(f"/api/v1/connectors/{imap_account.pk}/")
    assert response.status_code == 204
    imap_account.refresh_from_db()
    assert imap_account.credentials == {} and imap_account.status == "disabled"
    assert imap_account.next_sync_at is None and "credentials were erased" in imap_account.last_error
    assert Communication.objects.filter(account=imap_account).count() == 2
    data = body(api.get(f"/api/v1/connectors/{imap_account.pk}/"))
    assert (data["status"], data["communication_count"]) == ("disabled", 2)


def test_a_disconnected_connector_needs_credentials_to_be_enabled(api, imap_account, imap_user):
    url = f"/api/v1/connectors/{imap_account.pk}/"
    api.delete(url)
    refused = api.patch(url, {"enabled": True}, format="json")
    assert refused.status_code == 400 and "no credentials" in body(refused)["error"]["message"]
    back = api.patch(url, {"enabled": True, "credentials": {"password": imap_user.password}}, format="json")
    assert back.status_code == 200 and body(back)["status"] == "connected"


def test_delete_with_purge_queues_the_purge(api, account, monkeypatch, django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr(accounts, "async_task", lambda *args, **kwargs: queued.append(args))
    with django_capture_on_commit_callbacks(execute=True):
        response = api.delete(f"/api/v1/connectors/{account.pk}/?purge=true")
    assert response.status_code == 202
    assert queued == [(accounts.PURGE_TASK, account.pk)]
    account.refresh_from_db()
    assert account.status == "disabled" and "being deleted" in account.last_error


def test_the_purge_task_deletes_the_communications_then_the_account(account, other_account, monkeypatch):
    monkeypatch.setattr(accounts, "PURGE_CHUNK", 2)
    shared = message()
    store(account, 4)
    from conversations.ingest import store_batch

    store_batch(account, [shared])
    store_batch(other_account, [shared])  # one conversation, two accounts' copies
    SyncRun.objects.create(account=account, kind="delta", status="succeeded")
    assert accounts.purge_account(account.pk) == 5
    assert not ProviderAccount.objects.filter(pk=account.pk).exists()
    assert not Communication.objects.filter(account_id=account.pk).exists()
    assert not SyncRun.objects.filter(account_id=account.pk).exists()
    kept = Communication.objects.get(account=other_account)
    assert Conversation.objects.get() == kept.conversation  # the others, left empty, are gone
    assert kept.conversation.message_count == 1
    assert accounts.purge_account(account.pk) == 0  # again after a crash: nothing left to do


def test_staff_can_disconnect_anyones_connector(staff_api, other_account):
    assert staff_api.delete(f"/api/v1/connectors/{other_account.pk}/").status_code == 204


# --- no secret in any response --------------------------------------------------------------------------------

def test_the_stored_password_is_in_no_response(api, user, client, imap_account, imap_user):
    accounts.save_credentials(imap_account, {"password": STORED_SECRET})
    SyncRun.objects.create(account=imap_account, kind="delta", status="failed", error="The login failed.")
    base = f"/api/v1/connectors/{imap_account.pk}/"
    responses = [
        api.get("/api/v1/connectors/"), api.get(base), api.get(base + "status/"), api.get(base + "sync-runs/"),
        api.get("/api/v1/sync-runs/"), api.get("/api/v1/providers/"), api.get("/api/v1/providers/imap/"),
        api.patch(base, {"display_name": "x"}, format="json"),
        api.patch(base, {"config": {"host": "localhost"}}, format="json"),  # 400: credentials needed
        api.patch(base, {"credentials": {"password": "wrong-One-1"}}, format="json"),  # 400: login failed
        api.post(base + "unlock/"),  # 403
        api.post(base + "sync/", {"kind": "nonsense"}, format="json"),
        api.get("/api/schema/"),
    ]
    client.force_login(user)
    for path in ["/api/v1/connectors/", base, base + "status/", base + "sync-runs/", "/api/v1/sync-runs/",
                 "/api/v1/providers/"]:
        page = client.get(path + "?format=api")
        assert page.status_code == 200 and b"<html" in page.content
        responses.append(page)
    for response in responses:
        assert STORED_SECRET.encode() not in response.content, response.request["PATH_INFO"]
    assert {r.status_code for r in responses} >= {200, 400, 403}


def test_a_never_synced_connector_has_null_dates_in_its_status_and_the_schema_says_so(api, user):
    # Found by Schemathesis: last_success and next_run were null where the schema said a date-time.
    account = ProviderAccount.objects.create(owner=user, provider="mbox", display_name="new",
                                             status=ProviderAccount.Status.DISABLED, next_sync_at=None)
    status = api.get(f"/api/v1/connectors/{account.pk}/status/").json()
    assert status["last_success"] is None and status["next_run"] is None
    schema = json.loads(APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    properties = schema["components"]["schemas"]["ConnectorStatus"]["properties"]
    assert properties["last_success"]["nullable"] and properties["next_run"]["nullable"]
