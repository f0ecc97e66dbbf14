"""The pages in headless Chromium against a live server: what a person does, end to end.

Queued syncs: no qcluster runs in tests, so request_sync's task is recorded (task_queue)
and called directly by the test while the page's next status poll is held (SyncOnPoll):
the page then sees the sync end and its progress bar reach done. Screenshots go to
/tmp/web-shots/; those of the Connections, account and message pages also to var/screenshots/
(in the repository, git-ignored) for a person to look at.
"""
from __future__ import annotations

import base64
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips these tests, or fails them under CI, saying why
    expect = None

from integrations.accounts import connect_account
from integrations.models import ProviderAccount, SyncRun
from tests.factories import email
from tests.providers.test_imap import append, raws
from tests.web.conftest import add_messages, shot

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


# --- a hostile message: nothing in it may run or phone home --------------------------------------

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
         b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")  # a 1x1 GIF


def keep_shot(page: Any, name: str) -> None:
    """A screenshot kept in var/screenshots/ (and /tmp/web-shots/ with the others)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    shot(page, name)


class PixelServer:
    """A tracker on loopback: records the path of every request it gets, answers with a 1x1 GIF."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.send_header("Content-Length", str(len(PIXEL)))
                self.end_headers()
                self.wfile.write(PIXEL)

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> PixelServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pixel_server() -> Iterator[PixelServer]:
    with PixelServer() as server:
        yield server


def _hostile_html(tracker: str) -> str:
    return (
        "<p>Hello <b>Alice</b>, the figures are below.</p>"
        "<script>window.parent.__pwned = 1; alert('script')</script>"
        f'<img src="{tracker}/pixel.gif" alt="tracking pixel">'
        "<img src=\"x\" onerror=\"window.parent.__pwned = 2; alert('onerror')\" alt=\"broken\">"
        f'<img src="data:image/gif;base64,{base64.b64encode(PIXEL).decode()}" srcset="{tracker}/srcset.gif 1x" '
        'alt="inline">'
        '<p><a href="javascript:window.parent.__pwned = 3; alert(\'link\')">Run me</a> '
        '<a href="https://acme.com/">Acme</a></p>'
        f'<svg onload="window.parent.__pwned = 4"><image href="{tracker}/svg.gif"/></svg>'
        f'<iframe src="{tracker}/frame"></iframe><object data="{tracker}/object"></object>'
        f'<table background="{tracker}/table.gif"><tr><td style="background:url({tracker}/style.gif)">cell</td>'
        "</tr></table>"
        f"<style>@import url({tracker}/import.css); p {{ background: url({tracker}/css.gif) }}</style>"
        f'<link rel="stylesheet" href="{tracker}/link.css">'
        f'<meta http-equiv="refresh" content="0;url={tracker}/refresh">'
        f'<form action="{tracker}/form" method="post"><button>Send</button></form>'
        '<body onload="window.parent.__pwned = 5">'
    )


def _open_message(page: Any, url: str) -> tuple[Any, Any]:
    """Opens a message page; returns the page's response and its iframe body's response."""
    with page.expect_response(re.compile(r"/communications/\d+/body/")) as body:
        response = page.goto(url)  # waits for the load event: the iframe and its images included
    page.wait_for_load_state("load")
    return response, body.value


