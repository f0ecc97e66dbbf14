"""Every web page through Django's test client: sign-in, permissions, CSRF, and what each shows."""
from __future__ import annotations

import io
import os
import tarfile
import time
import zipfile

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from conversations.models import Communication
from integrations.models import ProviderAccount, SyncRun
from integrations.providers.base import MessageProvider
from integrations.providers.connect import OAuthConnect
from integrations.providers.mbox import MboxProvider
from integrations.providers.registry import PROVIDERS
from tests.web.conftest import SECRET, add_messages, run_tasks

pytestmark = pytest.mark.django_db


def _account_urls(pk: int) -> list[str]:
    return [reverse(f"integrations:{name}", args=[pk]) for name in ("account", "reconnect", "disconnect")]


# --- signing in -------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "/connections/", "/connections/connect/imap/", "/connections/upload/", "/connections/1/",
    "/connections/1/reconnect/", "/connections/1/disconnect/", "/communications/", "/communications/1/",
    "/communications/1/body/", "/accounts/password/",
])
def test_every_page_needs_a_sign_in(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(f"/accounts/login/?next={url}")


@pytest.mark.parametrize("url", ["/connections/1/sync/", "/connections/1/sharing/", "/connections/upload/"])
def test_posts_need_a_sign_in(client, url):
    assert client.post(url)["Location"].startswith("/accounts/login/")


def test_sign_in_and_out(client, user):
    page = client.get("/accounts/login/")
    assert b'name="username"' in page.content and b"sign up" not in page.content.lower()
    wrong = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert wrong.status_code == 200 and b"Please enter a correct username and password" in wrong.content
    signed = client.post("/accounts/login/", {"username": "alice", "password": "pw-alice-123"})
    assert signed["Location"] == "/connections/"
    assert client.get("/").url == "/connections/"
    assert client.get("/accounts/logout/").status_code == 405  # only a POST signs out
    assert client.post("/accounts/logout/")["Location"] == "/accounts/login/"
    assert client.get("/connections/").status_code == 302


def test_password_change(signed_in, user):
    assert b"Change password" in signed_in.get("/accounts/password/").content
    changed = signed_in.post("/accounts/password/", {
        "old_password": "pw-alice-123", "new_password1": "a-new-long-pass-9", "new_password2": "a-new-long-pass-9"})
    assert changed["Location"] == "/accounts/password/done/"
    user.refresh_from_db()
    assert user.check_password("a-new-long-pass-9")
    assert signed_in.get("/accounts/password/done/").status_code == 200


def test_no_self_sign_up_or_mailed_reset(client):
    assert client.get("/accounts/signup/").status_code == 404
    assert client.get("/accounts/password_reset/").status_code == 404


# --- the Connections page ------------------------------------------------------------------------

def test_connections_lists_own_accounts_with_health_and_counts(signed_in, account, imap_account, other_account):
    add_messages(account, {"provider_message_id": "a"}, {"provider_message_id": "b"})
    imap_account.status = ProviderAccount.Status.REAUTH_REQUIRED
    imap_account.last_error = "The server refused the password: enter it again."
    imap_account.save()
    page = signed_in.get("/connections/").content.decode()
    assert "Alice archive" in page and "Mbox import" in page and "<b>2</b> messages" in page
    assert "Work mail" in page and "IMAP mailbox" in page and "alice@example.org" in page
    assert '<span class="badge reauth_required" data-role="badge">Re-authentication required</span>' in page
    assert "The server refused the password: enter it again." in page
    assert reverse("integrations:reconnect", args=[imap_account.pk]) in page
    assert "Bob archive" not in page
    assert "Last sync <b data-role=\"last-sync\">never</b>" in page


def test_connections_empty_state_and_connect_options_from_the_registry(signed_in):
    page = signed_in.get("/connections/").content.decode()
    assert "No connections yet" in page
    assert reverse("integrations:connect", args=["imap"]) in page
    assert reverse("integrations:upload") in page


def test_a_running_sync_shows_its_progress_bar(signed_in, account):
    SyncRun.objects.create(account=account, kind=SyncRun.Kind.INITIAL, status=SyncRun.Status.RUNNING,
                           progress_done=25, progress_total=100, fetched=7)
    page = signed_in.get("/connections/").content.decode()
    assert "data-active" in page and 'style="width: 25%"' in page and "25% · 7 fetched" in page
    assert f'data-status-url="/api/v1/connectors/{account.pk}/status/"' in page
    assert "crmext/progress.js" in page


def test_the_status_api_the_page_polls_answers_the_session(signed_in, account, other_account):
    SyncRun.objects.create(account=account, kind=SyncRun.Kind.INITIAL, status=SyncRun.Status.RUNNING,
                           progress_done=3, progress_total=9)
    status = signed_in.get(f"/api/v1/connectors/{account.pk}/status/").json()
    assert status["current_run"]["progress_done"] == 3 and status["current_run"]["progress_total"] == 9
    assert signed_in.get(f"/api/v1/connectors/{other_account.pk}/status/").status_code == 404


class UnconfiguredOAuth(OAuthConnect):
    """An OAuth provider whose client id and secret are not in the environment."""

    def is_configured(self) -> bool:
        return False


class FakeMailProvider(MessageProvider):
    key = "fakemail"
    display_name = "Fake Mail"
    connect = UnconfiguredOAuth()


@pytest.fixture
def unconfigured_provider(monkeypatch):
    monkeypatch.setitem(PROVIDERS, "fakemail", ("Fake Mail", f"{__name__}.FakeMailProvider"))
    return "fakemail"


def test_a_provider_without_app_credentials_shows_as_unavailable(signed_in, user, unconfigured_provider):
    account = ProviderAccount.objects.create(owner=user, provider="fakemail", display_name="Old fake")
    page = signed_in.get("/connections/").content.decode()
    assert "This server has no app credentials for Fake Mail yet" in page
    assert "Unavailable" in page and "Fake Mail is unavailable on this server" in page
    assert 'class="badge error"' not in page
    assert reverse("integrations:sync", args=[account.pk]) not in page  # it could not sync: no button
    response = signed_in.get(reverse("integrations:connect", args=["fakemail"]), follow=True)
    assert b"its app credentials are not configured" in response.content
    assert signed_in.get(reverse("integrations:reconnect", args=[account.pk])).status_code == 200


def test_another_users_account_is_not_found(signed_in, other_account):
    for url in _account_urls(other_account.pk):
        assert signed_in.get(url).status_code == 404, url
    for name in ("sync", "sharing", "disconnect", "reconnect"):
        assert signed_in.post(reverse(f"integrations:{name}", args=[other_account.pk]),
                              {"sharing": "everything", "purge": "keep"}).status_code == 404, name
    other_account.refresh_from_db()
    assert other_account.sharing == "private" and other_account.status == "connected"
    assert not SyncRun.objects.filter(account=other_account).exists()


def test_unknown_provider_is_not_found(signed_in):
    assert signed_in.get("/connections/connect/nosuch/").status_code == 404


@pytest.mark.parametrize("name", ["sync", "sharing", "disconnect", "reconnect"])
def test_posts_without_the_csrf_token_are_refused(csrf_client, account, name):
    response = csrf_client.post(reverse(f"integrations:{name}", args=[account.pk]), {"sharing": "everything",
                                                                                   "purge": "keep"})
    assert response.status_code == 403
    account.refresh_from_db()
    assert account.sharing == "private" and account.status == "connected"


def test_connect_and_upload_posts_need_the_csrf_token(csrf_client, tmp_path):
    assert csrf_client.post("/connections/connect/imap/", {"host": "x"}).status_code == 403
    upload = SimpleUploadedFile("a.mbox", b"From x\n\nbody\n")
    assert csrf_client.post("/connections/upload/", {"file": upload}).status_code == 403
    assert not ProviderAccount.objects.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".upload", "upload"))] == []
    assert csrf_client.post("/accounts/logout/").status_code == 403


