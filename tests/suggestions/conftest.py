"""Fixtures of the suggestion tests: an account with suggestions on, stored messages, a recorded queue."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from conversations.ingest import store_batch
from conversations.models import Communication
from tests.factories import email, message
from tests.web.conftest import _fast_password_hashing, browser, page, signed_in, signed_in_page  # noqa: F401 - fixtures


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: Playwright tests in headless Chromium against a live server")


@pytest.fixture
def queued(monkeypatch) -> list[tuple[str, tuple[Any, ...]]]:
    """Records what automation queues with django-q2 (no qcluster runs in tests)."""
    calls: list[tuple[str, tuple[Any, ...]]] = []

    def record(func: str, *args: Any, **kwargs: Any) -> str:
        calls.append((func, args))
        return f"task-{len(calls)}"

    monkeypatch.setattr("automation.receivers.async_task", record)
    monkeypatch.setattr("automation.tasks.async_task", record)
    return calls


def store(account, **fields: Any) -> Communication:
    """Stores one message (tests.factories.message fields; sent an hour ago by default) and returns it."""
    fields.setdefault("sent_at", timezone.now() - dt.timedelta(hours=1))
    fields.setdefault("to", (email(account.external_address),))
    parsed = message(**fields)
    store_batch(account, [parsed])
    return Communication.objects.get(account=account, provider_message_id=parsed.provider_message_id)


REQUEST = "Hi Alice,\n\nCould you review the Q4 proposal by Friday? The client wants it Monday.\n\nThanks,\nBob"
WEAK_REQUEST = "Alice, let me know what you think of the draft when you can.\n\nBob"
