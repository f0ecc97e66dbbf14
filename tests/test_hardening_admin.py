"""Staff who are not superusers reach no secret and no other user's content.

The admin's trust model: connection settings are read-only there, any change of them
forgets the credentials, and message content of other users' accounts shows only to
superusers and to staff with conversations.view_all_content.
"""
from __future__ import annotations

import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse

from conversations.ingest import store_batch
from conversations.messages import ParsedAttachment
from conversations.models import Communication
from integrations.accounts import save_credentials
from integrations.models import ProviderAccount, QuarantinedMessage
from integrations.quarantine import quarantine
from integrations.sync import claim
from tests.factories import message

pytestmark = pytest.mark.django_db

SECRET = "victim-password-Zx81"
SUBJECT = "Quarterly numbers, confidential"
BODY = "The body nobody else should read"

STAFF_PERMISSIONS = [
    "view_provideraccount", "change_provideraccount", "view_communication", "change_communication",
    "view_conversation", "view_attachment", "view_participant", "view_quarantinedmessage", "view_messageref",
]


def _staff(username: str, *extra: str):
    user = get_user_model().objects.create_user(username, f"{username}@corp.example", "pw-staff-123", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=[*STAFF_PERMISSIONS, *extra]))
    return user


@pytest.fixture
def victim_account(user):
    account = ProviderAccount.objects.create(
        owner=user, provider="imap", display_name="Alice IMAP", external_address="alice@example.org",
        config={"host": "imap.example.org", "port": 993, "security": "ssl", "username": "alice"},
        credentials={"password": SECRET},
    )
    store_batch(account, [message(
        subject=SUBJECT, body_text=BODY, body_html=f"<p>{BODY}</p>",
        attachments=(ParsedAttachment.from_bytes("secret-plan.pdf", "application/pdf", b"%PDF"),),
    )])
    return account


@pytest.fixture
def staff_client(client):
    client.force_login(_staff("eve"))
    return client


def _page(client, url: str, status: int = 200) -> str:
    response = client.get(url)
    assert response.status_code == status, url
    return response.content.decode()


# --- connection settings --------------------------------------------------------------------

