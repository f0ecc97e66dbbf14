"""The pages in headless Chromium against a live server: what a person does, end to end.

Queued syncs: no qcluster runs in tests, so request_sync's task is recorded (task_queue)
and called directly by the test while the page's next status poll is held (SyncOnPoll):
the page then sees the sync end and its progress bar reach done. Screenshots go to
/tmp/web-shots/.
"""
from __future__ import annotations

import re

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips these tests, or fails them under CI, saying why
    expect = None

from integrations.accounts import connect_account
from integrations.models import ProviderAccount
from tests.providers.test_imap import append, raws
from tests.web.conftest import shot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _dovecot_account(user, imap_user, **fields) -> ProviderAccount:
    account = ProviderAccount(owner=user, provider="imap", display_name="Dovecot inbox",
                              external_address=f"{imap_user.username}@example.org",
                              config={"host": imap_user.host, "port": imap_user.port, "security": "none",
                                      "username": imap_user.username}, **fields)
    return connect_account(account, {"password": imap_user.password})


def test_sign_in_and_connect_imap(page, user, imap_user, task_queue):
    page.goto("/connections/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/connections/"))
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("pw-alice-123")
    shot(page, "01-login")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("No connections yet")).to_be_visible()
    shot(page, "02-connections-empty")

    page.locator(".provider-option", has_text="IMAP mailbox").get_by_role("link", name="Connect").click()
    page.get_by_label("Host").fill(imap_user.host)
    page.get_by_label("Port").fill(str(imap_user.port))
    page.get_by_label("Security").select_option("none")
    page.get_by_label("Username").fill(imap_user.username)
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Test login and connect").click()
    expect(page.locator("#id_password-errors")).to_contain_text("The login was refused")
    expect(page.get_by_label("Host")).to_have_value(imap_user.host)  # what was typed stays, but no password
    expect(page.get_by_label("Password")).to_have_value("")
    shot(page, "03-connect-wrong-password")
    assert not ProviderAccount.objects.exists()

    page.get_by_label("Password").fill(imap_user.password)
    page.get_by_role("button", name="Test login and connect").click()
    expect(page.get_by_text("The login worked; its first sync has started.")).to_be_visible()
    card = page.locator("article.account")
    expect(card).to_contain_text(f"{imap_user.username} on {imap_user.host}")
    expect(card.locator("[data-role=progress-text]")).to_have_text("Waiting to start…")
    shot(page, "04-connected")
    assert ProviderAccount.objects.get().status == "connected"


def test_sync_now_progress_reaches_done(signed_in_page, user, imap_user, sync_on_poll):
    page = signed_in_page
    account = _dovecot_account(user, imap_user)
    append(imap_user, "INBOX", raws(3))
    page.goto("/connections/")
    card = page.locator(f"#account-{account.pk}")
    expect(card).to_contain_text("0 messages")
    card.get_by_role("button", name="Sync now").click()
    expect(page.get_by_text("A sync of Dovecot inbox has started.")).to_be_visible()
    expect(card.locator("[data-role=progress]")).to_be_visible()
    shot(page, "05-sync-queued")
    sync_on_poll.release()
    expect(card.locator(".bar.done")).to_be_visible()
    expect(card.locator("[data-role=progress-text]")).to_have_text("Sync finished")
    shot(page, "06-sync-done")
    expect(page.locator(f"#account-{account.pk}")).to_contain_text("3 messages")  # after the reload
    expect(page.locator(f"#account-{account.pk} [data-role=progress]")).to_be_hidden()
    assert [result.split(":")[0] for result in sync_on_poll.ran] == ["succeeded"]
    page.get_by_role("link", name="Dovecot inbox").click()
    expect(page.locator("table.list tbody tr")).to_have_count(1)
    expect(page.locator("table.list")).to_contain_text("Succeeded")
    shot(page, "15-account")


