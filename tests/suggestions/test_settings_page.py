"""The automation settings page: the user's preferences and each account's switches (Django test
client), and one browser run that changes them."""
from __future__ import annotations

from typing import Any

import pytest

from automation.models import AccountAutomation, AutomationPreferences
from integrations.models import ProviderAccount
from integrations.providers.imap.provider import ImapProvider
from tests.web.conftest import imap_account, shot  # noqa: F401 - imap_account is a fixture

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips the browser test, or fails it under CI
    expect = None

URL = "/suggestions/settings/"
BLOCKER = "Sign in to this mailbox again and allow marking messages read."
GMAIL_READ_ONLY = {"kind": "oauth", "refresh_token": "x", "access_token": "y", "expiry": None,
                   "scopes": ["https://www.googleapis.com/auth/gmail.readonly"]}


@pytest.fixture
def imap_needs_grant(monkeypatch) -> str:
    """IMAP accounts say write-back needs the user to do something first (as Gmail's read-only ones do)."""
    monkeypatch.setattr(ImapProvider, "missing_grant", classmethod(lambda cls, account, capability: BLOCKER))
    return BLOCKER


def _preferences(user) -> tuple[float | None, str]:
    row = AutomationPreferences.objects.get(user=user)
    return row.auto_approve_threshold, row.time_zone


def _switches(account: ProviderAccount) -> tuple[bool, bool]:
    row = AccountAutomation.objects.get(account=account)
    return row.suggestions_enabled, row.write_back


def _tag(html: str, marker: str) -> str:
    """The rest of the tag in which ``marker`` (an attribute) comes first."""
    return html.split(marker, 1)[1].split(">", 1)[0]


def _row(html: str, account: ProviderAccount) -> str:
    """The account's row on the page."""
    return html.split(f'id="account-{account.pk}"', 1)[1].split("</article>", 1)[0]


@pytest.mark.django_db
def test_page_shows_defaults_and_only_own_accounts(signed_in, settings, account, other_account):
    settings.SUGGESTIONS_AUTO_APPROVE_THRESHOLD, settings.TIME_ZONE = 0.85, "UTC"
    page = signed_in.get(URL).content.decode()
    assert "Server default (0.85)" in page and "Server default (UTC)" in page
    assert '<option value="Europe/Berlin">Europe/Berlin</option>' in page
    assert "checked" in _tag(page, 'value="default"') and "checked" not in _tag(page, 'value="never"')
    assert "Alice archive" in page and "Bob archive" not in page
    assert 'href="/suggestions/"' in page  # the way back
    assert 'href="/suggestions/settings/"' in signed_in.get("/suggestions/").content.decode()


@pytest.mark.django_db
def test_the_page_needs_a_sign_in(client):
    assert client.get(URL).status_code == 302
    assert client.post(URL, {"auto_approve": "never"}).status_code == 302
    assert not AutomationPreferences.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("posted", "stored", "shown"), [
    ({"auto_approve": "default", "threshold": "0.4"}, None, 'value="default"'),
    ({"auto_approve": "at", "threshold": "0.9"}, 0.9, 'value="0.9"'),
    ({"auto_approve": "never", "threshold": "7"}, 1.01, 'value="never"'),
])
def test_save_auto_approve(signed_in, user, posted: dict[str, str], stored: float | None, shown: str):
    response = signed_in.post(URL, {**posted, "time_zone": "Europe/Berlin"}, follow=True)
    assert response.redirect_chain == [(URL, 302)]
    assert "Saved." in response.content.decode()
    assert _preferences(user) == (stored, "Europe/Berlin")
    page = response.content.decode()
    assert shown in page and '<option value="Europe/Berlin" selected>' in page
    # what the radio shows checked after saving is what was chosen
    assert "checked" in _tag(page, f'value="{posted["auto_approve"]}"')


@pytest.mark.django_db
def test_never_is_what_the_suggestions_page_calls_off(signed_in, user):
    signed_in.post(URL, {"auto_approve": "never", "time_zone": ""})
    assert "auto-approve is off" in signed_in.get("/suggestions/").content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("threshold", ["1.5", "-0.1", "", "lots"])