def test_connection_settings_are_read_only_for_staff(staff_client, victim_account):
    url = reverse("admin:integrations_provideraccount_change", args=[victim_account.pk])
    page = _page(staff_client, url)
    assert 'name="config"' not in page and "imap.example.org" in page and SECRET not in page
    response = staff_client.post(url, {
        "display_name": "renamed", "external_address": "alice@example.org", "sync_interval": 300,
        "config": json.dumps({"host": "evil.example", "security": "none"}),
        "sync_runs-TOTAL_FORMS": 0, "sync_runs-INITIAL_FORMS": 0,
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    victim_account.refresh_from_db()
    assert victim_account.display_name == "renamed"
    assert victim_account.config["host"] == "imap.example.org"
    assert victim_account.credentials == {"password": SECRET}


@pytest.mark.parametrize("key,value", [("host", "evil.example"), ("port", 143), ("security", "none"),
                                       ("username", "eve")])
def test_any_change_of_connection_settings_forgets_the_credentials(victim_account, key, value):
    account = ProviderAccount.objects.get(pk=victim_account.pk)
    account.config[key] = value
    account.save(update_fields=["config"])
    account = ProviderAccount.objects.get(pk=victim_account.pk)
    assert account.credentials == {}
    assert account.status == ProviderAccount.Status.REAUTH_REQUIRED and account.next_sync_at is None
    assert key in account.last_error and "Reconnect" in account.last_error


def test_new_connection_settings_with_new_credentials_keep_them(victim_account):
    account = ProviderAccount.objects.get(pk=victim_account.pk)
    account.config = {**account.config, "host": "imap2.example.org"}
    save_credentials(account, {"password": SECRET})  # the same password, entered again
    account = ProviderAccount.objects.get(pk=victim_account.pk)
    assert account.credentials == {"password": SECRET} and account.status == "connected"


def test_other_changes_keep_the_credentials(victim_account):
    account = ProviderAccount.objects.get(pk=victim_account.pk)
    account.config["folders"] = ["INBOX"]
    account.display_name = "x"
    account.save()
    assert ProviderAccount.objects.get(pk=victim_account.pk).credentials == {"password": SECRET}


# --- a running sync's claim and cursor -----------------------------------------------------------

def test_reconnecting_during_a_sync_keeps_its_claim_and_cursor(victim_account):
    stale_copy = ProviderAccount.objects.get(pk=victim_account.pk)
    token = claim(victim_account.pk)
    ProviderAccount.objects.filter(pk=victim_account.pk).update(sync_cursor={"folders": {"INBOX": 1}},
                                                                backfill_state={"page_token": {"p": 2}})
    save_credentials(stale_copy, {"password": "new-one"})
    account = ProviderAccount.objects.get(pk=victim_account.pk)
    assert account.claim_token == token and account.claimed_at is not None
    assert account.sync_cursor == {"folders": {"INBOX": 1}} and account.backfill_state == {"page_token": {"p": 2}}
    assert account.credentials == {"password": "new-one"}


def test_saving_in_the_admin_during_a_sync_keeps_its_claim_and_cursor(staff_client, victim_account):
    url = reverse("admin:integrations_provideraccount_change", args=[victim_account.pk])
    _page(staff_client, url)
    token = claim(victim_account.pk)
    ProviderAccount.objects.filter(pk=victim_account.pk).update(sync_cursor={"c": 9})
    response = staff_client.post(url, {
        "display_name": "renamed", "external_address": "alice@example.org", "sync_interval": 600,
        "sync_runs-TOTAL_FORMS": 0, "sync_runs-INITIAL_FORMS": 0,
    })
    assert response.status_code == 302
    account = ProviderAccount.objects.get(pk=victim_account.pk)
    assert (account.claim_token, account.sync_cursor, account.sync_interval) == (token, {"c": 9}, 600)


# --- content ---------------------------------------------------------------------------------------

def test_staff_see_metadata_but_not_content_of_other_users_mail(staff_client, victim_account):
    communication = Communication.objects.get(account=victim_account)
    pages = [
        reverse("admin:conversations_communication_changelist"),
        reverse("admin:conversations_communication_change", args=[communication.pk]),
        reverse("admin:conversations_conversation_changelist"),
        reverse("admin:conversations_conversation_change", args=[communication.conversation_id]),
        reverse("admin:conversations_participant_changelist"),
        reverse("admin:conversations_attachment_changelist"),
        reverse("admin:conversations_messageref_changelist"),
    ]
    for url in pages:
        page = _page(staff_client, url)
        for secret in (SUBJECT, BODY, "secret-plan.pdf"):
            assert secret not in page, (url, secret)
    change = _page(staff_client, pages[1])
    assert "carol@acme.com" in change  # participants are metadata
    assert "Hidden: this message belongs to another user" in change
    _page(staff_client, reverse("admin:conversations_communication_preview", args=[communication.pk]), 403)
    # A subject search must not tell whose mail holds a word.
    listing = _page(staff_client, reverse("admin:conversations_communication_changelist") + "?q=Quarterly")
    assert "0 communications" in listing or f"#{communication.pk}" not in listing


def test_owners_and_permitted_staff_read_the_content(client, victim_account, user):
    communication = Communication.objects.get(account=victim_account)
    change_url = reverse("admin:conversations_communication_change", args=[communication.pk])
    preview_url = reverse("admin:conversations_communication_preview", args=[communication.pk])
    for reader in (_staff("auditor", "view_all_content"), user):
        if reader == user:
            user.is_staff = True
            user.save()
            user.user_permissions.add(*Permission.objects.filter(codename__in=STAFF_PERMISSIONS))
        client.force_login(reader)
        assert SUBJECT in _page(client, change_url)
        assert BODY in _page(client, preview_url)
        assert "secret-plan.pdf" in _page(client, reverse("admin:conversations_attachment_changelist"))


def test_quarantine_admin_hides_content_and_retries(client, staff_client, victim_account):
    bad = message(raw_size=-1, subject=SUBJECT)
    item = quarantine(victim_account, bad, ValueError("boom"))
    listing = _page(staff_client, reverse("admin:integrations_quarantinedmessage_changelist"))
    assert bad.provider_message_id in listing and SUBJECT not in listing
    assert SUBJECT not in _page(staff_client, reverse("admin:integrations_quarantinedmessage_change", args=[item.pk]))

    # Viewing is not retrying: retry writes, and takes the change permission.
    response = staff_client.post(reverse("admin:integrations_quarantinedmessage_changelist"),
                                 {"action": "retry_selected", "_selected_action": [item.pk]})
    assert QuarantinedMessage.objects.filter(pk=item.pk, attempts=1).exists()

    get_user_model().objects.create_superuser("root", "root@corp.example", "pw-root-123")
    client.login(username="root", password="pw-root-123")
    assert SUBJECT in _page(client, reverse("admin:integrations_quarantinedmessage_changelist"))
    item.copy = {**item.copy, "raw_size": 1}
    item.save()
    response = client.post(reverse("admin:integrations_quarantinedmessage_changelist"),
                           {"action": "retry_selected", "_selected_action": [item.pk]}, follow=True)
    assert "Stored 1 message" in response.content.decode()
    assert not QuarantinedMessage.objects.exists()
    assert Communication.objects.filter(provider_message_id=bad.provider_message_id).exists()


# --- credentials in fixtures ---------------------------------------------------------------------

def test_credentials_survive_dumpdata_and_loaddata(victim_account, tmp_path):
    dump = tmp_path / "accounts.json"
    out = io.StringIO()
    call_command("dumpdata", "integrations.provideraccount", stdout=out)
    assert SECRET not in out.getvalue()
    dump.write_text(out.getvalue())
    ProviderAccount.objects.filter(pk=victim_account.pk).update(credentials={})
    call_command("loaddata", str(dump), verbosity=0)
    assert ProviderAccount.objects.get(pk=victim_account.pk).credentials == {"password": SECRET}


def test_synced_data_is_read_only_and_lists_show_the_sender(client, victim_account):
    get_user_model().objects.create_superuser("root", "root@corp.example", "pw-root-123")
    client.login(username="root", password="pw-root-123")
    communication = Communication.objects.get(account=victim_account)
    for model in ("communication", "participant", "attachment", "conversation", "messageref", "threadkey"):
        assert client.get(reverse(f"admin:conversations_{model}_add")).status_code == 403, model
    change = _page(client, reverse("admin:conversations_communication_change", args=[communication.pk]))
    assert 'name="subject"' not in change and 'name="body_text"' not in change
    assert 'name="participants-0-contact"' not in change  # participants are read-only too
    assert SUBJECT in change  # shown, not editable
    listing = _page(client, reverse("admin:conversations_communication_changelist"))
    assert "carol@acme.com" in listing  # the sender column
