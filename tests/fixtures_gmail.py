"""pytest plugin: one fake Gmail server (tests/fakes/gmail.py) per session, reset per test.

Load with ``pytest_plugins = ["tests.fixtures_gmail"]`` in the top-level conftest. ``gmail_fake``
points the real client libraries at it through the settings (GMAIL_API_ENDPOINT,
GOOGLE_TOKEN_URI, ...), and lifts the per-account quota bucket so tests are not paced by it
(tests of the bucket set GMAIL_QUOTA_UNITS_PER_SECOND themselves).
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.gmail import FakeGmail


@pytest.fixture(scope="session")
def gmail_server() -> Iterator[FakeGmail]:
    """The session's fake Gmail, started once and stopped at the end."""
    fake = FakeGmail().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def gmail_fake(gmail_server: FakeGmail, settings) -> FakeGmail:
    """The session's fake Gmail, emptied (mailboxes, tokens, failures, request log), with the
    Django settings pointing at it."""
    gmail_server.reset()
    for name, value in gmail_server.settings().items():
        setattr(settings, name, value)
    settings.GMAIL_QUOTA_UNITS_PER_SECOND = 1_000_000
    return gmail_server
