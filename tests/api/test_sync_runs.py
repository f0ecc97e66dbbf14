"""Sync control over the API: "sync now" (202 / 409 / 400), a connector's status, unlocking a stuck
sync (staff), and the sync runs lists, scoped like the connectors."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from integrations.models import ProviderAccount, SyncRun
from integrations.providers.base import Capability
from integrations.providers.mbox import MboxProvider
from tests.api.test_connectors import api, body, other_api, staff, staff_api  # noqa: F401  (fixtures)

pytestmark = pytest.mark.django_db


def sync(client: APIClient, account: ProviderAccount, **data: object):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/connectors/{account.pk}/sync/", data, format="json")


# --- sync now -------------------------------------------------------------------------------------------

def test_sync_now_queues_a_run(api, account, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = sync(api, account)
    assert response.status_code == 202
    run = SyncRun.objects.get()
    assert body(response) == {**body(response), "id": run.pk, "connector": account.pk, "kind": "delta",
                              "status": "queued"}
    assert len(callbacks) == 1  # the task is enqueued once the run is committed


def test_a_full_sync_can_be_asked_for(api, account):
    assert body(sync(api, account, kind="full"))["kind"] == "full_resync"


def test_a_second_request_while_one_is_queued_is_a_409_naming_it(api, account):
    first = body(sync(api, account))
    response = sync(api, account, kind="full")
    assert response.status_code == 409
    error = body(response)["error"]
    assert error["code"] == "sync_in_progress"
    assert f"run {first['id']}" in error["message"]
    assert error["run"]["id"] == first["id"] and error["run"]["status"] == "queued"
    assert SyncRun.objects.count() == 1


def test_a_running_run_is_named_too(api, account):
    running = SyncRun.objects.create(account=account, kind="delta", status="running")
    response = sync(api, account)
    assert response.status_code == 409 and body(response)["error"]["run"]["id"] == running.pk


@pytest.mark.parametrize("status", ["disabled", "reauth_required"])
def test_an_account_that_cannot_sync_is_a_400_with_the_reason(api, account, status):
    ProviderAccount.objects.filter(pk=account.pk).update(status=status, last_error="The password was refused.")
    response = sync(api, account)
    assert response.status_code == 400 and body(response)["error"]["code"] == "not_syncable"
    assert "cannot sync" in body(response)["error"]["message"]
    assert "The password was refused." in body(response)["error"]["message"]
    assert not SyncRun.objects.exists()


def test_bad_kinds_and_ranges_are_400s(api, account):
    cases = [
        ({"kind": "weekly"}, "kind"),
        ({"kind": "historical", "since": "2026-01-01"}, "needs both since and until"),
        ({"kind": "historical", "since": "2026-02-01", "until": "2026-01-01"}, "since before until"),
        ({"kind": "delta", "since": "2026-01-01"}, "historical syncs only"),
        ({"kind": "historical", "since": "2026-01-01", "until": "2026-02-01"}, "cannot fetch a date range"),
        ({"kind": "historical", "since": "January", "until": "2026-02-01"}, "since"),
    ]
    for data, reason in cases:
        response = sync(api, account, **data)
        assert response.status_code == 400, data
        error = body(response)["error"]
        assert reason in error["message"] or reason in error.get("fields", {}), (data, error)
    assert not SyncRun.objects.exists()


def test_a_historical_sync_of_a_provider_that_fetches_ranges(api, account, monkeypatch):
    monkeypatch.setattr(MboxProvider, "capabilities", frozenset({Capability.EMAIL, Capability.DATE_RANGE}))
    response = sync(api, account, kind="historical", since="2025-01-01", until="2025-07-01")
    assert response.status_code == 202, body(response)
    data = body(response)
    assert (data["kind"], data["since"], data["until"]) == ("historical", "2025-01-01T00:00:00Z",
                                                            "2025-07-01T00:00:00Z")


def test_staff_can_sync_anyones_connector(staff_api, other_account):
    assert sync(staff_api, other_account).status_code == 202


# --- status -----------------------------------------------------------------------------------------------

def test_status_reports_health_age_and_progress(api, account):
    synced = timezone.now() - dt.timedelta(minutes=10)
    ProviderAccount.objects.filter(pk=account.pk).update(status="syncing", last_synced_at=synced,
                                                         last_error="Slow server")
    run = SyncRun.objects.create(account=account, kind="delta", status="running", progress_done=40,
                                 progress_total=100, fetched=40, created=12)
    data = body(api.get(f"/api/v1/connectors/{account.pk}/status/"))
    assert (data["id"], data["health"], data["last_error"]) == (account.pk, "syncing", "Slow server")
    assert dt.datetime.fromisoformat(data["last_success"]) == synced
    assert 599 <= data["cursor_age_seconds"] <= 660
    assert data["next_run"] is not None
    current = data["current_run"]
    assert (current["id"], current["progress_done"], current["progress_total"], current["fetched"],
            current["created"]) == (run.pk, 40, 100, 40, 12)


def test_status_of_a_never_synced_idle_connector(api, account):
    data = body(api.get(f"/api/v1/connectors/{account.pk}/status/"))
    assert (data["health"], data["last_success"], data["cursor_age_seconds"], data["current_run"]) == (
        "connected", None, None, None)


def test_a_running_run_shows_before_a_queued_one(api, account):
    running = SyncRun.objects.create(account=account, kind="historical", status="running")
    SyncRun.objects.create(account=account, kind="delta", status="queued")
    assert body(api.get(f"/api/v1/connectors/{account.pk}/status/"))["current_run"]["id"] == running.pk


# --- unlock -------------------------------------------------------------------------------------------------

@pytest.fixture
def stuck(other_account) -> SyncRun:
    ProviderAccount.objects.filter(pk=other_account.pk).update(
        status="syncing", claim_token="a" * 32, claimed_at=timezone.now() - dt.timedelta(hours=5))
    return SyncRun.objects.create(account=other_account, kind="initial", status="running", claim_token="a" * 32)


def test_staff_unlock_a_stuck_sync(staff_api, other_account, stuck):
    queued = SyncRun.objects.create(account=other_account, kind="delta", status="queued")
    response = staff_api.post(f"/api/v1/connectors/{other_account.pk}/unlock/")
    assert response.status_code == 200
    data = body(response)
    assert (data["abandoned_runs"], data["health"], data["current_run"]["id"]) == (1, "error", queued.pk)
    assert "unlocked by carol" in data["last_error"]
    other_account.refresh_from_db()
    assert (other_account.claim_token, other_account.claimed_at) == ("", None)
    assert other_account.next_sync_at is not None
    stuck.refresh_from_db()
    assert (stuck.status, stuck.error) == ("abandoned", "Stopped: the account was unlocked by carol.")
    assert stuck.finished_at is not None


def test_unlock_is_staff_only_403_for_the_owner_404_for_others(api, other_api, other_account, stuck):
    assert other_api.post(f"/api/v1/connectors/{other_account.pk}/unlock/").status_code == 403
    response = api.post(f"/api/v1/connectors/{other_account.pk}/unlock/")
    assert response.status_code == 404
    other_account.refresh_from_db()
    stuck.refresh_from_db()
    assert other_account.claim_token == "a" * 32 and stuck.status == "running"


def test_unlocking_an_idle_connector_changes_nothing_of_its_health(staff_api, account):
    data = body(staff_api.post(f"/api/v1/connectors/{account.pk}/unlock/"))
    assert (data["abandoned_runs"], data["health"], data["last_error"]) == (0, "connected", "")


# --- sync runs lists ----------------------------------------------------------------------------------------

def make_runs(account: ProviderAccount, count: int) -> list[SyncRun]:
    return [SyncRun.objects.create(account=account, kind="delta", status="succeeded", fetched=n)
            for n in range(count)]


def test_a_connectors_runs_page_newest_first(api, account, other_account):
    runs = make_runs(account, 5)
    make_runs(other_account, 2)
    first = body(api.get(f"/api/v1/connectors/{account.pk}/sync-runs/?page_size=2"))
    assert [r["id"] for r in first["results"]] == [runs[4].pk, runs[3].pk]
    assert first["results"][0] == {**first["results"][0], "connector": account.pk, "kind": "delta",
                                   "status": "succeeded", "fetched": 4, "error": ""}
    second = body(api.get(first["next"]))
    assert [r["id"] for r in second["results"]] == [runs[2].pk, runs[1].pk]


def test_all_runs_are_scoped_to_the_users_connectors(api, other_api, account, other_account):
    mine, theirs = make_runs(account, 2), make_runs(other_account, 1)
    assert {r["id"] for r in body(api.get("/api/v1/sync-runs/"))["results"]} == {r.pk for r in mine}
    assert api.get(f"/api/v1/sync-runs/{theirs[0].pk}/").status_code == 404
    assert api.get(f"/api/v1/sync-runs/{mine[0].pk}/").status_code == 200
    assert body(api.get(f"/api/v1/sync-runs/?connector={other_account.pk}"))["results"] == []
    assert {r["id"] for r in body(other_api.get("/api/v1/sync-runs/"))["results"]} == {theirs[0].pk}


def test_staff_see_all_runs_and_filter_them(staff_api, account, other_account, other_user):
    mine, theirs = make_runs(account, 2), make_runs(other_account, 1)
    failed = SyncRun.objects.create(account=account, kind="full_resync", status="failed", error="Timed out")
    assert len(body(staff_api.get("/api/v1/sync-runs/"))["results"]) == 4
    assert [r["id"] for r in body(staff_api.get(f"/api/v1/sync-runs/?owner={other_user.pk}"))["results"]] == [
        theirs[0].pk]
    assert [r["id"] for r in body(staff_api.get(f"/api/v1/sync-runs/?connector={account.pk}&status=failed"))[
        "results"]] == [failed.pk]
    assert {r["id"] for r in body(staff_api.get(f"/api/v1/sync-runs/?connector={account.pk}"))["results"]} == {
        failed.pk, *(r.pk for r in mine)}
    bad = staff_api.get("/api/v1/sync-runs/?status=late&connector=x")
    assert bad.status_code == 400


def test_runs_of_a_purged_connector_are_gone_with_it(api, account):
    from integrations.accounts import purge_account

    run = make_runs(account, 1)[0]
    purge_account(account.pk)
    assert api.get(f"/api/v1/sync-runs/{run.pk}/").status_code == 404
