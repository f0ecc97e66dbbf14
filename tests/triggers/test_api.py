"""The triggers API: CRUD, owner scoping (404), field-by-field validation, the allowlist, the
write-only secret, deliveries, test sends, redelivery; the Connections page lists triggers."""
from __future__ import annotations

import pytest

from automation.models import Trigger, WebhookDelivery
from automation.triggers import services
from tests.triggers.conftest import store, webhook

pytestmark = pytest.mark.django_db
HOOK = "https://hooks.example.com/in"


def test_create_read_update_delete(api, account, queued):
    created = api.post("/api/v1/triggers/", {"name": "Quotes", "connector": account.pk, "type": "email",
                                             "conditions": {"subject_contains": "quote", "sender": "acme.com"},
                                             "url": HOOK}, format="json")
    assert created.status_code == 201, created.json()
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and body["secret_hint"] == f"…{secret[-4:]}"
    trigger = Trigger.objects.get(pk=body["id"])
    assert trigger.secret == secret and trigger.connector_id == account.pk
    read = api.get(f"/api/v1/triggers/{trigger.pk}/").json()
    assert "secret" not in read and read["conditions"] == {"subject_contains": "quote", "sender": "acme.com"}
    changed = api.patch(f"/api/v1/triggers/{trigger.pk}/", {"enabled": False, "secret": "my-own-secret-123456"},
                        format="json")
    assert changed.status_code == 200 and "secret" not in changed.json() and changed.json()["enabled"] is False
    trigger.refresh_from_db()
    assert trigger.secret == "my-own-secret-123456"
    assert [t["id"] for t in api.get("/api/v1/triggers/").json()["results"]] == [trigger.pk]
    assert api.delete(f"/api/v1/triggers/{trigger.pk}/").status_code == 204


def test_a_given_secret_is_never_echoed(api):
    response = api.post("/api/v1/triggers/", {"name": "x", "url": HOOK, "secret": "given-secret-0123456789"},
                        format="json")
    assert response.status_code == 201 and "given-secret-0123456789" not in response.content.decode()


def test_others_triggers_and_deliveries_are_404(api, other_user, queued):
    theirs = webhook(other_user, HOOK)
    delivery = WebhookDelivery.objects.create(trigger=theirs, status="failed")
    assert api.get(f"/api/v1/triggers/{theirs.pk}/").status_code == 404
    assert api.patch(f"/api/v1/triggers/{theirs.pk}/", {"enabled": False}, format="json").status_code == 404
    assert api.get(f"/api/v1/triggers/{theirs.pk}/deliveries/").status_code == 404
    assert api.post(f"/api/v1/triggers/{theirs.pk}/test/").status_code == 404
    assert api.post(f"/api/v1/deliveries/{delivery.pk}/redeliver/").status_code == 404
    assert api.get("/api/v1/deliveries/").json()["results"] == []


