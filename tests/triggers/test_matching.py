"""Matching: each condition, ANDed, the type allowlist, sharing levels, backfill opt-in, firing after commit."""
from __future__ import annotations

import pytest

from automation.models import Task, Trigger, WebhookDelivery
from automation.triggers import services
from automation.triggers.conditions import Facts, clean_conditions, compile_matcher, type_error
from contacts.models import Contact
from conversations.messages import Channel, Direction, ParsedAttachment
from conversations.visibility import Level
from integrations.signals import announce_created
from tests.factories import email, phone
from tests.triggers.conftest import store, webhook

pytestmark = pytest.mark.django_db


def facts(**overrides) -> Facts:
    values = dict(id=1, account_id=1, channel="email", direction="inbound", senders=frozenset({"carol@mail.acme.com"}),
                  subject="quote for q4", body="please send the invoice", labels=frozenset({"inbox", "vip"}),
                  contact_ids=frozenset({7}), company_ids=frozenset({3}), has_attachment=True)
    values.update(overrides)
    return Facts(**values)


@pytest.mark.parametrize(("conditions", "expected"), [
    ({}, True),
    ({"direction": "inbound"}, True),
    ({"direction": "outbound"}, False),
    ({"sender": "carol@mail.acme.com"}, True),
    ({"sender": "dave@mail.acme.com"}, False),
    ({"sender": "acme.com"}, True),  # a domain matches its subdomains
    ({"sender": "@mail.acme.com"}, True),
    ({"sender": "cme.com"}, False),  # not a suffix match on text
    ({"subject_contains": "QUOTE"}, True),
    ({"subject_contains": "invoice"}, False),
    ({"body_contains": "Invoice"}, True),
    ({"label": "VIP"}, True),
    ({"label": "spam"}, False),
    ({"contact": 7}, True),
    ({"contact": 8}, False),
    ({"company": 3}, True),
    ({"has_attachment": True}, True),
    ({"has_attachment": False}, False),
    ({"direction": "inbound", "sender": "acme.com", "subject_contains": "quote", "has_attachment": True}, True),
    ({"direction": "inbound", "sender": "acme.com", "subject_contains": "nope"}, False),  # ANDed
])
def test_each_condition_and_their_conjunction(conditions, expected):
    cleaned, errors = clean_conditions(conditions)
    assert errors == {}
    matcher = compile_matcher(1, "any", cleaned, Level.EVERYTHING)
    assert matcher is not None and matcher.matches(facts()) is expected


def test_type_selects_channels():
    assert compile_matcher(1, "email", {}, Level.EVERYTHING).matches(facts())
    assert not compile_matcher(1, "sms", {}, Level.EVERYTHING).matches(facts())
    assert compile_matcher(1, "sms", {}, Level.EVERYTHING).matches(facts(channel="mms"))
    assert compile_matcher(1, "any", {}, Level.EVERYTHING).matches(facts(channel="sms"))


def test_allowlist_rejects_unknown_and_legacy_types():
    assert type_error("email") is None and type_error("any") is None
    assert "not a trigger type" in type_error("fax")
    assert "legacy provider-specific type" in type_error("email:gmail")
    assert compile_matcher(1, "email:gmail", {}, Level.EVERYTHING) is None


def test_unknown_and_bad_conditions_are_rejected_field_by_field():
    _cleaned, errors = clean_conditions({"colour": "red", "direction": "sideways", "has_attachment": "yes",
                                         "contact": "7", "sender": "a b"})
    assert set(errors) == {"colour", "direction", "has_attachment", "contact", "sender"}


def test_conditions_hidden_by_the_sharing_level_never_match():
    assert compile_matcher(1, "any", {"subject_contains": "quote"}, Level.METADATA) is None
    assert compile_matcher(1, "any", {"subject_contains": "quote"}, Level.SUBJECT) is not None
    assert compile_matcher(1, "any", {"body_contains": "x"}, Level.SUBJECT) is None
    assert compile_matcher(1, "any", {"sender": "acme.com"}, Level.METADATA).matches(facts())


def test_fire_matches_stored_messages(account, user, queued):
    contact = Contact.objects.create(name="Carol")
    hook = webhook(user, "http://127.0.0.1:9/hook", conditions={"sender": "acme.com", "has_attachment": True})
    by_contact = webhook(user, "http://127.0.0.1:9/hook", name="contact", conditions={"contact": contact.pk})
    sms = webhook(user, "http://127.0.0.1:9/hook", name="sms", type="sms")
    with_file = store(account, attachments=(ParsedAttachment.from_bytes("a.pdf", "application/pdf", b"%PDF"),))
    plain = store(account)
    text = store(account, channel=Channel.SMS, sender=phone("+14155550123"), subject=None)
    outcome = services.fire(account.pk, [with_file.pk, plain.pk, text.pk], "delta")
    pairs = set(WebhookDelivery.objects.values_list("trigger_id", "communication_id"))
    assert pairs == {(hook.pk, with_file.pk), (sms.pk, text.pk)}
    assert sorted(outcome.deliveries) == sorted(d for d, _at in queued)
    assert by_contact.deliveries.count() == 0  # the participants did not resolve to that contact


def test_backfill_fires_only_triggers_that_opt_in(account, user, queued):
    quiet = webhook(user, "http://127.0.0.1:9/hook")
    eager = webhook(user, "http://127.0.0.1:9/hook", name="eager", include_backfill=True)
    communication = store(account)
    services.fire(account.pk, [communication.pk], "backfill")
    assert quiet.deliveries.count() == 0 and eager.deliveries.count() == 1
    services.fire(account.pk, [communication.pk], "historical")
    assert quiet.deliveries.count() == 0


def test_a_trigger_on_another_connector_or_disabled_does_not_fire(account, user, other_account, queued):
    webhook(user, "http://127.0.0.1:9/hook", connector=other_account)  # (not attachable via the API; still scoped)
    webhook(user, "http://127.0.0.1:9/hook", name="off", enabled=False)
    communication = store(account)
    assert services.fire(account.pk, [communication.pk], "delta").matched == 0


def test_task_triggers_make_one_task_from_the_template(account, user, queued):
    trigger = Trigger.objects.create(owner=user, name="Follow up", action=Trigger.Action.TASK,
                                     task_template={"title": "Reply to $sender: $subject", "priority": "high",
                                                    "due_in_days": 2})
    communication = store(account, subject="Quote", sender=email("carol@acme.com"))
    services.fire(account.pk, [communication.pk], "import")
    services.fire(account.pk, [communication.pk], "import")  # a re-run makes no second task
    task = Task.objects.get(trigger=trigger)
    assert task.title == "Reply to carol@acme.com: Quote" and task.priority == "high" and task.due is not None
    assert task.communication_id == communication.pk and task.owner_id == user.pk


def test_announced_batches_queue_evaluation_after_commit(account, user, queued, django_capture_on_commit_callbacks):
    webhook(user, "http://127.0.0.1:9/hook")
    communication = store(account)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        announce_created(account, [communication.pk], "delta")
        assert queued == []  # nothing inside the transaction
    assert callbacks and ("automation.tasks.fire_triggers", account.pk, [communication.pk], "delta") in queued


def test_backfill_batches_queue_nothing_without_an_opted_in_trigger(account, user, queued,
                                                                  django_capture_on_commit_callbacks):
    webhook(user, "http://127.0.0.1:9/hook")
    communication = store(account, direction=Direction.INBOUND)
    with django_capture_on_commit_callbacks(execute=True):
        announce_created(account, [communication.pk], "backfill")
    assert not [call for call in queued if call and call[0] == "automation.tasks.fire_triggers"]
