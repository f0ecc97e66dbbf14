"""The Suggestions page (Django test client), the admin, and one browser run of the feed."""
from __future__ import annotations

import pytest
from django.utils.html import escape

from automation.models import AutomationPreferences, Suggestion, Task
from automation.tasks import suggest_communications
from tests.suggestions.conftest import REQUEST, WEAK_REQUEST, store
from tests.web.conftest import shot

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture skips the browser test, or fails it under CI
    expect = None


def _feed(account, user) -> tuple[Suggestion, Suggestion]:
    AutomationPreferences.objects.create(user=user, auto_approve_threshold=1.01)
    strong = store(account, body_text=REQUEST, subject="Q4 proposal")
    weak = store(account, body_text=WEAK_REQUEST, subject="Draft")
    suggest_communications(account.pk, [strong.pk, weak.pk])
    return Suggestion.objects.get(communication=strong), Suggestion.objects.get(communication=weak)


@pytest.mark.django_db
def test_feed_shows_snippet_reasoning_and_confidence(signed_in, account, user, other_account):
    strong, weak = _feed(account, user)
    theirs = store(other_account, body_text=REQUEST, subject="Bob's secret")
    suggest_communications(other_account.pk, [theirs.pk])
    page = signed_in.get("/suggestions/").content.decode()
    assert "Review the Q4 proposal by Friday" in page and escape(strong.reasoning) in page
    assert f"{strong.confidence:.2f}" in page and "Could you review the Q4 proposal" in page
    assert "Bob&#x27;s secret" not in page and "Bob's secret" not in page
    assert 'href="/suggestions/"' in page and 'aria-current="page"' in page


@pytest.mark.django_db
def test_approve_edit_dismiss_and_done(signed_in, account, user, other_account):
    strong, weak = _feed(account, user)
    signed_in.post(f"/suggestions/{weak.pk}/approve/", {"title": "Answer Bob", "due": "2026-12-24",
                                                         "priority": "high"})
    task = Task.objects.get(suggestion=weak)
    assert (task.title, str(task.due), task.priority) == ("Answer Bob", "2026-12-24", "high")
    signed_in.post(f"/suggestions/{strong.pk}/dismiss/", {"reason": "done already"})
    strong.refresh_from_db()
    assert strong.status == Suggestion.Status.DISMISSED and strong.dismiss_reason == "done already"
    response = signed_in.post(f"/suggestions/tasks/{task.pk}/done/", follow=True)
    assert "Done: Answer Bob" in response.content.decode()
    task.refresh_from_db()
    assert task.status == Task.Status.DONE
    theirs = Task.objects.create(owner=other_account.owner, title="Bob's")
    assert signed_in.post(f"/suggestions/tasks/{theirs.pk}/done/").status_code == 404
    assert signed_in.get(f"/suggestions/{strong.pk}/approve/").status_code == 405


@pytest.mark.django_db
def test_approve_all_above(signed_in, account, user):
    strong, weak = _feed(account, user)
    response = signed_in.post("/suggestions/approve-above/", {"min_confidence": "0.8"}, follow=True)
    assert "Approved 1 suggestion." in response.content.decode()
    assert Task.objects.get().suggestion == strong
    weak.refresh_from_db()
    assert weak.status == Suggestion.Status.PENDING


@pytest.mark.django_db
def test_the_page_needs_a_sign_in(client):
    assert client.get("/suggestions/").status_code == 302


@pytest.mark.django_db
def test_admin_pages_open(admin_client, account, user):
    strong, _weak = _feed(account, user)
    task = Task.objects.create(owner=user, title="Admin task")
    for url in ("/admin/automation/suggestion/", f"/admin/automation/suggestion/{strong.pk}/change/",
                "/admin/automation/task/", f"/admin/automation/task/{task.pk}/change/",
                "/admin/automation/accountautomation/", "/admin/automation/automationpreferences/",
                "/admin/automation/suggestion/?status__exact=pending_approval"):
        assert admin_client.get(url).status_code == 200, url


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_browser_feed(signed_in_page, account, user):
    strong, weak = _feed(account, user)
    page = signed_in_page
    page.goto("/suggestions/")
    card = page.locator(f"#suggestion-{weak.pk}")
    expect(card).to_contain_text("Signals:")
    shot(page, "suggestions")
    card.get_by_text("Edit and approve").click()
    card.get_by_label("Title").fill("Send Bob my thoughts")
    card.get_by_role("button", name="Save and approve").click()
    expect(page.locator(".messages")).to_contain_text("Task created: Send Bob my thoughts")
    page.locator(f"#suggestion-{strong.pk}").get_by_role("textbox").fill("Handled on the phone")
    page.locator(f"#suggestion-{strong.pk}").get_by_role("button", name="Dismiss").click()
    expect(page.locator(".messages")).to_contain_text("Dismissed")
    expect(page.get_by_text("Nothing to review")).to_be_visible()
    page.get_by_role("button", name="Done: Send Bob my thoughts").click()
    expect(page.locator(".done-tasks")).to_contain_text("Send Bob my thoughts")
