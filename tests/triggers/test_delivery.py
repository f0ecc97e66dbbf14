"""Delivery against a loopback receiver: signing (checked by the README's snippet), retries and
final failures, attempts recorded, dedupe across re-syncs, redelivery, payload at the sharing level."""
from __future__ import annotations

import pytest

from automation.models import WebhookDelivery
from automation.triggers import services
from automation.triggers.payloads import SIGNATURE_HEADER
from conversations.ingest import store_batch
from tests.factories import message
from tests.triggers.conftest import DOCS, load_verify_snippet, store, webhook

pytestmark = pytest.mark.django_db
SECRET = "whsec_test_secret_0123456789"


def fired(account, trigger, **fields) -> WebhookDelivery:
    communication = store(account, **fields)
    services.fire(account.pk, [communication.pk], "delta")
    return trigger.deliveries.get(communication=communication)


def test_payload_is_signed_and_the_snippet_verifies_it(account, user, receiver, queued):
    trigger = webhook(user, receiver.url, secret=SECRET)
    delivery = fired(account, trigger, subject="Quote")
    assert services.deliver(delivery.pk) == "succeeded"
    request = receiver.requests[0]
    verify = load_verify_snippet()
    header = request["headers"][SIGNATURE_HEADER]
    assert verify(SECRET, request["body"], header)
    assert not verify("whsec_wrong_secret_000000", request["body"], header)
    assert not verify(SECRET, request["body"] + b" ", header)
    timestamp = int(header.split(",")[0][2:])
    assert not verify(SECRET, request["body"], header, now=timestamp + 301)  # a replay, too late
    payload = receiver.json()
    assert payload["event"] == "communication.created" and payload["trigger_id"] == trigger.pk
    assert payload["delivery_id"] == delivery.pk and payload["visibility"] == "everything"
    data = payload["communication"]
    assert data["id"] == delivery.communication_id and data["subject"] == "Quote" and data["channel"] == "email"
    assert data["from"]["address"] == "carol@acme.com" and data["to"][0]["address"] == "alice@example.org"
    assert {"snippet", "sent_at", "conversation_id", "contact_ids", "direction"} <= set(data)
    delivery.refresh_from_db()
    assert delivery.status == "succeeded" and delivery.response_code == 200 and delivery.attempts == 1
    assert SECRET not in repr(delivery.attempt_log) and SECRET not in str(payload)


def test_5xx_and_429_are_retried_with_backoff_then_succeed(account, user, receiver, queued, settings):
    settings.TRIGGERS_RETRY_BASE_SECONDS = 1
    settings.TRIGGERS_RETRY_MAX_SECONDS = 60
    receiver.answer((503, b"down"), (429, b"slow down", {"Retry-After": "7"}), (204, b""))
    delivery = fired(account, webhook(user, receiver.url))
    queued.clear()
    assert services.deliver(delivery.pk).startswith("retrying")
    delivery.refresh_from_db()
    assert delivery.status == "retrying" and delivery.response_code == 503 and "down" in delivery.error
    assert queued and queued[0][0] == delivery.pk and queued[0][1] == delivery.next_attempt_at
    assert services.deliver(delivery.pk) == "not due, or taken"  # the retry waits for its time
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
    services.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.response_code == 429
    assert (delivery.next_attempt_at - delivery.updated_at).total_seconds() >= 6  # Retry-After honoured
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=None)
    assert services.deliver(delivery.pk) == "succeeded"
    delivery.refresh_from_db()
    assert delivery.attempts == 3 and [a["outcome"] for a in delivery.attempt_log] == ["retry", "retry", "succeeded"]
    assert all(a["duration_ms"] is not None for a in delivery.attempt_log) and len(receiver.requests) == 3


def test_retries_stop_at_the_limit_and_record_a_truncated_body(account, user, receiver, queued, settings):
    settings.TRIGGERS_ERROR_BODY_CHARS = 20
    receiver.default = (500, b"x" * 5000, {})
    delivery = fired(account, webhook(user, receiver.url))
    for _ in range(5):
        services.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.attempts == 3 and len(receiver.requests) == 3
    assert delivery.error == "HTTP 500: " + "x" * 20 + "…"


def test_other_4xx_is_final_at_once(account, user, receiver, queued):
    receiver.answer((410, b"gone"))
    delivery = fired(account, webhook(user, receiver.url))
    assert services.deliver(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert delivery.status == "failed" and delivery.response_code == 410 and delivery.attempts == 1


def test_network_errors_are_retried(account, user, queued):
    delivery = fired(account, webhook(user, "http://127.0.0.1:9/closed"))  # the discard port: refused
    assert services.deliver(delivery.pk).startswith("retrying")
    delivery.refresh_from_db()
    assert delivery.response_code is None and "Error" in delivery.error


def test_the_same_message_never_fires_twice(account, user, receiver, queued):
    trigger = webhook(user, receiver.url)
    parsed = message()
    store_batch(account, [parsed])
    communication = account.communications.get(provider_message_id=parsed.provider_message_id)
    services.fire(account.pk, [communication.pk], "delta")
    services.deliver(trigger.deliveries.get().pk)
    store_batch(account, [parsed])  # synced again
    services.fire(account.pk, [communication.pk], "delta")  # and announced again (a retried task)
    services.fire(account.pk, [communication.pk], "webhook")
    assert trigger.deliveries.count() == 1 and len(receiver.requests) == 1
    assert len([d for d, _at in queued]) == 1  # and queued once


def test_redelivery_sends_again_and_refuses_while_under_way(account, user, receiver, queued):
    receiver.answer((400, b"bad"))
    delivery = fired(account, webhook(user, receiver.url))
    services.deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == "failed"
    services.redeliver(delivery)
    with pytest.raises(services.NotFinished):
        services.redeliver(delivery)
    assert services.deliver(delivery.pk) == "succeeded"
    delivery.refresh_from_db()
    assert len(delivery.attempt_log) == 2 and delivery.attempts == 1 and len(receiver.requests) == 2


def test_a_teammates_trigger_gets_the_payload_at_the_sharing_level(account, other_user, receiver, queued):
    account.sharing = "metadata"
    account.save()
    trigger = webhook(other_user, receiver.url, connector=account)
    delivery = fired(account, trigger, subject="Secret plans")
    services.deliver(delivery.pk)
    payload = receiver.json()
    assert payload["visibility"] == "metadata"
    assert payload["communication"]["subject"] is None and payload["communication"]["snippet"] is None
    assert b"Secret plans" not in receiver.requests[0]["body"]
    account.sharing = "private"  # unshared since: a redelivery sends nothing
    account.save()
    services.redeliver(delivery)
    assert services.deliver(delivery.pk).startswith("The connector is no longer shared")
    assert len(receiver.requests) == 1


def test_a_test_send_posts_a_sample(user, receiver, queued):
    trigger = webhook(user, receiver.url)
    delivery = services.send_test(trigger)
    assert services.deliver(delivery.pk) == "succeeded"
    assert receiver.json()["event"] == "trigger.test" and receiver.json()["trigger_id"] == trigger.pk


def test_the_readme_shows_the_snippet_the_tests_run():
    readme = (DOCS.parent / "README.md").read_text()
    section = readme[readme.index("### Verifying trigger webhooks"):]
    shown = section[section.index("```python\n") + len("```python\n"):section.index("\n```", section.index("```python"))]
    source = (DOCS / "verify_webhook.py").read_text()
    code = source[source.index("import hashlib"):].strip()  # the file adds only a docstring above it
    assert shown.strip() == code
