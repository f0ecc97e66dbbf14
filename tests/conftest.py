"""Shared fixtures: users, accounts, and an isolated media root."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from integrations.models import ProviderAccount

pytest_plugins = ["tests.fixtures_dovecot", "tests.fixtures_gmail", "tests.fixtures_outlook", "tests.fixtures_twilio"]

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture(autouse=True)
def _test_servers_allowed(settings, tmp_path: Path) -> None:
    # The test Dovecot speaks plain IMAP on loopback, and test mbox files live in tmp_path.
    # Tests of the refusals turn these back off.
    settings.ALLOW_INSECURE_IMAP = True
    settings.MBOX_IMPORT_DIR = tmp_path


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("alice", email="alice@example.org", password="pw-alice-123")


@pytest.fixture
def other_user(db):
    return get_user_model().objects.create_user("bob", email="bob@example.net", password="pw-bob-123")


@pytest.fixture
def account(user) -> ProviderAccount:
    return ProviderAccount.objects.create(
        owner=user, provider="mbox", display_name="Alice archive", external_address="alice@example.org"
    )


@pytest.fixture
def other_account(other_user) -> ProviderAccount:
    return ProviderAccount.objects.create(
        owner=other_user, provider="mbox", display_name="Bob archive", external_address="bob@example.net"
    )
