"""Domain-wide delegation: ``manage.py enroll_gmail_domain`` and the admin's "Enroll Gmail
mailboxes" page, against the fake Google's JWT-bearer grant (which refuses users outside the
delegated domains). The key must show up nowhere: not in output, logs, pages or errors."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import connection

from integrations.models import ProviderAccount
from integrations.providers.gmail import enroll
from tests.fakes.gmail import FakeGmail

pytestmark = pytest.mark.django_db

SERVICE = "crm-reader@crm-project.iam.gserviceaccount.com"


@pytest.fixture(autouse=True)
def google(gmail_fake: FakeGmail, settings, caplog) -> FakeGmail:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.GMAIL_PUBSUB_TOPIC = ""
    caplog.set_level(logging.DEBUG)
    for address in ("ann@corp.example", "ben@corp.example", "eve@other.example"):
        gmail_fake.add_mailbox(address)
    return gmail_fake


@pytest.fixture
def key(google: FakeGmail) -> dict[str, Any]:
    return google.create_service_account(SERVICE, domains=["corp.example"])


@pytest.fixture
def key_file(key: dict[str, Any], tmp_path: Path) -> Path:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(key))
    return path


def secrets_of(key: dict[str, Any]) -> list[str]:
    body = "".join(key["private_key"].splitlines()[1:-1])
    return [key["private_key"], body[:40], body[-40:], key["private_key_id"]]


def assert_nowhere(key: dict[str, Any], *texts: str) -> None:
    for text in texts:
        for secret in secrets_of(key):
            assert secret not in text


def run(*args: str) -> tuple[str, str, CommandError | None]:
    import io

    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("enroll_gmail_domain", *args, stdout=out, stderr=err)
    except CommandError as error:
        return out.getvalue(), err.getvalue(), error
    return out.getvalue(), err.getvalue(), None


# --- the command --------------------------------------------------------------------------------

def test_enroll_users_from_a_key_file(user, key, key_file, caplog, capsys):
    out, err, error = run("--key-file", str(key_file), "--owner", "alice", "--users", "ann@corp.example,Ben@corp.example")
    assert error is None, (out, err)
    assert "enrolled ann@corp.example (account" in out and "enrolled ben@corp.example (account" in out
    accounts = {a.external_address: a for a in ProviderAccount.objects.all()}
    assert set(accounts) == {"ann@corp.example", "ben@corp.example"}
    ann = accounts["ann@corp.example"]
    assert (ann.owner, ann.provider, ann.config, ann.status) == (user, "gmail", {"email": "ann@corp.example"},
                                                                 "connected")
    assert ann.credentials["kind"] == "service_account" and ann.credentials["subject"] == "ann@corp.example"
    assert ann.credentials["service_account_info"]["private_key"] == key["private_key"]
    assert ann.credentials["access_token"].startswith("ya29.fake-")
    with connection.cursor() as cursor:  # encrypted at rest
        cursor.execute("SELECT credentials FROM integrations_provideraccount WHERE id = %s", [ann.pk])
        assert_nowhere(key, cursor.fetchone()[0])
    captured = capsys.readouterr()
    assert_nowhere(key, out, err, caplog.text, captured.out, captured.err)


def test_a_user_outside_the_delegated_domain_is_refused_and_reported(user, key, key_file, caplog, capsys):
    out, err, error = run("--key-file", str(key_file), "--owner", "alice",
                          "--users", "ann@corp.example, eve@other.example")
    assert error is not None and "1 of 2 mailbox(es) were not enrolled" in str(error)
    assert "enrolled ann@corp.example" in out
    assert "refused eve@other.example" in err and "domain-wide delegation" in err
    assert list(ProviderAccount.objects.values_list("external_address", flat=True)) == ["ann@corp.example"]
    captured = capsys.readouterr()
    assert_nowhere(key, out, err, str(error), caplog.text, captured.out, captured.err)


def test_the_key_from_an_environment_variable(user, key, monkeypatch, caplog):
    monkeypatch.setenv("GMAIL_DELEGATION_KEY", json.dumps(key))
    out, err, error = run("--key-env", "GMAIL_DELEGATION_KEY", "--owner", "alice@example.org",
                          "--domain", "corp.example", "--users", "ann")
    assert error is None, err
    assert ProviderAccount.objects.get().external_address == "ann@corp.example"
    assert_nowhere(key, out, err, caplog.text)


def test_domain_alone_re_enrolls_the_owners_accounts_in_it(user, key, key_file):
    existing = ProviderAccount.objects.create(owner=user, provider="gmail", external_address="ben@corp.example",
                                              config={"email": "ben@corp.example"}, status="reauth_required",
                                              credentials={"kind": "oauth", "refresh_token": "old"})
    ProviderAccount.objects.create(owner=user, provider="gmail", external_address="eve@other.example",
                                   config={"email": "eve@other.example"})
    out, err, error = run("--key-file", str(key_file), "--owner", "alice", "--domain", "corp.example")
    assert error is None, err
    assert out.startswith("updated ben@corp.example")
    existing.refresh_from_db()
    assert existing.status == "connected" and existing.credentials["kind"] == "service_account"
    assert ProviderAccount.objects.count() == 2


def test_domain_alone_without_accounts_says_to_name_the_users(user, key_file):
    _out, _err, error = run("--key-file", str(key_file), "--owner", "alice", "--domain", "corp.example")
    assert error is not None and "--users" in str(error)
    assert not ProviderAccount.objects.exists()


def test_enrolling_again_updates_the_same_account(user, key, key_file):
    run("--key-file", str(key_file), "--owner", "alice", "--users", "ann@corp.example")
    out, _err, error = run("--key-file", str(key_file), "--owner", "alice", "--users", "ann@corp.example")
    assert error is None and out.startswith("updated ann@corp.example")
    assert ProviderAccount.objects.count() == 1


@pytest.mark.parametrize(("content", "words"), [
    ("not json at all", "not JSON"),
    ('["a"]', "not a JSON object"),
    ('{"type": "authorized_user", "client_email": "x", "private_key": "SECRET-MATERIAL"}', "not a service account"),
    ('{"type": "service_account", "private_key": "SECRET-MATERIAL"}', "lacks client_email"),
])
def test_a_bad_key_is_refused_without_quoting_it(user, tmp_path, content, words):
    path = tmp_path / "bad.json"
    path.write_text(content)
    _out, _err, error = run("--key-file", str(path), "--owner", "alice", "--users", "ann@corp.example")
    assert error is not None and words in str(error)
    assert "SECRET-MATERIAL" not in str(error) and content not in str(error)
    assert not ProviderAccount.objects.exists()


def test_a_key_google_does_not_know_is_refused(user, key, tmp_path, google):
    other = google.create_service_account("stranger@x.iam.gserviceaccount.com", domains=["corp.example"])
    forged = {**other, "client_email": "ghost@x.iam.gserviceaccount.com"}
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(forged))
    _out, err, error = run("--key-file", str(path), "--owner", "alice", "--users", "ann@corp.example")
    assert error is not None and "refused ann@corp.example" in err
    assert_nowhere(forged, err, str(error))


def test_bad_arguments(user, key_file, monkeypatch):
    assert "No single user" in str(run("--key-file", str(key_file), "--owner", "nobody", "--users", "a@b.c")[2])
    assert "Give --users" in str(run("--key-file", str(key_file), "--owner", "alice")[2])
    assert "Not addresses of corp.example" in str(run("--key-file", str(key_file), "--owner", "alice",
                                                      "--domain", "corp.example", "--users", "x@other.example")[2])
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)
    assert "not set" in str(run("--key-env", "NO_SUCH_VAR", "--owner", "alice", "--users", "a@b.c")[2])
    assert "Cannot read" in str(run("--key-file", "/nonexistent/key.json", "--owner", "alice", "--users", "a@b.c")[2])


def test_enroll_starts_push_when_configured(user, key, key_file, google, settings):
    settings.GMAIL_PUBSUB_TOPIC = "projects/crm/topics/gmail"
    run("--key-file", str(key_file), "--owner", "alice", "--users", "ann@corp.example")
    assert google.mailbox("ann@corp.example").watch_requests == [{"topicName": "projects/crm/topics/gmail"}]
    assert ProviderAccount.objects.get().push_expires_at is not None


def test_the_service_reports_each_mailbox(user, key):
    results = enroll.enroll(key, user, ["ann@corp.example", "nobody@corp.example", "eve@other.example"])
    assert [(r.address, r.ok, r.created) for r in results] == [
        ("ann@corp.example", True, True), ("nobody@corp.example", False, False), ("eve@other.example", False, False)]


# --- the admin ----------------------------------------------------------------------------------------

def test_the_admin_page_enrolls_and_reports(admin_client, user, key, caplog):
    page = admin_client.get("/admin/integrations/provideraccount/enroll-gmail/")
    assert page.status_code == 200 and b"Service account key" in page.content
    assert b"Enroll Gmail mailboxes" in admin_client.get("/admin/integrations/provideraccount/").content
    upload = SimpleUploadedFile("key.json", json.dumps(key).encode(), content_type="application/json")
    response = admin_client.post("/admin/integrations/provideraccount/enroll-gmail/", {
        "key_file": upload, "owner": user.pk, "users": "ann@corp.example\neve@other.example"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "Enrolled 1 Gmail mailbox(es)." in html and "1 mailbox(es) were refused" in html
    assert "ann@corp.example" in html and "Refused:" in html and "eve@other.example" in html
    assert list(ProviderAccount.objects.values_list("external_address", "owner")) == [("ann@corp.example", user.pk)]
    account_page = admin_client.get(f"/admin/integrations/provideraccount/{ProviderAccount.objects.get().pk}/change/")
    assert_nowhere(key, html, account_page.content.decode(), caplog.text)


def test_the_admin_refuses_a_bad_key_file_without_echoing_it(admin_client, user):
    upload = SimpleUploadedFile("key.json", b'{"type": "user", "private_key": "SECRET-MATERIAL"}')
    response = admin_client.post("/admin/integrations/provideraccount/enroll-gmail/", {
        "key_file": upload, "owner": user.pk, "users": "ann@corp.example"})
    html = response.content.decode()
    assert response.status_code == 200 and "lacks client_email" in html
    assert "SECRET-MATERIAL" not in html and not ProviderAccount.objects.exists()


def test_the_admin_action_opens_the_form_with_the_selected_accounts(admin_client, user):
    account = ProviderAccount.objects.create(owner=user, provider="gmail", external_address="ben@corp.example",
                                             config={"email": "ben@corp.example"})
    response = admin_client.post("/admin/integrations/provideraccount/", {
        "action": "enroll_gmail", "_selected_action": [account.pk]})
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/integrations/provideraccount/enroll-gmail/?")
    form = admin_client.get(response["Location"]).content.decode()
    assert "ben@corp.example" in form and f'value="{user.pk}" selected' in form


def test_the_admin_page_needs_the_add_permission(client, db):
    staff = get_user_model().objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
    client.force_login(staff)
    assert client.get("/admin/integrations/provideraccount/enroll-gmail/").status_code == 403
