"""Schemathesis against /api/schema/, as a signed-in user, in process (WSGI).

Every operation of the schema gets generated requests (positive data: what the schema
says is valid, so a 400 there is the API disagreeing with its own schema only when the
status is undocumented), and every response must be no 5xx, a documented status code and
content type, and a body that matches the documented schema.

Bounded: a few seeded examples per operation, no Hypothesis database, no deadline. Each
example runs in a savepoint rolled back afterwards, so every request sees the same data
(a PATCH or a DELETE does not change what the next example finds) and a database error in
one request cannot poison the next. The connection test of an IMAP login is replaced by
a stub that touches no network: a generated host is never contacted.
"""
from __future__ import annotations

import time
from typing import Any

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from automation.models import Suggestion, Task, Trigger, WebhookDelivery
from contacts.models import Company, Contact
from conversations.ingest import store_batch
from conversations.messages import Channel, ParsedAttachment
from conversations.models import Communication
from crmext.wsgi import application
from integrations import accounts
from integrations.models import ProviderAccount, SyncRun
from tests.factories import email, message, phone

pytestmark = pytest.mark.django_db

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES_PER_OPERATION = 15
# About 30 s on SQLite and 45 s on PostgreSQL on two cores; the test fails if it grows far past that.
TIME_BUDGET_SECONDS = 150

SETTINGS = hypothesis_settings(
    max_examples=EXAMPLES_PER_OPERATION,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the failure as found is reported
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


@pytest.fixture
def in_process_requests(settings):
    """Django's WSGI handler as a test client calls it: no connection closing around a request
    (it would close the test's transaction), and the WSGI client's host allowed."""
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "localhost"]
    settings.SECURE_SSL_REDIRECT = False
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def no_network_login(monkeypatch):
    """A login test that succeeds without contacting anything (the generated host is never reached)."""
    monkeypatch.setattr(accounts, "check_credentials", lambda account: None)


@pytest.fixture
def api_data(user, other_user) -> dict[str, Any]:
    """A little of everything the API reads: connectors with credentials, communications in a
    conversation (one with an attachment), contacts and a company, a sync run."""
    imap = ProviderAccount(owner=user, provider="imap", display_name="Alice mail", external_address="alice@example.org",
                           config={"host": "127.0.0.1", "port": 1, "security": "none", "username": "alice"})
    accounts.save_credentials(imap, {"password": "stored-secret"})
    mbox = ProviderAccount.objects.create(owner=user, provider="mbox", display_name="Alice archive",
                                          external_address="alice@example.org")
    shared = ProviderAccount.objects.create(owner=other_user, provider="mbox", display_name="Bob archive",
                                            external_address="bob@example.net", sharing="everything")
    first = message(subject="Quote", body_html="<p>Hello <b>there</b></p>",
                    attachments=(ParsedAttachment.from_bytes("quote.pdf", "application/pdf", b"%PDF-1.4 quote"),))
    store_batch(imap, [first, message(subject="Re: Quote", references=(first.rfc_message_id,),
                                      in_reply_to=first.rfc_message_id, labels=("INBOX", "Important"))])
    store_batch(mbox, [message(sent_at=None), message(sender=phone("+14155550123"), channel=Channel.SMS, subject="")])
    store_batch(shared, [message(sender=email("dave@globex.example", "Dave"), to=(email("bob@example.net"),))])
    run = SyncRun.objects.create(account=imap, kind=SyncRun.Kind.DELTA, status=SyncRun.Status.SUCCEEDED)
    company = Company.objects.get_or_create(domain="acme.com", defaults={"name": "Acme"})[0]
    contact = Contact.objects.create(name="Erin Example", company=company)
    communication = Communication.objects.get(account=imap, subject="Quote")
    suggestion = Suggestion.objects.create(owner=user, account=imap, communication=communication, title="Reply",
                                           confidence=0.7, reasoning="Signals: request.", engine="rules",
                                           engine_version="1.0")
    task = Task.objects.create(owner=user, title="Call Erin", communication=communication)
    trigger = Trigger(owner=user, name="Quotes", connector=imap, type="email", url="https://hooks.example.com/in",
                      conditions={"subject_contains": "quote"})
    trigger.set_secret("whsec_stored_secret_0123456789")
    trigger.save()
    delivery = WebhookDelivery.objects.create(trigger=trigger, communication=communication, status="failed",
                                              response_code=500, attempts=1, error="HTTP 500: down")
    # The objects a generated request also asks for, besides random ids (which are mostly 404s).
    known = {
        "/api/v1/connectors/": {"id": imap.pk},
        "/api/v1/sync-runs/": {"id": run.pk},
        "/api/v1/providers/": {"key": "imap"},
        "/api/v1/communications/": {"id": communication.pk,
                                    "attachment_id": communication.attachments.get().pk},
        "/api/v1/conversations/": {"id": communication.conversation_id},
        "/api/v1/contacts/": {"id": contact.pk},
        "/api/v1/companies/": {"id": company.pk},
        "/api/v1/suggestions/": {"id": suggestion.pk},
        "/api/v1/tasks/": {"id": task.pk},
        "/api/v1/triggers/": {"id": trigger.pk},
        "/api/v1/deliveries/": {"id": delivery.pk},
    }
    return {"token": Token.objects.create(user=user).key, "known": known}


def known_parameters(operation: Any, known: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    names = {parameter.name for parameter in operation.path_parameters}
    for prefix, values in known.items():
        if names and operation.path.startswith(prefix) and names <= set(values):
            return {name: values[name] for name in names}
    return None


def test_every_operation_conforms_to_the_schema(in_process_requests, no_network_login, api_data):
    started = time.monotonic()
    schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)
    headers = {"Authorization": f"Token {api_data['token']}"}
    failures: list[str] = []
    operations = 0
    statuses: dict[str, set[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        strategy = operation.as_strategy()
        known = known_parameters(operation, api_data["known"])
        if known is not None:
            strategy = strategy | operation.as_strategy(path_parameters=known)
        seen = statuses.setdefault(operation.label, set())

        @SETTINGS
        @given(case=strategy)
        def check(case: Any) -> None:
            savepoint = transaction.savepoint()
            try:
                seen.add(case.call_and_validate(headers=headers, checks=CHECKS).status_code)
            finally:
                transaction.savepoint_rollback(savepoint)

        try:
            check()
        except (Exception, BaseExceptionGroup) as error:  # noqa: BLE001 - every failure is reported together
            failures.append(f"{operation.label}:\n{error}")
    assert operations >= 20, f"only {operations} operations in the schema"
    assert not failures, "\n\n".join(failures)
    # The generated requests reached the objects, not only 404s: every read answered a 200.
    reads = [label for label in statuses if label.startswith("GET ")]
    assert [label for label in reads if 200 not in statuses[label]] == [], statuses
    assert time.monotonic() - started < TIME_BUDGET_SECONDS