def test_invalid_threshold_keeps_the_input_and_says_why(signed_in, user, threshold: str):
    AutomationPreferences.objects.create(user=user, auto_approve_threshold=0.7, time_zone="Asia/Tokyo")
    response = signed_in.post(URL, {"auto_approve": "at", "threshold": threshold, "time_zone": "Europe/Berlin"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Give a confidence from 0 to 1" in page
    assert f'value="{threshold}"' in page and '<option value="Europe/Berlin" selected>' in page
    assert "checked" in _tag(page, 'value="at"')
    assert _preferences(user) == (0.7, "Asia/Tokyo")  # nothing saved


@pytest.mark.django_db
def test_unknown_time_zone_is_refused(signed_in, user):
    response = signed_in.post(URL, {"auto_approve": "at", "threshold": "0.8", "time_zone": "Mars/Olympus_Mons"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Mars/Olympus_Mons is not a time zone in the list." in page and 'value="0.8"' in page
    assert not AutomationPreferences.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_account_switches_are_saved(signed_in, imap_account):  # noqa: F811
    url = f"/suggestions/settings/accounts/{imap_account.pk}/"
    response = signed_in.post(url, {"suggestions_enabled": "on", "write_back": "on"}, follow=True)
    assert response.redirect_chain == [(f"{URL}#account-{imap_account.pk}", 302)]
    assert "Saved: Work mail." in response.content.decode()
    assert _switches(imap_account) == (True, True)
    signed_in.post(url, {})  # both unchecked
    assert _switches(imap_account) == (False, False)
    page = signed_in.get(URL).content.decode()
    row = _row(page, imap_account)
    assert "Suggest tasks from new messages" in row and "Mark read at the provider when a task is done" in row
    assert "checked" not in row and "disabled" not in row and "Reconnect" not in row
    assert signed_in.get(url).status_code == 405


@pytest.mark.django_db
def test_write_back_is_refused_and_kept_off_for_mbox(signed_in, account):
    signed_in.post(f"/suggestions/settings/accounts/{account.pk}/", {"suggestions_enabled": "on", "write_back": "on"})
    assert _switches(account) == (True, False)
    row = _row(signed_in.get(URL).content.decode(), account)
    write_back = _tag(row, 'name="write_back"')
    assert "disabled" in write_back and "checked" not in write_back
    assert "Not available for Mbox import accounts" in row


@pytest.mark.django_db
def test_another_users_account_cannot_be_changed(signed_in, other_account):
    AccountAutomation.objects.create(account=other_account, suggestions_enabled=True, write_back=False)
    response = signed_in.post(f"/suggestions/settings/accounts/{other_account.pk}/", {"write_back": "on"})
    assert response.status_code == 404
    assert _switches(other_account) == (True, False)
    assert signed_in.post("/suggestions/settings/accounts/987654/", {}).status_code == 404


@pytest.mark.django_db
def test_blocker_is_shown_with_a_reconnect_button_and_flashed_on_saving(signed_in, imap_account, imap_needs_grant):  # noqa: F811
    response = signed_in.post(f"/suggestions/settings/accounts/{imap_account.pk}/",
                              {"suggestions_enabled": "on", "write_back": "on"}, follow=True)
    page = response.content.decode()
    messages = page.split('class="messages"', 1)[1].split("</ul>", 1)[0]
    assert '<li class="warning">' + BLOCKER in messages
    row = _row(page, imap_account)
    assert BLOCKER in row
    reconnect = row.split(f'action="/connections/{imap_account.pk}/reconnect/"', 1)[1].split("</form>", 1)[0]
    assert "csrfmiddlewaretoken" in reconnect and "Reconnect and allow" in reconnect


@pytest.mark.django_db
def test_no_blocker_while_write_back_is_off(signed_in, imap_account, imap_needs_grant):  # noqa: F811
    response = signed_in.post(f"/suggestions/settings/accounts/{imap_account.pk}/", {"suggestions_enabled": "on"},
                              follow=True)
    page = response.content.decode()
    assert BLOCKER not in page and "Reconnect and allow" not in page


@pytest.mark.django_db
def test_read_only_gmail_with_write_back_asks_to_reconnect(signed_in, user):
    """Needs Gmail's Capability.MARK_READ and missing_grant (coming on main in parallel)."""
    gmail = ProviderAccount.objects.create(owner=user, provider="gmail", display_name="Alice Gmail",
                                           external_address="alice@gmail.com", config={"email": "alice@gmail.com"},
                                           credentials=GMAIL_READ_ONLY)
    AccountAutomation.objects.create(account=gmail, suggestions_enabled=True, write_back=True)
    row = _row(signed_in.get(URL).content.decode(), gmail)
    assert 'class="alert warning' in row, "no warning: does Gmail have MARK_READ and missing_grant yet?"
    warning = row.split('class="alert warning', 1)[1].split("</div>", 1)[0]
    assert "Reconnect" in warning
    assert f'action="/connections/{gmail.pk}/reconnect/"' in warning
    response = signed_in.post(f"/suggestions/settings/accounts/{gmail.pk}/",
                              {"suggestions_enabled": "on", "write_back": "on"}, follow=True)
    assert _switches(gmail) == (True, True)
    assert '<li class="warning">' in response.content.decode()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_browser_settings(signed_in_page, user, account, imap_account, imap_needs_grant: str):  # noqa: F811
    AccountAutomation.objects.create(account=imap_account, suggestions_enabled=True, write_back=False)
    page: Any = signed_in_page
    page.goto("/suggestions/")
    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Automation settings")).to_be_visible()
    page.get_by_label("Confidence from 0 to 1").fill("1.2")  # typing chooses "at or above"
    page.get_by_role("button", name="Save preferences").click()
    expect(page.locator(".errorlist")).to_contain_text("Give a confidence from 0 to 1")
    expect(page.get_by_label("Confidence from 0 to 1")).to_have_value("1.2")
    shot(page, "settings-error")
    page.get_by_label("Confidence from 0 to 1").fill("0.92")
    page.get_by_label("Time zone").select_option("Europe/Berlin")
    page.get_by_role("button", name="Save preferences").click()
    expect(page.locator(".messages")).to_contain_text("Saved.")
    assert _preferences(user) == (0.92, "Europe/Berlin")
    mbox_row = page.locator(f"#account-{account.pk}")
    expect(mbox_row.get_by_label("Mark read at the provider when a task is done")).to_be_disabled()
    imap_row = page.locator(f"#account-{imap_account.pk}")
    imap_row.get_by_label("Mark read at the provider when a task is done").check()
    imap_row.get_by_role("button", name="Save").click()
    expect(page.locator(".messages")).to_contain_text(imap_needs_grant)
    expect(page.locator(f"#account-{imap_account.pk}").get_by_role("button", name="Reconnect and allow")).to_be_visible()
    assert _switches(imap_account) == (True, True)
    shot(page, "settings")
