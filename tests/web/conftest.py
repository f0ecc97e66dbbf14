"""Fixtures of the web page tests: signed-in clients, mail to show, and a recorded task queue."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.utils.module_loading import import_string

from conversations.ingest import store_batch
from conversations.models import Communication
from integrations.models import ProviderAccount
from tests.factories import email, message

SECRET = "s3cr3t-never-on-a-page"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: Playwright tests in headless Chromium against a live server")


@pytest.fixture
def signed_in(client: Client, user) -> Client:
    client.force_login(user)
    return client


@pytest.fixture
def csrf_client(user) -> Client:
    """A signed-in client that, like a browser, must send the CSRF token with every POST."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


@pytest.fixture
def imap_account(user) -> ProviderAccount:
    return ProviderAccount.objects.create(
        owner=user, provider="imap", display_name="Work mail", external_address="alice@example.org",
        config={"host": "imap.example.org", "port": 993, "security": "ssl", "username": "alice"},
        credentials={"password": SECRET},
    )


def add_messages(account: ProviderAccount, *specs: dict[str, Any]) -> list[Communication]:
    """Stores one message per spec (fields of tests.factories.message) in ``account``."""
    store_batch(account, [message(**spec) for spec in specs])
    ids = [spec["provider_message_id"] for spec in specs]
    return list(Communication.objects.filter(account=account, provider_message_id__in=ids).order_by("pk"))


@pytest.fixture
def mail(account, other_account) -> dict[str, Communication]:
    """Alice's own message (HTML with a script and a tracking pixel) and one of Bob's."""
    own, = add_messages(account, {
        "provider_message_id": "own-1", "subject": "Quarterly numbers",
        "sender": email("carol@acme.com", "Carol Jones"), "to": (email("alice@example.org"),),
        "bcc": (email("boss@example.org"),),
        "body_html": '<p>Hello <b>Alice</b></p><script>alert("x")</script>'
                     '<img src="https://tracker.example/pixel.gif" alt="pixel"><a href="https://acme.com/">site</a>',
        "body_text": "Hello Alice",
    })
    theirs, = add_messages(other_account, {
        "provider_message_id": "bob-1", "subject": "Bob's private plans", "body_text": "Secret body of Bob",
        "sender": email("dave@globex.com", "Dave"), "to": (email("bob@example.net"),),
        "bcc": (email("hidden@example.net"),),
    })
    return {"own": own, "theirs": theirs}


@pytest.fixture
def task_queue(monkeypatch) -> list[tuple[str, tuple[Any, ...]]]:
    """Records the tasks request_sync enqueues (no qcluster runs in tests); run_tasks() runs them."""
    queued: list[tuple[str, tuple[Any, ...]]] = []

    def record(func: str, *args: Any, **kwargs: Any) -> str:
        queued.append((func, args))
        return f"task-{len(queued)}"

    monkeypatch.setattr("integrations.tasks.async_task", record)
    return queued


def run_tasks(queued: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
    """Calls every recorded task directly, in order (the way a qcluster worker would)."""
    results = []
    while queued:
        func, args = queued.pop(0)
        task: Callable[..., Any] = import_string(func)
        results.append(task(*args))
    return results


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # PBKDF2's deliberate slowness costs a third of a second per user created or signed in.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
