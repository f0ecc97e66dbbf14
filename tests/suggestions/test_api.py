"""The suggestions and tasks API: every endpoint, filters, owner scoping (404), decisions, tasks CRUD."""
from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from automation.models import AutomationPreferences, Suggestion, Task
from automation.tasks import suggest_communications
from tests.suggestions.conftest import REQUEST, WEAK_REQUEST, store

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def feed(account, other_account, user, other_user, queued) -> dict[str, Suggestion]:
    """Two pending suggestions of Alice's (one strong, one weak) and one of Bob's."""
    for owner in (user, other_user):
        AutomationPreferences.objects.create(user=owner, auto_approve_threshold=1.01)
    strong, weak = store(account, body_text=REQUEST), store(account, body_text=WEAK_REQUEST)
    theirs = store(other_account, body_text=REQUEST)
    suggest_communications(account.pk, [strong.pk, weak.pk])
    suggest_communications(other_account.pk, [theirs.pk])
    return {"strong": Suggestion.objects.get(communication=strong), "weak": Suggestion.objects.get(communication=weak),
            "theirs": Suggestion.objects.get(communication=theirs)}


def ids(response) -> list[int]:
    return [row["id"] for row in response.json()["results"]]


def test_list_is_owner_scoped_and_filtered(api, feed, account):
    assert sorted(ids(api.get("/api/v1/suggestions/"))) == sorted([feed["strong"].pk, feed["weak"].pk])
    assert ids(api.get("/api/v1/suggestions/?min_confidence=0.8")) == [feed["strong"].pk]
    assert ids(api.get(f"/api/v1/suggestions/?account={account.pk}&status=pending_approval")) != []
    assert ids(api.get("/api/v1/suggestions/?status=dismissed")) == []
    assert api.get("/api/v1/suggestions/?status=nonsense").status_code == 400
    assert api.get("/api/v1/suggestions/?min_confidence=7").json()["error"]["code"] == "invalid"
    row = api.get(f"/api/v1/suggestions/{feed['strong'].pk}/").json()
    assert row["reasoning"] and row["confidence"] >= 0.8 and row["task"] is None and row["status"] == "pending_approval"


def test_others_suggestions_answer_404(api, feed):
    theirs = feed["theirs"].pk
    for response in (api.get(f"/api/v1/suggestions/{theirs}/"), api.post(f"/api/v1/suggestions/{theirs}/approve/"),
                     api.post(f"/api/v1/suggestions/{theirs}/dismiss/", {"reason": "x"}, format="json")):
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert api.post("/api/v1/suggestions/bulk-approve/", {"ids": [theirs]}, format="json").json()["approved"] == 0
    assert Suggestion.objects.get(pk=theirs).status == Suggestion.Status.PENDING


def test_approve_with_edits_makes_the_task(api, feed):
    response = api.post(f"/api/v1/suggestions/{feed['weak'].pk}/approve/",
                        {"title": "Send Bob my thoughts", "due": "2026-12-24", "priority": "high"}, format="json")
    assert response.status_code == 201
    task = response.json()
    assert (task["title"], task["due"], task["priority"], task["status"]) == (
        "Send Bob my thoughts", "2026-12-24", "high", "open")
    assert task["suggestion"] == feed["weak"].pk and task["communication"] == feed["weak"].communication_id
    suggestion = api.get(f"/api/v1/suggestions/{feed['weak'].pk}/").json()
    assert suggestion["status"] == "approved" and suggestion["task"] == task["id"]
    again = api.post(f"/api/v1/suggestions/{feed['weak'].pk}/approve/")
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_decided"
    assert api.post(f"/api/v1/suggestions/{feed['strong'].pk}/approve/", {"priority": "urgent"},
                    format="json").status_code == 400


def test_dismiss_with_a_reason(api, feed):
    response = api.post(f"/api/v1/suggestions/{feed['strong'].pk}/dismiss/", {"reason": "Handled by phone"},
                        format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "dismissed" and response.json()["dismiss_reason"] == "Handled by phone"
    assert not Task.objects.exists()


def test_bulk_approve_by_ids_and_by_min_confidence(api, feed):
    assert api.post("/api/v1/suggestions/bulk-approve/", {}, format="json").status_code == 400
    by_confidence = api.post("/api/v1/suggestions/bulk-approve/", {"min_confidence": 0.8}, format="json").json()
    assert by_confidence["approved"] == 1 and by_confidence["tasks"][0]["suggestion"] == feed["strong"].pk
    by_ids = api.post("/api/v1/suggestions/bulk-approve/", {"ids": [feed["strong"].pk, feed["weak"].pk]},
                      format="json").json()
    assert by_ids["approved"] == 1  # the strong one was approved already
    assert Task.objects.filter(owner=feed["weak"].owner).count() == 2


def test_tasks_crud_and_done(api, feed, other_user, account):
    communication = feed["weak"].communication
    created = api.post("/api/v1/tasks/", {"title": "Call Carol", "due": "2026-12-01", "priority": "low",
                                          "communication": communication.pk}, format="json")
    assert created.status_code == 201
    task = created.json()
    assert task["conversation"] == communication.conversation_id and task["status"] == "open"
    assert ids(api.get("/api/v1/tasks/")) == [task["id"]]
    assert api.get(f"/api/v1/tasks/{task['id']}/").json()["title"] == "Call Carol"
    changed = api.patch(f"/api/v1/tasks/{task['id']}/", {"title": "Call Carol back", "status": "done"}, format="json")
    assert changed.status_code == 200 and changed.json()["status"] == "done" and changed.json()["done_at"]
    assert ids(api.get("/api/v1/tasks/?status=open")) == []
    assert api.patch(f"/api/v1/tasks/{task['id']}/", {"status": "open"}, format="json").json()["done_at"] is None
    assert api.delete(f"/api/v1/tasks/{task['id']}/").status_code == 204
    assert not Task.objects.exists()
    assert api.post("/api/v1/tasks/", {"title": ""}, format="json").status_code == 400


def test_others_tasks_answer_404_and_links_are_scoped(api, feed, other_user):
    theirs = Task.objects.create(owner=other_user, title="Bob's")
    assert api.get(f"/api/v1/tasks/{theirs.pk}/").status_code == 404
    assert api.patch(f"/api/v1/tasks/{theirs.pk}/", {"title": "mine"}, format="json").status_code == 404
    assert api.delete(f"/api/v1/tasks/{theirs.pk}/").status_code == 404
    assert ids(api.get("/api/v1/tasks/")) == []
    linked = api.post("/api/v1/tasks/", {"title": "x", "communication": feed["theirs"].communication_id},
                      format="json")
    assert linked.status_code == 400 and "communication" in linked.json()["error"]["fields"]


def test_the_api_needs_a_user(feed):
    assert APIClient().get("/api/v1/suggestions/").status_code == 401
    assert APIClient().get("/api/v1/tasks/").status_code == 401