# --- sync now, sharing, disconnect ----------------------------------------------------------------

def test_sync_now_queues_a_delta_run(signed_in, account, task_queue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        # As the Connections page's button posts it: no kind.
        response = signed_in.post(reverse("integrations:sync", args=[account.pk]), {"next": "/connections/"},
                                  follow=True)
    run = SyncRun.objects.get(account=account)
    assert run.status == SyncRun.Status.QUEUED and run.kind == SyncRun.Kind.DELTA
    assert [func for func, _args in task_queue] == ["integrations.tasks.run_sync"]
    assert b"A sync of Alice archive has started." in response.content
    assert b"data-active" in response.content  # the page polls its progress


def test_account_page_queues_a_historical_range_or_a_full_resync(signed_in, imap_account, account, task_queue):
    page = signed_in.get(reverse("integrations:account", args=[imap_account.pk])).content.decode()
    assert "Fetch this range" in page and "Full resync" in page and 'type="date"' in page
    url = reverse("integrations:sync", args=[imap_account.pk])
    response = signed_in.post(url, {"kind": "historical", "since": "2019-01-01", "until": "2020-01-01"}, follow=True)
    run = SyncRun.objects.get(account=imap_account)
    assert (run.kind, run.status, run.since.year, run.until.year) == ("historical", "queued", 2019, 2020)
    assert b"Fetching the mail of" in response.content and b"from 2019-01-01 until 2020-01-01" in response.content
    run.delete()
    for bad, reason in (({"since": "2020-01-01", "until": "2019-01-01"}, b"The range must start before it ends."),
                        ({"since": "2019-01-01"}, b"Give both dates of the range to fetch."),
                        ({"since": "yesterday", "until": "2020-01-01"}, b"Enter a valid date.")):
        refused = signed_in.post(url, {"kind": "historical", **bad}, follow=True)
        assert reason in refused.content and not SyncRun.objects.exists(), bad
    full = signed_in.post(url, {"kind": "full"}, follow=True)
    assert b"A full resync of" in full.content and SyncRun.objects.get().kind == "full_resync"
    # An import cannot fetch a date range: no range form, and a forged request says why.
    imports = signed_in.get(reverse("integrations:account", args=[account.pk])).content.decode()
    assert "Fetch this range" not in imports and "Full resync" in imports
    forged = signed_in.post(reverse("integrations:sync", args=[account.pk]),
                            {"kind": "historical", "since": "2019-01-01", "until": "2020-01-01"}, follow=True)
    assert b"cannot fetch a date range" in forged.content


def test_sync_now_says_why_not(signed_in, account):
    SyncRun.objects.create(account=account, kind=SyncRun.Kind.DELTA, status=SyncRun.Status.RUNNING)
    busy = signed_in.post(reverse("integrations:sync", args=[account.pk]), follow=True)
    assert b"A sync of this account is already running" in busy.content
    ProviderAccount.objects.filter(pk=account.pk).update(status="disabled", last_error="Turned off by an admin.")
    refused = signed_in.post(reverse("integrations:sync", args=[account.pk]), follow=True)
    assert b'<li class="error">' in refused.content  # request_sync's reason, shown as an error
    assert b"cannot sync" in refused.content and b"Turned off by an admin." in refused.content


def test_sync_now_returns_to_a_local_page_only(signed_in, account, task_queue):
    detail = reverse("integrations:account", args=[account.pk])
    assert signed_in.post(reverse("integrations:sync", args=[account.pk]), {"next": detail})["Location"] == detail
    SyncRun.objects.all().delete()
    evil = signed_in.post(reverse("integrations:sync", args=[account.pk]), {"next": "https://evil.example/"})
    assert evil["Location"] == "/connections/"


def test_sharing_level(signed_in, account):
    response = signed_in.post(reverse("integrations:sharing", args=[account.pk]), {"sharing": "subject"},
                              follow=True)
    account.refresh_from_db()
    assert account.sharing == "subject"
    assert b"teammates now see subject: metadata and subject" in response.content
    bad = signed_in.post(reverse("integrations:sharing", args=[account.pk]), {"sharing": "world"}, follow=True)
    account.refresh_from_db()
    assert account.sharing == "subject" and b"Choose one of the sharing levels offered." in bad.content


def test_disconnect_asks_first_then_erases_the_credentials(signed_in, imap_account):
    url = reverse("integrations:disconnect", args=[imap_account.pk])
    page = signed_in.get(url).content.decode()
    assert "Disconnect Work mail?" in page and "Keep them" in page and "Delete them too" in page
    imap_account.refresh_from_db()
    assert imap_account.credentials  # a GET changes nothing
    response = signed_in.post(url, {"purge": "keep"}, follow=True)
    imap_account.refresh_from_db()
    assert imap_account.credentials == {} and imap_account.status == "disabled"
    assert b"Disconnected Work mail: its credentials were erased; its messages are kept." in response.content


def test_disconnect_and_delete_the_messages(signed_in, account, monkeypatch, django_capture_on_commit_callbacks):
    queued = []
    monkeypatch.setattr("integrations.accounts.async_task", lambda func, *args, **kwargs: queued.append(func))
    add_messages(account, {"provider_message_id": "x"})
    with django_capture_on_commit_callbacks(execute=True):
        response = signed_in.post(reverse("integrations:disconnect", args=[account.pk]), {"purge": "delete"},
                                  follow=True)
    assert b"its messages are being deleted" in response.content
    assert queued == ["integrations.accounts.purge_account"]


# --- connecting an IMAP mailbox (against the real Dovecot) ---------------------------------------

def _imap_form(imap_user, **changes) -> dict[str, object]:
    return {"host": imap_user.host, "port": imap_user.port, "security": "none", "username": imap_user.username,
            "password": imap_user.password, **changes}


def test_connect_form_is_built_from_the_provider(signed_in):
    page = signed_in.get("/connections/connect/imap/").content.decode()
    for name in ("host", "port", "security", "username", "folders", "password", "display_name"):
        assert f'name="{name}"' in page, name
    assert 'type="password"' in page


def test_connect_imap_wrong_password_is_an_inline_error(signed_in, imap_user, task_queue):
    response = signed_in.post("/connections/connect/imap/", _imap_form(imap_user, password="wrong-password"))
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="id_password-errors"' in page and "The login was refused" in page
    assert "wrong-password" not in page  # a password is never rendered back
    assert not ProviderAccount.objects.exists()


def test_connect_imap_right_password(signed_in, user, imap_user, task_queue):
    response = signed_in.post("/connections/connect/imap/", _imap_form(imap_user))
    assert response["Location"] == "/connections/"
    account = ProviderAccount.objects.get(owner=user)
    assert account.provider == "imap" and account.credentials == {"password": imap_user.password}
    assert account.display_name == f"{imap_user.username} on {imap_user.host}"
    assert SyncRun.objects.get(account=account).status == SyncRun.Status.QUEUED  # its first sync
    again = signed_in.post("/connections/connect/imap/", _imap_form(imap_user))
    assert b"You have connected this account already" in again.content


def test_connect_refuses_clear_text_unless_allowed(signed_in, settings, imap_user):
    settings.ALLOW_INSECURE_IMAP = False
    response = signed_in.post("/connections/connect/imap/", _imap_form(imap_user))
    assert 'id="id_security-errors"' in response.content.decode()
    assert b"in clear text" in response.content
    assert not ProviderAccount.objects.exists()


def test_connect_shows_an_unreachable_server_above_the_form(signed_in, imap_user):
    response = signed_in.post("/connections/connect/imap/", _imap_form(imap_user, host="127.0.0.1", port=1))
    assert b'class="errorlist nonfield"' in response.content and b"Could not connect" in response.content


def test_connect_validates_fields_inline(signed_in):
    response = signed_in.post("/connections/connect/imap/", {"security": "ssl", "port": "huge"})
    page = response.content.decode()
    assert 'id="id_host-errors"' in page and 'id="id_password-errors"' in page and 'id="id_port-errors"' in page


# --- reconnecting ---------------------------------------------------------------------------------

@pytest.fixture
def reauth_account(user, imap_user) -> ProviderAccount:
    return ProviderAccount.objects.create(
        owner=user, provider="imap", display_name="Dovecot", status=ProviderAccount.Status.REAUTH_REQUIRED,
        last_error="The server refused the password: reconnect with the new one.", next_sync_at=None,
        config={"host": imap_user.host, "port": imap_user.port, "security": "none", "username": imap_user.username},
        credentials={"password": SECRET},
    )


def test_reconnect_shows_the_reason_and_prefills_the_settings(signed_in, reauth_account, imap_user):
    page = signed_in.get(reverse("integrations:reconnect", args=[reauth_account.pk])).content.decode()
    assert "The server refused the password: reconnect with the new one." in page
    assert f'value="{imap_user.username}"' in page and f'value="{imap_user.port}"' in page
    assert SECRET not in page


def test_reconnect_wrong_then_right_password(signed_in, reauth_account, imap_user):
    url = reverse("integrations:reconnect", args=[reauth_account.pk])
    wrong = signed_in.post(url, _imap_form(imap_user, password="nope"))
    assert 'id="id_password-errors"' in wrong.content.decode()
    reauth_account.refresh_from_db()
    assert reauth_account.status == "reauth_required" and reauth_account.credentials == {"password": SECRET}
    right = signed_in.post(url, _imap_form(imap_user))
    assert right["Location"] == "/connections/"
    reauth_account.refresh_from_db()
    assert reauth_account.status == "connected" and reauth_account.credentials == {"password": imap_user.password}
    assert reauth_account.last_error == "" and reauth_account.next_sync_at is not None


def test_reconnect_enables_a_disconnected_account(signed_in, reauth_account, imap_user):
    ProviderAccount.objects.filter(pk=reauth_account.pk).update(status="disabled", credentials={})
    response = signed_in.post(reverse("integrations:reconnect", args=[reauth_account.pk]), _imap_form(imap_user))
    assert response.status_code == 302
    reauth_account.refresh_from_db()
    assert reauth_account.status == "connected"


def test_reconnect_of_an_import_points_to_the_upload(signed_in, account):
    page = signed_in.get(reverse("integrations:reconnect", args=[account.pk])).content.decode()
    assert reverse("integrations:upload") in page and "uploading the file" in page


# --- the account page -----------------------------------------------------------------------------

def test_account_page_lists_runs_and_errors(signed_in, imap_account):
    SyncRun.objects.create(account=imap_account, kind="initial", status="succeeded", fetched=12, created=10)
    SyncRun.objects.create(account=imap_account, kind="delta", status="failed", error="Connection reset by peer")
    page = signed_in.get(reverse("integrations:account", args=[imap_account.pk])).content.decode()
    assert "Initial backfill" in page and '<span class="badge failed">Failed</span>' in page
    assert "Connection reset by peer" in page and "imap.example.org" in page
    assert "Change credentials" in page


def test_account_page_empty_state(signed_in, account):
    page = signed_in.get(reverse("integrations:account", args=[account.pk])).content.decode()
    assert "No syncs yet" in page


# --- secrets --------------------------------------------------------------------------------------

def test_secrets_never_appear_on_any_page(signed_in, imap_account, reauth_account, account, mail):
    pages = ["/connections/", "/communications/", *_account_urls(imap_account.pk),
             *_account_urls(reauth_account.pk), reverse("conversations:communication", args=[mail["own"].pk]),
             reverse("conversations:body", args=[mail["own"].pk]), "/connections/connect/imap/"]
    for url in pages:
        response = signed_in.get(url)
        assert response.status_code == 200, url
        assert SECRET not in response.content.decode(), url
    failed = signed_in.post(reverse("integrations:reconnect", args=[reauth_account.pk]),
                            {"host": "127.0.0.1", "port": 1, "security": "none", "username": "x", "password": SECRET})
    assert SECRET not in failed.content.decode()


# --- communications -------------------------------------------------------------------------------

def test_communications_lists_own_messages_only(signed_in, mail):
    page = signed_in.get("/communications/").content.decode()
    assert "Quarterly numbers" in page and "Carol Jones" in page
    assert "Bob&#x27;s private plans" not in page and "Dave" not in page


def test_communications_shows_what_teammates_share_at_their_level(signed_in, mail, other_account):
    ProviderAccount.objects.filter(pk=other_account.pk).update(sharing="metadata")
    page = signed_in.get("/communications/").content.decode()
    assert "Dave" in page and "Subject not shared" in page and "Shared by bob" in page
    assert "private plans" not in page
    ProviderAccount.objects.filter(pk=other_account.pk).update(sharing="subject")
    assert "Bob&#x27;s private plans" in signed_in.get("/communications/").content.decode()


def test_communications_search_and_account_filter(signed_in, mail, account):
    assert "Quarterly numbers" in signed_in.get("/communications/", {"q": "quarterly"}).content.decode()
    none = signed_in.get("/communications/", {"q": "nothing-like-this"}).content.decode()
    assert "Nothing matches" in none
    assert "Quarterly numbers" in signed_in.get("/communications/", {"account": account.pk}).content.decode()


def test_communications_empty_state(signed_in):
    assert "No messages yet" in signed_in.get("/communications/").content.decode()


def test_communications_pages(signed_in, account):
    add_messages(account, *({"provider_message_id": f"p{n}"} for n in range(55)))
    first = signed_in.get("/communications/").content.decode()
    assert "page=2" in first and "Older" in first
    second = signed_in.get("/communications/", {"page": 2}).content.decode()
    assert second.count("/communications/") > 5 and "Newer" in second


def test_message_view_of_own_message(signed_in, mail):
    own = mail["own"]
    page = signed_in.get(reverse("conversations:communication", args=[own.pk])).content.decode()
    assert "Quarterly numbers" in page and "boss@example.org" in page  # the owner sees their Bcc
    assert f'src="/communications/{own.pk}/body/"' in page and 'sandbox="allow-popups' in page
    assert "Remote images are blocked" in page and "alert(" not in page
    remote = signed_in.get(reverse("conversations:communication", args=[own.pk]), {"remote_images": "1"})
    assert f'src="/communications/{own.pk}/body/?remote_images=1"' in remote.content.decode()


def test_message_body_is_sanitised_in_a_sandbox(signed_in, mail):
    url = reverse("conversations:body", args=[mail["own"].pk])
    response = signed_in.get(url)
    body = response.content.decode()
    assert "<b>Alice</b>" in body and "<script" not in body and "tracker.example" not in body
    csp = response["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "img-src data: cid:;" in csp
    assert "script-src" not in csp and response["X-Frame-Options"] == "SAMEORIGIN"
    remote = signed_in.get(url, {"remote_images": "1"})
    assert "https://tracker.example/pixel.gif" in remote.content.decode()
    assert "img-src data: cid: https: http:" in remote["Content-Security-Policy"]


def test_a_text_only_body_is_escaped(signed_in, account):
    message, = add_messages(account, {"provider_message_id": "t", "body_text": "<script>x</script> 1 < 2"})
    body = signed_in.get(reverse("conversations:body", args=[message.pk])).content.decode()
    assert "&lt;script&gt;x&lt;/script&gt; 1 &lt; 2" in body


def test_another_users_private_message_is_not_found(signed_in, mail):
    for name in ("communication", "body"):
        assert signed_in.get(reverse(f"conversations:{name}", args=[mail["theirs"].pk])).status_code == 404


def test_a_shared_message_shows_its_level_only(signed_in, mail, other_account):
    theirs = mail["theirs"]
    ProviderAccount.objects.filter(pk=other_account.pk).update(sharing="subject")
    page = signed_in.get(reverse("conversations:communication", args=[theirs.pk])).content.decode()
    assert "Bob&#x27;s private plans" in page and "Content not shared" in page
    assert "hidden@example.net" not in page and "<iframe" not in page  # no Bcc, no body
    assert signed_in.get(reverse("conversations:body", args=[theirs.pk])).status_code == 404
    ProviderAccount.objects.filter(pk=other_account.pk).update(sharing="everything")
    body = signed_in.get(reverse("conversations:body", args=[theirs.pk])).content.decode()
    assert "Secret body of Bob" in body


def test_attachments_download_from_the_message_view_at_level_everything(signed_in, settings, account, other_account):
    from conversations.messages import ParsedAttachment

    settings.ATTACHMENT_MAX_BYTES = 10
    own, = add_messages(account, {"provider_message_id": "att", "attachments": (
        ParsedAttachment.from_bytes("notes.html", "text/html", b"<script>"),
        ParsedAttachment.from_bytes("big.bin", "application/x-y", b"x" * 11))})
    small, big = own.attachments.order_by("pk")
    page = signed_in.get(reverse("conversations:communication", args=[own.pk])).content.decode()
    url = reverse("conversations:attachment", args=[own.pk, small.pk])
    assert f'href="{url}"' in page and "not stored (over the size limit)" in page
    response = signed_in.get(url)
    assert b"".join(response.streaming_content) == b"<script>"
    assert response["Content-Disposition"].startswith("attachment;") and "sandbox" in response["Content-Security-Policy"]
    assert signed_in.get(reverse("conversations:attachment", args=[own.pk, big.pk])).status_code == 404
    theirs, = add_messages(other_account, {"provider_message_id": "their-att", "attachments": (
        ParsedAttachment.from_bytes("a.txt", "text/plain", b"a"),)})
    their_url = reverse("conversations:attachment", args=[theirs.pk, theirs.attachments.get().pk])
    for sharing, status in (("private", 404), ("subject", 404), ("everything", 200)):
        ProviderAccount.objects.filter(pk=other_account.pk).update(sharing=sharing)
        assert signed_in.get(their_url).status_code == status, sharing
    # An attachment id of another message is not reachable through this one.
    assert signed_in.get(reverse("conversations:attachment", args=[own.pk, theirs.attachments.get().pk])).status_code == 404


def test_superusers_see_all_on_the_web_too(client, mail):
    root = get_user_model().objects.create_superuser("root", "root@example.org", "pw-root-123")
    client.force_login(root)
    assert client.get(reverse("conversations:communication", args=[mail["theirs"].pk])).status_code == 200
    assert Communication.objects.count() == 2


# --- uploads --------------------------------------------------------------------------------------

MBOX = (b"From 1@xxx Mon Nov  2 10:00:00 2026\nFrom: Carol <carol@acme.com>\nTo: alice@example.org\n"
        b"Subject: Imported one\nMessage-ID: <i1@acme.com>\n\nFirst body\n\n"
        b"From 2@xxx Mon Nov  2 10:01:00 2026\nFrom: Dan <dan@acme.com>\nTo: alice@example.org\n"
        b"Subject: Imported two\nMessage-ID: <i2@acme.com>\n\nLast body\n")


def _upload(client, name: str, content: bytes, **fields):
    return client.post("/connections/upload/", {"file": SimpleUploadedFile(name, content), **fields}, follow=True)


def _leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".part"))


