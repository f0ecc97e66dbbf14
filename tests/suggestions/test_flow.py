"""The flow: new communications are queued after their batch commits, then suggested; age, account
switches, auto-approval, reruns, one suggestion per communication, and write-back on done."""
from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from automation import services
from automation.models import AccountAutomation, AutomationPreferences, Suggestion, Task
from automation.receivers import SUGGEST_TASK
from automation.tasks import WRITE_BACK_TASK, suggest_communications, write_back_task
from conversations.messages import Direction
from integrations.models import ProviderAccount
from integrations.providers.base import Batch
from integrations.sync import sync_account
from tests.factories import email, message
from tests.suggestions.conftest import REQUEST, WEAK_REQUEST, store
from tests.test_sync_engine import scripted, scripted_account  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


def run(queued) -> list[str]:
    results = []
    while queued:
        func, args = queued.pop(0)
        assert func == SUGGEST_TASK
        results.append(suggest_communications(*args))
    return results


def test_a_delta_batch_is_queued_after_commit_and_suggested(scripted_account, scripted, queued,
                                                             django_capture_on_commit_callbacks):
    recent = timezone.now() - dt.timedelta(hours=2)
    to_me = (email("alice@example.org"),)
    scripted.script = [
        lambda: Batch(messages=[], next_page_token=None, new_cursor={"c": 1}),
        lambda: Batch(messages=[
            message(body_text=REQUEST, sent_at=recent, to=to_me, subject="Q4 proposal"),
            message(body_text="FYI, the proposal went out this morning.", sent_at=recent, to=to_me),
            message(body_text=REQUEST, sent_at=recent, direction=Direction.OUTBOUND,
                    sender=email("alice@example.org"), to=(email("bob@acme.com"),)),
        ], next_page_token=None, new_cursor={"c": 2}),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        sync_account(scripted_account.pk)  # backfill: nothing
        assert queued == []
        sync_account(scripted_account.pk)  # delta: three new
    assert len(queued) == 1 and queued[0][1][0] == scripted_account.pk and len(queued[0][1][1]) == 3
    assert Suggestion.objects.count() == 0  # nothing done inline, only queued
    run(queued)
    suggestion = Suggestion.objects.get()
    assert suggestion.subject == "Q4 proposal" and suggestion.sender == "Carol Jones <carol@acme.com>"
    assert suggestion.owner == scripted_account.owner and suggestion.account == scripted_account
    assert "request" in suggestion.reasoning and suggestion.engine == "rules"
    assert suggestion.snippet


def test_messages_older_than_the_max_age_are_skipped(account, queued, settings):
    settings.SUGGESTIONS_MAX_AGE_DAYS = 14
    old = store(account, body_text=REQUEST, sent_at=timezone.now() - dt.timedelta(days=15))
    new = store(account, body_text=REQUEST, sent_at=timezone.now() - dt.timedelta(days=13))
    suggest_communications(account.pk, [old.pk, new.pk])
    assert list(Suggestion.objects.values_list("communication_id", flat=True)) == [new.pk]


def test_accounts_without_suggestions_enabled_are_skipped(account, queued, settings):
    communication = store(account, body_text=REQUEST)
    AccountAutomation.objects.create(account=account, suggestions_enabled=False)
    assert "1 skipped" in suggest_communications(account.pk, [communication.pk])
    AccountAutomation.objects.filter(account=account).delete()
    settings.SUGGESTIONS_ENABLED_BY_DEFAULT = False
    suggest_communications(account.pk, [communication.pk])
    assert not Suggestion.objects.exists()
    settings.SUGGESTIONS_ENABLED_BY_DEFAULT = True
    suggest_communications(account.pk, [communication.pk])
    assert Suggestion.objects.count() == 1


def test_auto_approve_at_the_threshold(account, user, queued):
    first, second = store(account, body_text=REQUEST), store(account, body_text=REQUEST)
    prefs = AutomationPreferences.objects.create(user=user, auto_approve_threshold=1.01)
    suggest_communications(account.pk, [first.pk])
    pending = Suggestion.objects.get(communication=first)
    assert pending.status == Suggestion.Status.PENDING and not Task.objects.exists()
    prefs.auto_approve_threshold = pending.confidence  # exactly at the threshold
    prefs.save()
    suggest_communications(account.pk, [second.pk])
    auto = Suggestion.objects.get(communication=second)
    assert auto.status == Suggestion.Status.AUTO_APPROVED
    task = Task.objects.get(suggestion=auto)
    assert task.owner == user and task.communication == second and task.conversation_id == second.conversation_id
    assert task.due == auto.due and task.title == auto.title


def test_default_threshold_auto_approves_a_strong_request(account, queued, settings):
    settings.SUGGESTIONS_AUTO_APPROVE_THRESHOLD = 0.85
    strong, weak = store(account, body_text=REQUEST), store(account, body_text=WEAK_REQUEST)
    suggest_communications(account.pk, [strong.pk, weak.pk])
    assert Suggestion.objects.get(communication=strong).status == Suggestion.Status.AUTO_APPROVED
    assert Suggestion.objects.get(communication=weak).status == Suggestion.Status.PENDING


def test_rerun_updates_pending_never_decided_and_keeps_one_per_communication(account, user, queued):
    AutomationPreferences.objects.create(user=user, auto_approve_threshold=1.01)
    pending_message, decided_message = store(account, body_text=WEAK_REQUEST), store(account, body_text=WEAK_REQUEST)
    suggest_communications(account.pk, [pending_message.pk, decided_message.pk])
    pending = Suggestion.objects.get(communication=pending_message)
    decided = Suggestion.objects.get(communication=decided_message)
    services.dismiss(decided, "not mine")
    Suggestion.objects.filter(pk=pending.pk).update(title="stale", confidence=0.1)
    suggest_communications(account.pk, [pending_message.pk, decided_message.pk])
    suggest_communications(account.pk, [pending_message.pk, decided_message.pk])
    assert Suggestion.objects.count() == 2
    pending.refresh_from_db()
    decided_before = decided.updated_at
    decided.refresh_from_db()
    assert pending.title != "stale" and pending.confidence > 0.1
    assert decided.status == Suggestion.Status.DISMISSED and decided.dismiss_reason == "not mine"
    assert decided.updated_at == decided_before


def test_a_pending_suggestion_is_withdrawn_when_the_engine_changes_its_mind(account, user, queued, monkeypatch):
    AutomationPreferences.objects.create(user=user, auto_approve_threshold=1.01)
    communication = store(account, body_text=WEAK_REQUEST)
    suggest_communications(account.pk, [communication.pk])
    communication.body_text = "FYI only."
    communication.save(update_fields=["body_text"])
    assert "1 withdrawn" in suggest_communications(account.pk, [communication.pk])
    assert not Suggestion.objects.exists()


def test_approving_twice_makes_one_task(account, user, queued):
    AutomationPreferences.objects.create(user=user, auto_approve_threshold=1.01)
    communication = store(account, body_text=REQUEST)
    suggest_communications(account.pk, [communication.pk])
    suggestion = Suggestion.objects.get()
    services.approve(suggestion)
    with pytest.raises(services.AlreadyDecided):
        services.approve(suggestion)
    with pytest.raises(services.AlreadyDecided):
        services.dismiss(suggestion)
    assert Task.objects.count() == 1


def _task_from(account, queued, **fields) -> Task:
    communication = store(account, body_text=REQUEST, **fields)
    suggest_communications(account.pk, [communication.pk])
    suggestion = Suggestion.objects.get(communication=communication)
    return suggestion.task if suggestion.status == Suggestion.Status.AUTO_APPROVED else services.approve(suggestion)


def test_write_back_is_off_by_default(account, queued):
    task = _task_from(account, queued)
    services.complete(task)
    assert queued == [] and Task.objects.get(pk=task.pk).status == Task.Status.DONE


def test_write_back_failure_never_blocks_done_and_is_shown(user, queued):
    imap = ProviderAccount.objects.create(
        owner=user, provider="imap", display_name="Mail", external_address="alice@example.org",
        config={"host": "127.0.0.1", "port": 1, "security": "none", "username": "alice"},
        credentials={"password": "pw"})
    AccountAutomation.objects.create(account=imap, write_back=True)
    task = _task_from(imap, queued, ref="INBOX:7:42")
    services.complete(task)
    assert queued == [(WRITE_BACK_TASK, (task.pk,))]
    assert write_back_task(task.pk) == "failed"
    task.refresh_from_db()
    assert task.status == Task.Status.DONE and task.write_back == Task.WriteBack.FAILED and task.write_back_error


def test_write_back_for_a_provider_without_it_is_reported(account, queued):
    AccountAutomation.objects.create(account=account, write_back=True)
    task = _task_from(account, queued)
    services.complete(task)
    assert write_back_task(task.pk) == "unsupported"
    task.refresh_from_db()
    assert task.status == Task.Status.DONE and "mbox" in task.write_back_error


def test_write_back_sets_seen_on_the_imap_server_and_nothing_else(user, imap_user, queued, settings):
    from tests.providers.imap_harness import ImapHarness, make_raw

    settings.SUGGESTIONS_MAX_AGE_DAYS = 100_000  # make_raw dates its messages at random
    harness = ImapHarness(imap_user, user)
    to = f"{imap_user.username}@example.org"  # the account's own address
    harness.append_raw([make_raw(subject="Contract", to=to, body="Could you please sign the contract by Friday?"),
                        make_raw(subject="Other", to=to, body="Could you review the deck?")])
    account = harness.make_account()
    assert sync_account(account.pk).status == "succeeded"  # read-only: nothing is \Seen yet
    AccountAutomation.objects.create(account=account, write_back=True)
    contract = account.communications.get(subject="Contract")
    suggest_communications(account.pk, [contract.pk])
    suggestion = Suggestion.objects.get(communication=contract)
    task = suggestion.task if suggestion.status == Suggestion.Status.AUTO_APPROVED else services.approve(suggestion)
    services.complete(task)
    assert queued[-1] == (WRITE_BACK_TASK, (task.pk,))
    assert write_back_task(task.pk) == "done"
    task.refresh_from_db()
    assert task.write_back == Task.WriteBack.DONE and task.write_back_error == ""
    with harness.connection() as client:
        client.select_folder(harness.folder, readonly=True)
        flags = {data[b"ENVELOPE"].subject.decode(): data[b"FLAGS"]
                 for data in client.fetch(client.search(["ALL"]), ["FLAGS", "ENVELOPE"]).values()}
    assert b"\\Seen" in flags["Contract"] and b"\\Seen" not in flags["Other"]


def _gmail_task(user, gmail_fake, queued, settings) -> tuple[Task, object, str]:
    """A task from a synced, unread Gmail message of an account with write-back on."""
    from tests.providers.gmail_harness import GmailHarness
    from tests.providers.imap_harness import make_raw

    settings.SUGGESTIONS_MAX_AGE_DAYS = 100_000
    harness = GmailHarness(gmail_fake, user)
    [gmail_id] = harness.append_raw([make_raw(subject="Contract", to=harness.email,
                                              body="Could you please sign the contract by Friday?")],
                                    labels=("INBOX", "UNREAD"))
    account = harness.make_account()
    assert sync_account(account.pk).status == "succeeded"
    AccountAutomation.objects.create(account=account, write_back=True)
    contract = account.communications.get()
    suggest_communications(account.pk, [contract.pk])
    suggestion = Suggestion.objects.get(communication=contract)
    task = suggestion.task if suggestion.status == Suggestion.Status.AUTO_APPROVED else services.approve(suggestion)
    return task, harness, gmail_id


def test_gmail_write_back_waits_for_the_modify_permission_then_removes_unread(user, gmail_fake, queued, settings):
    task, harness, gmail_id = _gmail_task(user, gmail_fake, queued, settings)
    services.complete(task)
    assert write_back_task(task.pk) == "failed"  # connected read-only: says what to do, changes nothing
    task.refresh_from_db()
    assert task.status == Task.Status.DONE and "reconnect it and allow Gmail to modify" in task.write_back_error
    assert "UNREAD" in harness.box.get(gmail_id).labels and harness.box.modify_requests == []
    harness.allow_mark_read(task.communication.account)
    assert write_back_task(task.pk) == "done"
    task.refresh_from_db()
    assert task.write_back == Task.WriteBack.DONE and task.write_back_error == ""
    assert harness.box.modify_requests == [(gmail_id, [], ["UNREAD"])]
    assert "UNREAD" not in harness.box.get(gmail_id).labels