def test_a_hostile_message_runs_nothing_and_loads_nothing_until_asked(signed_in_page, account, pixel_server):
    page = signed_in_page
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    message, = add_messages(account, {
        "provider_message_id": "hostile-1", "subject": "Q3 figures", "sender": email("mallory@evil.example", "Mallory"),
        "to": (email("alice@example.org", "Alice"),), "body_html": _hostile_html(pixel_server.url),
        "body_text": "Hello Alice",
    })

    _, body = _open_message(page, f"/communications/{message.pk}/")
    frame = page.frame_locator("iframe.message-body")
    expect(frame.locator("b")).to_have_text("Alice")
    iframe = page.locator("iframe.message-body")
    sandbox = iframe.get_attribute("sandbox").split()
    assert "allow-scripts" not in sandbox and "allow-same-origin" not in sandbox and "allow-forms" not in sandbox
    assert "allow-top-navigation" not in sandbox
    assert iframe.get_attribute("referrerpolicy") == "no-referrer"
    csp = body.headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives["default-src"] == ["'none'"] and "sandbox" in directives
    assert "allow-scripts" not in directives["sandbox"] and "allow-same-origin" not in directives["sandbox"]
    assert "http:" not in directives["img-src"] and "https:" not in directives["img-src"]
    expect(page.get_by_text("Remote images are blocked")).to_be_visible()
    expect(frame.locator("img[alt='inline']")).to_have_js_property("naturalWidth", 1)  # data: images do show
    keep_shot(page, "message-hostile")

    link = frame.get_by_text("Run me")
    assert link.get_attribute("href") is None
    link.click()
    expect(frame.locator("script, form, button, iframe, object, svg, style, link, meta[http-equiv]")).to_have_count(0)
    page.wait_for_timeout(200)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.title().startswith("Q3 figures")
    assert dialogs == []
    assert pixel_server.requests == []
    assert len(page.context.pages) == 1  # no popup either

    # Asked for, the remote images load (only they: nothing else in the message reaches the tracker).
    with page.expect_response(re.compile(r"/communications/\d+/body/\?remote_images=1")) as body:
        page.get_by_role("link", name="Load remote images").click()
    page.wait_for_load_state("load")
    expect(page.get_by_text("Remote images are shown.")).to_be_visible()
    expect(frame.locator("img[alt='tracking pixel']")).to_have_attribute("src", f"{pixel_server.url}/pixel.gif")
    assert "http:" in re.search(r"img-src([^;]*)", body.value.headers["content-security-policy"]).group(1)
    expect(frame.locator("img[alt='tracking pixel']")).to_have_js_property("naturalWidth", 1)
    assert pixel_server.requests == ["/pixel.gif"]
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert dialogs == []


def test_a_script_that_got_past_the_sanitiser_still_cannot_run(signed_in_page, account, pixel_server, monkeypatch):
    """The CSP and the iframe's sandbox hold on their own: here the body is served unsanitised."""
    page = signed_in_page
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    monkeypatch.setattr("conversations.views.sanitize_html", lambda html, **options: html)
    message, = add_messages(account, {"provider_message_id": "raw-1", "subject": "Raw", "body_html": (
        "<p id=raw>Raw</p>"
        "<script>window.parent.__pwned = 1; alert('script'); document.getElementById('raw').textContent = 'ran'"
        "</script>"
        f'<img src="{pixel_server.url}/pixel.gif" alt="tracking pixel" onerror="window.parent.__pwned = 2">'
        f'<link rel="stylesheet" href="{pixel_server.url}/link.css">'
        f'<p style="background:url({pixel_server.url}/style.gif)">styled</p>'
    )})
    _open_message(page, f"/communications/{message.pk}/")
    frame = page.frame_locator("iframe.message-body")
    expect(frame.locator("script")).to_have_count(1)  # it is there, unsanitised ...
    expect(frame.locator("#raw")).to_have_text("Raw")  # ... and did not run
    page.wait_for_timeout(200)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert dialogs == []
    assert pixel_server.requests == []

    # The CSP alone kept the images out: once remote images are allowed they load, the style
    # attribute's background image among them (the stylesheet and the script still do not).
    page.get_by_role("link", name="Load remote images").click()
    page.wait_for_load_state("load")
    expect(frame.locator("img")).to_have_js_property("naturalWidth", 1)
    for _ in range(50):  # the background image may come in just after the <img>
        if len(pixel_server.requests) >= 2:
            break
        page.wait_for_timeout(20)
    assert sorted(pixel_server.requests) == ["/pixel.gif", "/style.gif"]
    expect(frame.locator("#raw")).to_have_text("Raw")
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert dialogs == []


def test_screenshots_of_connections_account_and_message_pages(signed_in_page, account):
    page = signed_in_page
    message, _ = add_messages(account, {
        "provider_message_id": "shot-1", "subject": "Launch plan", "sender": email("carol@acme.com", "Carol Jones"),
        "body_html": "<h2>Launch plan</h2><p>Hello <b>Alice</b>, the plan is attached.</p>"
                     '<img src="https://tracker.example/pixel.gif" alt="tracking pixel">',
    }, {"provider_message_id": "shot-2", "subject": "Re: Launch plan", "body_text": "Looks good."})
    SyncRun.objects.create(account=account, kind=SyncRun.Kind.INITIAL, status=SyncRun.Status.SUCCEEDED)
    page.goto("/connections/")
    expect(page.locator(f"#account-{account.pk}")).to_contain_text("2 messages")
    keep_shot(page, "connections")
    page.get_by_role("link", name="Alice archive").click()
    expect(page.locator("table.list tbody tr")).to_have_count(1)
    keep_shot(page, "account")
    _open_message(page, f"/communications/{message.pk}/")
    expect(page.frame_locator("iframe.message-body").locator("b")).to_have_text("Alice")
    keep_shot(page, "message")
    for name in ("connections", "account", "message"):
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 0
