"""The rules engine: each signal, each suppressor, quoted text, closing replies, due dates and time zones."""
from __future__ import annotations

import datetime as dt

import pytest

from automation.engines import get_engine
from automation.engines.base import MessageInput
from automation.engines.dates import find_due
from automation.engines.rules import RulesEngine
from automation.engines.text import new_text

ME = "alice@example.com"
WEDNESDAY = dt.datetime(2026, 3, 4, 14, 0, tzinfo=dt.UTC)
engine = RulesEngine()


def msg(body: str, **fields) -> MessageInput:
    defaults = dict(sender="bob@acme.com", to=(ME,), owner_addresses=frozenset({ME}), subject="Hello",
                    body=body, sent_at=WEDNESDAY)
    defaults.update(fields)
    return MessageInput(**defaults)


@pytest.mark.parametrize(("body", "signal"), [
    ("Could you send me the deck?", "request"),
    ("Please call the vendor.", "request"),
    ("Let me know which option you prefer.", "request"),
    ("I need you to approve the PO.", "request"),
    ("Review the attached contract and sign where marked.", "imperative"),
    ("Schedule the kickoff with Initech.", "imperative"),
    ("Confirm the shipment dates.", "imperative"),
    ("Are you coming to the offsite in May?", "question"),
    ("Are you free to meet on Tuesday?", "meeting"),
    ("Can you send it by Friday?", "deadline"),
])
def test_each_positive_signal_fires_and_is_named(body, signal):
    judgement = engine.judge(msg(body))
    assert signal in judgement.signals
    assert signal in judgement.reasoning


def test_signals_combine_into_the_confidence():
    weak = engine.judge(msg("Let me know what you think."))
    strong = engine.judge(msg("Could you review the Q4 proposal by Friday?"))
    assert weak.confidence < strong.confidence
    assert strong.action and strong.confidence >= 0.85
    assert strong.title == "Review the Q4 proposal by Friday"
    assert strong.due == dt.date(2026, 3, 6)


def test_a_question_alone_is_too_weak():
    judgement = engine.judge(msg("How was your weekend?"))
    assert not judgement.action and "Too weak" in judgement.reasoning


@pytest.mark.parametrize(("fields", "why"), [
    ({"headers": {"list-unsubscribe": "<https://x/u>"}}, "List-Unsubscribe"),
    ({"headers": {"list-id": "<news.x>"}}, "List-Id"),
    ({"headers": {"precedence": "bulk"}}, "Precedence: bulk"),
    ({"headers": {"auto-submitted": "auto-replied"}}, "Auto-Submitted"),
    ({"subject": "Automatic reply: Q4"}, "auto-reply"),
    ({"sender": "no-reply@shop.example"}, "automated sender"),
    ({"subject": "Your receipt from Notion #123"}, "receipt"),
    ({"direction": "outbound"}, "outbound"),
    ({"sender": ME, "to": ("bob@acme.com",)}, "outbound"),
    ({"to": ("ben@acme.com",), "cc": (ME,)}, "only in cc"),
    ({"has_calendar": True}, "calendar"),
    ({"labels": ("CATEGORY_PROMOTIONS",)}, "promotions"),
])
def test_each_suppressor_stops_a_request(fields, why):
    judgement = engine.judge(msg("Could you review the Q4 proposal by Friday?", **fields))
    assert not judgement.action
    assert judgement.reasoning.startswith("Suppressed") and why in judgement.reasoning


def test_an_unsubscribe_footer_suppresses_without_headers():
    judgement = engine.judge(msg("Can you spare 2 minutes for our survey?\n\nUnsubscribe | Manage preferences"))
    assert not judgement.action and "newsletter" in judgement.reasoning


def test_sms_short_codes_are_automated():
    judgement = engine.judge(msg("Please confirm your code 1234", channel="sms", sender="28294", to=("+14155550100",),
                                 owner_addresses=frozenset({"+14155550100"})))
    assert not judgement.action and "short-code" in judgement.reasoning


