"""Every admin changelist and change page renders; secrets never show; previews are safe."""
from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.urls import reverse

from conversations.ingest import store_batch
from conversations.messages import ParsedAttachment
from conversations.models import Communication
from integrations.models import SyncRun
from tests.factories import message

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-app-password-never-shown"


@pytest.fixture
def populated(account):
    account.credentials = {"password": SECRET}
    account.save()
    store_batch(account, [
        message(
            provider_thread_id="T1",
            body_html='<p>Hello <b>there</b></p><script>alert(1)</script>'
                      '<img src="https://tracker.example/pixel.gif"><img src="cid:logo">',
            attachments=(ParsedAttachment.from_bytes("a.pdf", "application/pdf", b"%PDF"),),
        ),
        message(provider_thread_id="T1", in_reply_to="x@y"),
    ])
    SyncRun.objects.create(account=account, kind=SyncRun.Kind.INITIAL, status=SyncRun.Status.SUCCEEDED)
    return account


@pytest.fixture
def staff_client(client, db):
    get_user_model().objects.create_superuser("root", "root@example.org", "pw-root-123")
    client.login(username="root", password="pw-root-123")
    return client


def _admin_urls() -> list[tuple[str, type]]:
    return [(f"{m._meta.app_label}_{m._meta.model_name}", m) for m in admin.site._registry]


@pytest.mark.parametrize("name,model", _admin_urls(), ids=[n for n, _ in _admin_urls()])
def test_changelist_and_change_pages_render(staff_client, populated, name, model):
    changelist = staff_client.get(reverse(f"admin:{name}_changelist"))
    assert changelist.status_code == 200
    assert SECRET not in changelist.content.decode()
    searched = staff_client.get(reverse(f"admin:{name}_changelist"), {"q": "acme"})
    assert searched.status_code == 200
    obj = model._default_manager.first()
    if obj is not None:
        change = staff_client.get(reverse(f"admin:{name}_change", args=[obj.pk]))
        assert change.status_code == 200
        assert SECRET not in change.content.decode()
    model_admin = admin.site._registry[model]
    if model_admin.has_add_permission(type("R", (), {"user": get_user_model().objects.get(username="root")})()):
        assert staff_client.get(reverse(f"admin:{name}_add")).status_code == 200


def test_every_model_is_registered():
    from django.apps import apps

    ours = [m for app in ("contacts", "conversations", "integrations") for m in apps.get_app_config(app).get_models()]
    assert ours and all(m in admin.site._registry for m in ours)


def test_filters_render(staff_client, populated):
    url = reverse("admin:conversations_communication_changelist")
    assert staff_client.get(url, {"channel__exact": "email", "direction__exact": "inbound"}).status_code == 200
    response = staff_client.get(reverse("admin:integrations_syncrun_changelist"), {"status__exact": "succeeded"})
    assert response.status_code == 200


def test_sync_runs_are_read_only(staff_client, populated):
    run = SyncRun.objects.get()
    response = staff_client.post(reverse("admin:integrations_syncrun_change", args=[run.pk]), {"error": "x"})
    assert response.status_code == 403 or SyncRun.objects.get().error == ""
    assert staff_client.get(reverse("admin:integrations_syncrun_add")).status_code == 403


def test_credentials_are_not_a_form_field(staff_client, populated):
    page = staff_client.get(reverse("admin:integrations_provideraccount_change", args=[populated.pk])).content.decode()
    assert 'name="credentials"' not in page
    assert "Credentials stored" in page


def test_preview_is_sanitised_and_blocks_remote_images(staff_client, populated):
    communication = Communication.objects.exclude(body_html="").get()
    url = reverse("admin:conversations_communication_preview", args=[communication.pk])
    response = staff_client.get(url)
    body = response.content.decode()
    assert response.status_code == 200
    assert "<b>there</b>" in body
    assert "<script" not in body and "alert(1)" not in body
    assert "tracker.example" not in body
    assert 'src="cid:logo"' in body
    assert "sandbox" in response["Content-Security-Policy"]
    with_images = staff_client.get(url, {"remote_images": "1"}).content.decode()
    assert "https://tracker.example/pixel.gif" in with_images
    assert "<script" not in with_images


def test_preview_requires_staff(client, populated):
    communication = Communication.objects.first()
    response = client.get(reverse("admin:conversations_communication_preview", args=[communication.pk]))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_searching_an_address_or_message_id_finds_exact_matches(staff_client, populated):
    url = reverse("admin:conversations_communication_changelist")
    target = Communication.objects.order_by("pk").first()
    by_id = staff_client.get(url, {"q": f"<{target.rfc_message_id}>"})
    assert list(by_id.context["cl"].result_list) == [target]
    by_address = staff_client.get(url, {"q": "Carol@Acme.com"})
    assert by_address.context["cl"].result_count == Communication.objects.count()
    by_subject = staff_client.get(url, {"q": target.subject})
    assert target in list(by_subject.context["cl"].result_list)
    assert staff_client.get(url, {"q": "nobody@nowhere.example"}).context["cl"].result_count == 0


def test_date_hierarchy_lists_years_and_months_from_min_and_max(staff_client, account):
    import datetime as dt

    store_batch(account, [message(sent_at=dt.datetime(2024, 3, 5, tzinfo=dt.UTC)),
                          message(sent_at=dt.datetime(2026, 2, 7, tzinfo=dt.UTC))])
    url = reverse("admin:conversations_communication_changelist")
    page = staff_client.get(url).content.decode()
    assert all(f"sent_at__year={year}" in page for year in (2024, 2025, 2026))
    months = staff_client.get(url, {"sent_at__year": "2026"}).content.decode()
    assert "sent_at__month=2" in months and "sent_at__month=1&" not in months and "sent_at__month=3" not in months
    days = staff_client.get(url, {"sent_at__year": "2026", "sent_at__month": "2"}).content.decode()
    assert "sent_at__day=7" in days and "sent_at__day=8" not in days
