"""pytest plugin: one fake Twilio REST server (tests/fakes/twilio.py) per session, reset per test.

Load with ``pytest_plugins = [..., "tests.fixtures_twilio"]`` in the top-level conftest.
``twilio_fake`` points the real twilio client at it through settings.TWILIO_API_BASE_URL.
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.twilio import FakeTwilio


@pytest.fixture(scope="session")
def twilio_server() -> Iterator[FakeTwilio]:
    """The session's fake Twilio, started once and stopped at the end."""
    fake = FakeTwilio().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def twilio_fake(twilio_server: FakeTwilio, settings) -> FakeTwilio:
    """The session's fake Twilio, emptied (accounts, messages, failures, request log), with the
    Django settings pointing at it."""
    twilio_server.reset()
    for name, value in twilio_server.settings().items():
        setattr(settings, name, value)
    return twilio_server