def test_reconnect(signed_in_page, user, imap_user):
    page = signed_in_page
    account = _dovecot_account(user, imap_user)
    ProviderAccount.objects.filter(pk=account.pk).update(
        status="reauth_required", last_error="The server refused the password: enter the new one.")
    page.goto("/connections/")
    alert = page.locator(f"#account-{account.pk} [data-role=problem]")
    expect(alert).to_contain_text("The server refused the password")
    expect(page.locator(f"#account-{account.pk} [data-role=badge]")).to_have_text("Re-authentication required")
    shot(page, "07-reauth-required")
    alert.get_by_role("link", name="Reconnect").click()
    expect(page.get_by_label("Username")).to_have_value(imap_user.username)
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Test login and reconnect").click()
    expect(page.locator("#id_password-errors")).to_contain_text("The login was refused")
    shot(page, "08-reconnect-wrong-password")
    page.get_by_label("Password").fill(imap_user.password)
    page.get_by_role("button", name="Test login and reconnect").click()
    expect(page.get_by_text("Reconnected Dovecot inbox")).to_be_visible()
    expect(page.locator(f"#account-{account.pk} [data-role=badge]")).to_have_text("Connected")


def test_disconnect_asks_for_confirmation(signed_in_page, user, account):
    page = signed_in_page
    page.goto("/connections/")
    page.locator(f"#account-{account.pk}").get_by_role("link", name="Disconnect").click()
    expect(page.get_by_role("heading", name="Disconnect Alice archive?")).to_be_visible()
    expect(page.get_by_role("radio", name=re.compile("Keep them"))).to_be_checked()
    shot(page, "09-disconnect-confirm")
    page.get_by_role("link", name="Cancel").click()
    expect(page.locator(f"#account-{account.pk} [data-role=badge]")).to_have_text("Connected")
    page.locator(f"#account-{account.pk}").get_by_role("link", name="Disconnect").click()
    page.get_by_role("button", name="Disconnect").click()
    expect(page.get_by_text("Disconnected Alice archive")).to_be_visible()
    expect(page.locator(f"#account-{account.pk} [data-role=badge]")).to_have_text("Disabled")
    shot(page, "10-disconnected")


MBOX = (b"From 1@xxx Mon Nov  2 10:00:00 2026\nFrom: Carol Jones <carol@acme.com>\nTo: alice@example.org\n"
        b"Subject: Launch plan\nMessage-ID: <launch@acme.com>\nDate: Mon, 2 Nov 2026 10:00:00 +0000\n"
        b"Content-Type: text/html; charset=utf-8\n\n"
        b"<h2>Launch plan</h2><p>Hello <b>Alice</b>, the plan is attached.</p><script>document.title='pwned'</script>"
        b"<img src=\"https://tracker.example/pixel.gif\" alt=\"tracking pixel\">\n\n"
        b"From 2@xxx Mon Nov  2 11:00:00 2026\nFrom: Dan <dan@acme.com>\nTo: alice@example.org\n"
        b"Subject: Re: Launch plan\nMessage-ID: <re@acme.com>\nIn-Reply-To: <launch@acme.com>\n"
        b"Date: Mon, 2 Nov 2026 11:00:00 +0000\n\nLooks good.\n")


def test_upload_an_mbox_import_it_and_read_a_message(signed_in_page, user, sync_on_poll, tmp_path):
    page = signed_in_page
    source = tmp_path / "exports" / "Work archive.mbox"
    source.parent.mkdir()
    source.write_bytes(MBOX)
    page.goto("/connections/")
    page.get_by_role("link", name="Upload a file").click()
    page.get_by_label("Mbox file or Google Takeout archive").set_input_files(str(source))
    shot(page, "11-upload")
    page.get_by_role("button", name="Upload and import").click()
    expect(page.get_by_text("Uploaded Work archive.mbox: its import has started.")).to_be_visible()
    sync_on_poll.release()
    card = page.locator("article.account", has_text="Work archive.mbox")
    expect(card).to_contain_text("2 messages")
    shot(page, "12-imported")

    page.get_by_role("link", name="Communications").click()
    expect(page.locator("table.list tbody tr")).to_have_count(2)
    shot(page, "13-communications")
    page.get_by_role("link", name="Launch plan", exact=True).click()
    frame = page.frame_locator("iframe.message-body")
    expect(frame.locator("b")).to_have_text("Alice")
    expect(frame.locator("img")).not_to_have_attribute("src", re.compile("tracker"))
    expect(page.get_by_text("Remote images are blocked")).to_be_visible()
    assert page.title() != "pwned"
    shot(page, "14-message")
    page.get_by_role("link", name="Load remote images").click()
    expect(frame.locator("img")).to_have_attribute("src", "https://tracker.example/pixel.gif")
