"""Fixtures of the web page tests: signed-in clients, mail to show, and a recorded task queue."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connections
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


# --- browser tests ----------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium, never Playwright's own download (which cannot be fetched here).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
SHOTS = Path("/tmp/web-shots")


def _missing(problem: str) -> None:
    """Skips a browser test, or fails it under CI=true: CI must run the browser tests."""
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(f"{problem}; it is required under CI", pytrace=False)
    pytest.skip(problem)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for a module of browser tests."""
    if not os.access(CHROMIUM, os.X_OK):
        _missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium; make test-deps does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("Playwright is not installed (pip install -r requirements.txt)")
    # Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make
    # (fixtures, the queued tasks they run) are synchronous all the same.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser, live_server) -> Iterator[Any]:
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1180, "height": 820})
    context.set_default_timeout(10_000)
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture
def signed_in_page(page, user, live_server) -> Any:
    """``page`` with the session of ``user`` (signing in through the form is tested once, on its own)."""
    client = Client()
    client.force_login(user)
    cookie = django_settings.SESSION_COOKIE_NAME
    page.context.add_cookies([{"name": cookie, "url": live_server.url, "value": client.cookies[cookie].value}])
    return page


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


class SyncOnPoll:
    """Runs the recorded sync tasks while the browser's next status poll is held.

    The qcluster does not run in tests, and on SQLite the live server shares the test's
    in-memory database connection: the tasks must not run while the server answers a
    request. So the page's poll of /api/v1/connectors/<id>/status/ is held (Playwright
    routing) while the test calls the tasks, then let through: the page sees the sync end.
    """

    def __init__(self, page: Any, queued: list[tuple[str, tuple[Any, ...]]]) -> None:
        self.queued = queued
        self.released = False
        self.ran: list[Any] = []
        page.route("**/api/v1/connectors/*/status/", self._handle)

    def release(self) -> None:
        self.released = True

    def _handle(self, route: Any) -> None:
        if self.released and self.queued:
            self.ran.extend(run_tasks(self.queued))
            # Playwright calls this handler in a greenlet of its own, whose database connections
            # are not the test's: closed here, or PostgreSQL's test database cannot be dropped.
            connections.close_all()
        route.continue_()


@pytest.fixture
def sync_on_poll(signed_in_page, task_queue) -> SyncOnPoll:
    return SyncOnPoll(signed_in_page, task_queue)
