"""Outlook change notifications: subscriptions (created against the fake Graph, whose validation
handshake calls our endpoint through Django's test client), the two webhooks and their renewal."""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from integrations.models import ProviderAccount, SyncRun
from integrations.providers.outlook import push
from integrations.providers.outlook.provider import OutlookProvider
from tests.fakes.graph import FakeGraph

pytestmark = pytest.mark.django_db

EMAIL = "frank.outlook@contoso.example"
URL, LIFECYCLE_URL = "/webhooks/outlook", "/webhooks/outlook/lifecycle"


@pytest.fixture
def graph(graph_fake: FakeGraph, settings) -> FakeGraph:
    settings.APP_PUBLIC_URL = "https://crm.example.test"
    settings.OUTLOOK_PUSH = True
    graph_fake.add_mailbox(EMAIL)

    def handshake(url: str, token: str) -> tuple[int, str]:
        path = url.removeprefix(settings.APP_PUBLIC_URL)
        answer = Client().post(path + "?validationToken=" + token.replace(" ", "%20"), content_type="text/plain")
        return answer.status_code, answer.content.decode()

    graph_fake.validator = handshake
    return graph_fake


@pytest.fixture
def account(graph, user, outlook_credentials) -> ProviderAccount:
    created = ProviderAccount.objects.create(
        owner=user, provider="outlook", display_name="Outlook", external_address=EMAIL, config={"email": EMAIL},
        credentials=outlook_credentials(EMAIL), sync_cursor={"folders": {}})
    push.subscribe(created)
    created.refresh_from_db()
    return created


@pytest.fixture
def task_queue(monkeypatch) -> list[tuple[str, tuple[Any, ...]]]:
    recorded: list[tuple[str, tuple[Any, ...]]] = []
    monkeypatch.setattr("integrations.tasks.async_task", lambda func, *args, **kwargs: recorded.append((func, args)))
    monkeypatch.setattr(push, "async_task", lambda func, *args, **kwargs: recorded.append((func, args)))
    return recorded


def post(path: str, body: bytes) -> Any:
    return Client().post(path, body, content_type="application/json")


def queued(account: ProviderAccount) -> list[SyncRun]:
    return list(SyncRun.objects.filter(account=account, status=SyncRun.Status.QUEUED))


def test_a_subscription_is_created_after_the_handshake_with_its_secret_encrypted(graph, account):
    subscription_id = account.push_state["subscription_id"]
    remote = graph.subscriptions[subscription_id]
    assert remote["resource"] == "me/messages" and remote["changeType"] == "created,updated"
    assert remote["notificationUrl"] == "https://crm.example.test/webhooks/outlook"
    assert remote["lifecycleNotificationUrl"] == "https://crm.example.test/webhooks/outlook/lifecycle"
    assert remote["clientState"] == account.credentials["client_state"]
    assert remote["clientState"] not in str(account.push_state)  # the secret only in the credentials
    lifetime = account.push_expires_at - timezone.now()
    assert dt.timedelta(days=6, hours=23) < lifetime < dt.timedelta(minutes=10_080)


@pytest.mark.parametrize("path", [URL, LIFECYCLE_URL])
def test_the_validation_handshake_echoes_the_token_as_text(path):
    answer = Client().post(path + "?validationToken=Validation%3A%20Testing%20%3Cb%3E", content_type="text/plain")
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/plain")
    assert answer.content.decode() == "Validation: Testing <b>"


def test_a_notification_queues_a_delta_at_once(graph, account, task_queue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        answer = post(URL, graph.notification(account.push_state["subscription_id"]))
    assert answer.status_code == 202
    [run] = queued(account)
    assert run.kind == "delta"
    assert task_queue == [("integrations.tasks.run_sync", (account.pk, False, run.pk))]
    assert post(URL, graph.notification(account.push_state["subscription_id"])).status_code == 202
    assert len(queued(account)) == 1  # a sync already queued reads everything anyway


def test_a_wrong_client_state_is_rejected_and_logged(graph, account, task_queue, caplog):
    with caplog.at_level(logging.WARNING):
        answer = post(URL, graph.notification(account.push_state["subscription_id"], client_state="guessed"))
    assert answer.status_code == 403 and not queued(account)
    assert "wrong clientState" in caplog.text
    assert account.credentials["client_state"] not in caplog.text and "guessed" not in caplog.text
    assert post(URL, graph.notification("sub-unknown", client_state="x")).status_code == 403


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"value": []}', b'{"value": [1]}',
                                  b'{"value": [{"clientState": "x"}]}', b'{"value": [{"subscriptionId": 5}]}',
                                  b"\xff\xfe"])