def test_another_users_private_connector_is_404_a_shared_one_is_allowed(api, other_account):
    response = api.post("/api/v1/triggers/", {"name": "x", "connector": other_account.pk, "url": HOOK},
                        format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    other_account.sharing = "metadata"
    other_account.save()
    refused = api.post("/api/v1/triggers/", {"name": "x", "connector": other_account.pk, "url": HOOK,
                                             "conditions": {"subject_contains": "q"}}, format="json")
    assert refused.status_code == 400 and "hides" in refused.json()["error"]["fields"]["conditions"][0]
    ok = api.post("/api/v1/triggers/", {"name": "x", "connector": other_account.pk, "url": HOOK,
                                        "conditions": {"sender": "acme.com"}}, format="json")
    assert ok.status_code == 201


@pytest.mark.parametrize(("value", "message"), [("email:gmail", "legacy provider-specific type"),
                                                ("sms:twilio", "legacy"), ("fax", "not a trigger type")])
def test_the_allowlist_rejects_unknown_and_legacy_types(api, value, message):
    response = api.post("/api/v1/triggers/", {"name": "x", "type": value, "url": HOOK}, format="json")
    assert response.status_code == 400 and message in response.json()["error"]["fields"]["type"][0]


def test_the_type_must_fit_the_connector(api, account):
    response = api.post("/api/v1/triggers/", {"name": "x", "type": "sms", "connector": account.pk, "url": HOOK},
                        format="json")
    assert response.status_code == 400 and "carries no sms" in response.json()["error"]["fields"]["type"][0]


def test_fields_are_validated_one_by_one_and_unknown_ones_rejected(api):
    response = api.post("/api/v1/triggers/", {"name": "x", "url": HOOK, "colour": "red",
                                              "conditions": {"direction": "up", "flavour": 1}}, format="json")
    assert response.status_code == 400 and "colour" in response.json()["error"]["fields"]
    response = api.post("/api/v1/triggers/", {"name": "x", "url": HOOK, "conditions": {"direction": "up",
                                                                                       "flavour": 1}}, format="json")
    fields = response.json()["error"]["fields"]["conditions"]
    assert set(fields) == {"direction", "flavour"}
    for body, field in [({"name": "x"}, "url"), ({"name": "x", "url": "ftp://x.example/"}, "url"),
                        ({"name": "x", "action": "task"}, "task_template"),
                        ({"name": "x", "action": "task", "task_template": {"title": "t", "when": 1}}, "task_template")]:
        response = api.post("/api/v1/triggers/", body, format="json")
        assert response.status_code == 400 and field in response.json()["error"]["fields"], (body, response.json())


def test_private_url_literals_are_refused_when_private_targets_are_off(api, settings):
    settings.TRIGGERS_ALLOW_PRIVATE_TARGETS = False
    response = api.post("/api/v1/triggers/", {"name": "x", "url": "http://[::ffff:127.0.0.1]/"}, format="json")
    assert response.status_code == 400


def test_task_triggers(api):
    response = api.post("/api/v1/triggers/", {"name": "Follow up", "action": "task",
                                              "task_template": {"title": "Reply to $sender", "due_in_days": 1}},
                        format="json")
    assert response.status_code == 201 and "secret" not in response.json()
    trigger_id = response.json()["id"]
    assert api.post(f"/api/v1/triggers/{trigger_id}/test/").status_code == 400


def test_deliveries_test_send_and_redelivery(api, user, account, receiver, queued):
    trigger = webhook(user, receiver.url)
    sent = api.post(f"/api/v1/triggers/{trigger.pk}/test/")
    assert sent.status_code == 202 and sent.json()["event"] == "trigger.test"
    assert services.deliver(sent.json()["id"]) == "succeeded"
    communication = store(account)
    services.fire(account.pk, [communication.pk], "delta")
    delivery = trigger.deliveries.get(communication=communication)
    listed = api.get(f"/api/v1/triggers/{trigger.pk}/deliveries/").json()["results"]
    assert [d["id"] for d in listed] == [delivery.pk, sent.json()["id"]]
    assert api.post(f"/api/v1/deliveries/{delivery.pk}/redeliver/").status_code == 409  # still pending
    services.deliver(delivery.pk)
    again = api.post(f"/api/v1/deliveries/{delivery.pk}/redeliver/")
    assert again.status_code == 202 and again.json()["status"] == "pending"
    assert "whsec" not in str(listed)


def test_the_connections_page_lists_each_connectors_triggers(client, user, account, other_user, receiver, queued):
    client.force_login(user)
    trigger = webhook(user, receiver.url, name="Quotes to Zapier", connector=account)
    webhook(user, receiver.url, name="Everything", enabled=False)
    webhook(other_user, receiver.url, name="Bob's trigger")
    communication = store(account)
    services.fire(account.pk, [communication.pk], "delta")
    services.deliver(trigger.deliveries.get().pk)
    page = client.get("/connections/").content.decode()
    assert "Quotes to Zapier" in page and "Everything" in page and "Bob&#x27;s trigger" not in page
    assert "Bob's trigger" not in page
    assert "Last delivery: Succeeded (HTTP 200)" in page and "No delivery yet" in page
