"""Every admin changelist, opened by a superuser in headless Chromium against the live server."""
from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from conversations.messages import ParsedAttachment
from integrations.models import QuarantinedMessage, SyncRun
from tests.factories import email
from tests.web.conftest import SECRET, add_messages

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SERVER_ERROR = ("Server Error", "Traceback", "Exception Value", "OperationalError", "ProgrammingError")


@pytest.fixture
def superuser_page(page, live_server) -> Any:
    get_user_model().objects.create_superuser("root", "root@example.org", "pw-root-123")
    client = Client()
    client.login(username="root", password="pw-root-123")
    cookie = django_settings.SESSION_COOKIE_NAME
    page.context.add_cookies([{"name": cookie, "url": live_server.url, "value": client.cookies[cookie].value}])
    return page


@pytest.fixture
def populated(account) -> None:
    """A row or more for every changelist of this project's models to render."""
    account.credentials = {"password": SECRET}
    account.save()
    add_messages(account, {
        "provider_message_id": "admin-1", "provider_thread_id": "T1", "subject": "Launch plan",
        "sender": email("carol@acme.com", "Carol Jones"), "cc": (email("dan@acme.com", "Dan"),),
        "body_html": "<p>Hello <b>Alice</b></p><script>alert(1)</script><img src=\"https://tracker.example/p.gif\">",
        "attachments": (ParsedAttachment.from_bytes("plan.pdf", "application/pdf", b"%PDF-1.4"),),
    }, {"provider_message_id": "admin-2", "provider_thread_id": "T1", "in_reply_to": "msg@x",
        "subject": "Re: Launch plan"})
    SyncRun.objects.create(account=account, kind=SyncRun.Kind.INITIAL, status=SyncRun.Status.FAILED,
                           error="The server closed the connection")
    QuarantinedMessage.objects.create(account=account, provider_message_id="bad-1", reason="Unparseable",
                                      copy={"headers": "From: x"})


def test_every_admin_changelist_opens(superuser_page, populated):
    page = superuser_page
    failed: list[str] = []
    page.on("response", lambda response: failed.append(f"{response.status} {response.url}")
            if response.status >= 400 and not response.url.endswith("/favicon.ico") else None)
    page.on("pageerror", lambda error: failed.append(f"script error: {error}"))
    opened = []
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        response = page.goto(url, wait_until="domcontentloaded" if opened else "load")
        assert response.status == 200, url
        html = page.content()
        assert not [text for text in SERVER_ERROR if text in html], url
        assert SECRET not in html, url
        assert page.locator("#changelist").count() == 1, url  # a changelist, not the sign-in page
        opened.append(url)
        if len(opened) == 1:  # the admin's CSS and scripts loaded once, without errors, is enough
            page.route("**/static/**", lambda route: route.abort())
    assert failed == []
    assert len(opened) == len(admin.site._registry) >= 12