@pytest.mark.parametrize("path", [URL, LIFECYCLE_URL])
def test_malformed_bodies_are_400_never_500(account, task_queue, path, body):
    assert post(path, body).status_code == 400
    assert not queued(account)


def test_only_post():
    assert Client().get(URL).status_code == 405


def test_an_unexpected_failure_is_503(graph, account, monkeypatch, caplog):
    monkeypatch.setattr(push, "_authentic", lambda items: 1 / 0)
    assert post(URL, graph.notification(account.push_state["subscription_id"])).status_code == 503


def test_reauthorization_required_renews_the_subscription(graph, account, task_queue):
    subscription_id = account.push_state["subscription_id"]
    ProviderAccount.objects.filter(pk=account.pk).update(push_expires_at=timezone.now() + dt.timedelta(hours=1))
    answer = post(LIFECYCLE_URL, graph.lifecycle(subscription_id, "reauthorizationRequired"))
    assert answer.status_code == 202
    assert task_queue == [(push.LIFECYCLE_TASK, (account.pk, "reauthorizationRequired"))]
    push.handle_lifecycle(account.pk, "reauthorizationRequired")
    account.refresh_from_db()
    assert account.push_state["subscription_id"] == subscription_id  # the same one, renewed
    assert account.push_expires_at > timezone.now() + dt.timedelta(days=6)
    assert graph.subscriptions[subscription_id]["expirationDateTime"].startswith(
        account.push_expires_at.strftime("%Y-%m-%dT%H:%M"))


def test_subscription_removed_creates_a_new_one_with_a_new_secret(graph, account, task_queue):
    old_id, old_secret = account.push_state["subscription_id"], account.credentials["client_state"]
    assert post(LIFECYCLE_URL, graph.lifecycle(old_id, "subscriptionRemoved")).status_code == 202
    del graph.subscriptions[old_id]
    push.handle_lifecycle(account.pk, "subscriptionRemoved")
    account.refresh_from_db()
    assert account.push_state["subscription_id"] != old_id
    assert account.credentials["client_state"] != old_secret
    assert account.push_state["subscription_id"] in graph.subscriptions


def test_missed_queues_a_delta(graph, account, task_queue):
    answer = post(LIFECYCLE_URL, graph.lifecycle(account.push_state["subscription_id"], "missed"))
    assert answer.status_code == 202 and len(queued(account)) == 1


def test_a_lifecycle_event_with_a_wrong_client_state_does_nothing(graph, account, task_queue):
    answer = post(LIFECYCLE_URL, graph.lifecycle(account.push_state["subscription_id"], "subscriptionRemoved",
                                                 client_state="nope"))
    assert answer.status_code == 403 and task_queue == []


def test_the_renewal_renews_only_what_lapses_within_a_day(graph, account):
    assert push.renew_subscriptions() == 0
    ProviderAccount.objects.filter(pk=account.pk).update(push_expires_at=timezone.now() + dt.timedelta(hours=5))
    assert OutlookProvider.renew_push() == 1  # what the hourly push schedule calls
    account.refresh_from_db()
    assert account.push_expires_at > timezone.now() + dt.timedelta(days=6)


def test_a_subscription_unknown_to_graph_is_recreated_on_renewal(graph, account):
    graph.subscriptions.clear()
    ProviderAccount.objects.filter(pk=account.pk).update(push_expires_at=timezone.now())
    assert push.renew_subscriptions() == 1
    account.refresh_from_db()
    assert account.push_state["subscription_id"] in graph.subscriptions


def test_no_push_without_outlook_push(graph, account, settings):
    settings.OUTLOOK_PUSH = False
    ProviderAccount.objects.filter(pk=account.pk).update(push_expires_at=timezone.now())
    assert push.renew_subscriptions() == 0


def test_accounts_needing_reauthentication_are_not_renewed(graph, account):
    ProviderAccount.objects.filter(pk=account.pk).update(status="reauth_required", push_expires_at=timezone.now())
    assert push.renew_subscriptions() == 0
