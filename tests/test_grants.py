"""integrations.grants: what the apps above want of an account, and what its credentials do not allow yet."""
from __future__ import annotations

import pytest

from automation.models import AccountAutomation
from integrations import grants
from integrations.models import ProviderAccount
from integrations.providers.base import Capability

pytestmark = pytest.mark.django_db

READ_ONLY = {"kind": "oauth", "refresh_token": "r", "access_token": "a", "expiry": None,
             "scopes": ["https://www.googleapis.com/auth/gmail.readonly"]}
MODIFY = {**READ_ONLY, "scopes": [*READ_ONLY["scopes"], "https://www.googleapis.com/auth/gmail.modify"]}


def gmail(user, credentials) -> ProviderAccount:
    return ProviderAccount.objects.create(owner=user, provider="gmail", external_address="a@example.com",
                                          config={"email": "a@example.com"}, credentials=credentials)


def test_write_back_is_what_makes_an_account_want_mark_read(user):
    account = gmail(user, READ_ONLY)
    assert grants.wanted(account) == frozenset() and grants.wanted(None) == frozenset()
    assert grants.missing(account) == {}  # nothing wanted, nothing missing
    automation = AccountAutomation.objects.create(account=account, write_back=True)
    assert grants.wanted(account) == {Capability.MARK_READ}
    assert "read-only access" in grants.missing(account)[Capability.MARK_READ]
    automation.suggestions_enabled = False  # suggestions alone want nothing of the provider
    automation.write_back = False
    automation.save()
    assert grants.wanted(account) == frozenset()


def test_granted_scopes_leave_nothing_missing(user):
    account = gmail(user, MODIFY)
    AccountAutomation.objects.create(account=account, write_back=True)
    assert grants.wanted(account) == {Capability.MARK_READ} and grants.missing(account) == {}


def test_a_provider_without_the_capability_is_not_asked_to_grant_it(account):
    AccountAutomation.objects.create(account=account, write_back=True)  # an mbox import, set in the admin
    assert grants.wanted(account) == {Capability.MARK_READ}
    assert grants.missing(account) == {}