def test_upload_an_mbox_streams_it_into_the_import_dir_and_imports_it(
        signed_in, user, settings, task_queue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = _upload(signed_in, "My Export.mbox", MBOX, display_name="Old laptop")
    assert b"Uploaded Old laptop: its import has started." in response.content
    account = ProviderAccount.objects.get(owner=user, provider="mbox")
    path = account.config["path"]
    assert path.startswith(str(settings.MBOX_IMPORT_DIR)) and path.endswith("-My_Export.mbox")
    with open(path, "rb") as handle:
        assert handle.read() == MBOX
    assert time.time() - os.stat(path).st_mtime > MboxProvider.settle_seconds  # its last message counts at once
    assert _leftovers(settings.MBOX_IMPORT_DIR) == []
    assert account.next_sync_at is None and account.external_address == "alice@example.org"
    run_tasks(task_queue)
    assert sorted(Communication.objects.filter(account=account).values_list("subject", flat=True)) == [
        "Imported one", "Imported two"]
    assert SyncRun.objects.get(account=account).status == "succeeded"


def test_upload_refuses_a_file_that_is_no_mbox(signed_in, settings):
    response = _upload(signed_in, "notes.txt", b"Dear diary\n")
    page = response.content.decode()
    assert 'id="id_file-errors"' in page and "is not an mbox file" in page
    assert not ProviderAccount.objects.exists()
    assert _leftovers(settings.MBOX_IMPORT_DIR) == []


@pytest.mark.parametrize("kind", ["zip", "tgz"])
def test_upload_a_takeout_archive_imports_its_mbox(signed_in, user, settings, kind):
    member = "Takeout/Mail/All mail Including Spam and Trash.mbox"
    buffer = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("Takeout/archive_browser.html", "<html></html>")
            archive.writestr(member, MBOX)
    else:
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            info = tarfile.TarInfo(member)
            info.size = len(MBOX)
            archive.addfile(info, io.BytesIO(MBOX))
    response = _upload(signed_in, f"takeout-20261101.{kind}", buffer.getvalue())
    assert b"Uploaded All mail Including Spam and Trash.mbox" in response.content
    account = ProviderAccount.objects.get(owner=user)
    with open(account.config["path"], "rb") as handle:
        assert handle.read() == MBOX
    files = sorted(p.name for p in settings.MBOX_IMPORT_DIR.iterdir())
    assert files == [account.config["path"].rsplit("/", 1)[1]]  # the archive itself is gone


def test_an_upload_over_the_size_limit_is_refused_and_nothing_is_kept(signed_in, settings):
    settings.UPLOAD_MAX_BYTES = 1024 * 1024
    big = MBOX + b"x" * (settings.UPLOAD_MAX_BYTES + 1)
    page = _upload(signed_in, "huge.mbox", big).content.decode()
    assert 'id="id_file-errors"' in page and "huge.mbox is larger than this server takes" in page
    assert "UPLOAD_MAX_BYTES" in page and not ProviderAccount.objects.exists()
    assert list(settings.MBOX_IMPORT_DIR.iterdir()) == []


def test_an_upload_that_would_fill_the_disk_is_refused(signed_in, settings, monkeypatch):
    import integrations.forms

    settings.UPLOAD_MIN_FREE_BYTES = 10 * 1024**3
    monkeypatch.setattr(integrations.forms, "_free_bytes", lambda: 10 * 1024**3 + 100)
    page = _upload(signed_in, "export.mbox", MBOX + b"x" * 200).content.decode()
    assert "export.mbox does not fit on this server&#x27;s disk" in page and not ProviderAccount.objects.exists()
    assert list(settings.MBOX_IMPORT_DIR.iterdir()) == []


def test_an_archive_whose_mbox_would_unpack_past_the_limits_is_refused(signed_in, settings, monkeypatch):
    import integrations.forms

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("Takeout/Mail/All mail.mbox", MBOX + b"\n" * (3 * 1024 * 1024))  # compresses to little
    settings.UPLOAD_MAX_BYTES = 2 * 1024 * 1024
    page = _upload(signed_in, "takeout.zip", buffer.getvalue()).content.decode()
    assert "takeout.zip: its mbox files is larger than this server takes" in page
    settings.UPLOAD_MAX_BYTES = 20 * 1024 * 1024
    monkeypatch.setattr(integrations.forms, "_free_bytes", lambda: settings.UPLOAD_MIN_FREE_BYTES + 1024 * 1024)
    page = _upload(signed_in, "takeout.zip", buffer.getvalue()).content.decode()
    assert "its mbox files, unpacked, does not fit" in page
    assert not ProviderAccount.objects.exists() and list(settings.MBOX_IMPORT_DIR.iterdir()) == []


def test_upload_an_archive_without_mail(signed_in, settings):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("Takeout/Drive/notes.txt", "hi")
    page = _upload(signed_in, "takeout.zip", buffer.getvalue()).content.decode()
    assert "holds no .mbox file" in page and not ProviderAccount.objects.exists()
    assert list(settings.MBOX_IMPORT_DIR.iterdir()) == []