@pytest.mark.parametrize("body", ["Thanks, got it!", "Perfect, thank you Alice.\n\nMarco", "Sounds good!",
                                  "Danke, klappt!"])
def test_closing_replies_are_suppressed(body):
    judgement = engine.judge(msg(body))
    assert not judgement.action


def test_a_request_only_in_quoted_text_does_not_fire():
    body = ("Thanks, got it!\n\nOn Wed, Mar 4, 2026 at 9:14 AM Alice <alice@example.com> wrote:\n"
            "> Bob, could you send me the final numbers by Friday?\n")
    assert "could you" not in new_text(body)
    assert not engine.judge(msg(body)).action
    outlook = ("Great, see you then.\n\n-----Original Message-----\nFrom: Alice\nSent: Tuesday\nTo: Sam\n"
               "Subject: Kickoff\n\nCan you confirm Monday 10am works?\n")
    assert not engine.judge(msg(outlook)).action


def test_signatures_are_stripped_but_the_request_kept():
    body = "Could you send me the deck by Friday?\n\nThanks,\nAlice\n--\nAlice Smith\nCEO | Acme Corp"
    assert new_text(body) == "Could you send me the deck by Friday?"


@pytest.mark.parametrize(("text", "due"), [
    ("Could you review it by Friday?", "2026-03-06"),
    ("Send it tomorrow please.", "2026-03-05"),
    ("I need it by EOD.", "2026-03-04"),
    ("Let's do it next week.", "2026-03-09"),
    ("No later than next Monday, please.", "2026-03-09"),
    ("Before the 20th, please.", "2026-03-20"),
    ("Before the 2nd, please.", "2026-04-02"),
    ("Due 2026-03-18.", "2026-03-18"),
    ("Comments by March 12 please.", "2026-03-12"),
    ("Comments by 30 April 2026 please.", "2026-04-30"),
    ("By the end of the week.", "2026-03-06"),
    ("By the end of next week.", "2026-03-13"),
    ("Bitte bis Freitag.", "2026-03-06"),
    ("We met last Friday. Send it by Friday.", "2026-03-06"),
])
def test_due_date_phrases(text, due):
    found = find_due(text, WEDNESDAY, "UTC")
    assert found is not None and found.date.isoformat() == due


def test_due_dates_are_read_in_the_owners_time_zone():
    late = dt.datetime(2026, 3, 4, 23, 30, tzinfo=dt.UTC)  # already Thursday in Tokyo, still Wednesday in New York
    assert find_due("Send it tomorrow.", late, "Asia/Tokyo").date == dt.date(2026, 3, 6)
    assert find_due("Send it tomorrow.", late, "America/New_York").date == dt.date(2026, 3, 5)
    assert find_due("By EOD.", late, "Asia/Tokyo").date == dt.date(2026, 3, 5)
    judgement = engine.judge(msg("Can you send it tomorrow?", sent_at=late, time_zone="Asia/Tokyo"))
    assert judgement.due == dt.date(2026, 3, 6)


def test_no_date_means_no_due():
    assert find_due("Call me at 555-1234 about the deck.", WEDNESDAY, "UTC") is None
    assert engine.judge(msg("Please send the deck.")).due is None


def test_non_english_requests():
    judgement = engine.judge(msg("Könnten Sie mir bitte das Angebot bis Freitag schicken?", time_zone="Europe/Berlin"))
    assert judgement.action and judgement.due == dt.date(2026, 3, 6)
    assert engine.judge(msg("¿Puedes revisar la propuesta antes del viernes?")).action


def test_the_engine_is_chosen_by_setting(settings):
    settings.SUGGESTIONS_ENGINE = "rules"
    assert get_engine().name == "rules"
    assert get_engine("llm").name == "llm"
    with pytest.raises(ValueError):
        get_engine("magic")
