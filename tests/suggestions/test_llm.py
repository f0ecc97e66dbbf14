"""The LLM engine against a local fake OpenAI-compatible endpoint (tests/fakes/openai_chat.py)."""
from __future__ import annotations

import datetime as dt

import pytest

from automation.engines.base import MessageInput
from automation.engines.llm import LlmEngine
from tests.fakes.openai_chat import running

ME = "alice@example.com"


def msg(body: str, **fields) -> MessageInput:
    defaults = dict(sender="bob@acme.com", to=(ME,), owner_addresses=frozenset({ME}), subject="Q4 proposal",
                    body=body, sent_at=dt.datetime(2026, 3, 4, 14, 0, tzinfo=dt.UTC))
    defaults.update(fields)
    return MessageInput(**defaults)


@pytest.fixture
def fake(settings):
    with running() as chat:
        settings.SUGGESTIONS_LLM_BASE_URL = chat.url
        settings.SUGGESTIONS_LLM_MODEL = "fake-model"
        settings.SUGGESTIONS_LLM_API_KEY = "test-key"
        settings.SUGGESTIONS_LLM_TIMEOUT_SECONDS = 0.5
        yield chat


def test_a_valid_answer_is_used(fake):
    judgement = LlmEngine().judge(msg("Could you review the Q4 proposal by Friday?"))
    assert judgement.engine == "llm" and judgement.action and judgement.confidence == 0.93
    assert judgement.due == dt.date(2026, 3, 6) and judgement.title == "Review the Q4 proposal"
    assert judgement.reasoning.startswith("LLM (fake-model)")
    request = fake.requests[0]
    assert request["model"] == "fake-model" and request["response_format"] == {"type": "json_object"}
    assert "Could you review the Q4 proposal" in request["messages"][1]["content"]


def test_invalid_json_falls_back_to_rules_and_says_so(fake):
    fake.mode = "invalid"
    judgement = LlmEngine().judge(msg("Could you review the Q4 proposal by Friday?"))
    assert judgement.engine == "rules" and judgement.action
    assert "LLM unavailable (not JSON" in judgement.reasoning and "fell back to the rules engine" in judgement.reasoning


@pytest.mark.parametrize("answer", [{"action": "yes", "confidence": 0.9}, {"action": True, "confidence": 3},
                                    {"action": True, "confidence": 0.9, "title": "x", "due": "Friday"},
                                    {"action": True, "confidence": 0.9, "title": ""}])
def test_an_answer_off_the_schema_falls_back(fake, answer):
    fake.answer = answer
    judgement = LlmEngine().judge(msg("Could you review the Q4 proposal by Friday?"))
    assert judgement.engine == "rules" and "LLM unavailable" in judgement.reasoning


def test_a_timeout_is_retried_once_then_falls_back(fake):
    fake.mode, fake.delay = "slow", 1.5
    judgement = LlmEngine().judge(msg("Could you review the Q4 proposal by Friday?"))
    assert judgement.engine == "rules" and "LLM unavailable (APITimeoutError)" in judgement.reasoning
    assert len(fake.requests) == 2  # the first try and one retry


def test_never_more_than_max_chars_leave(fake, settings):
    settings.SUGGESTIONS_LLM_MAX_CHARS = 300
    LlmEngine().judge(msg("Could you review the proposal? " + "Lots of detail here. " * 500))
    assert len(fake.requests[0]["messages"][1]["content"]) <= 300


def test_suppressed_messages_are_never_sent(fake):
    judgement = LlmEngine().judge(msg("Could you review it?", headers={"list-unsubscribe": "<x>"}))
    assert not judgement.action and "before asking the LLM" in judgement.reasoning and fake.requests == []


def test_quoted_text_is_not_sent(fake):
    LlmEngine().judge(msg("Thanks!\n\nOn Wed, Mar 4, 2026 at 9:14 AM Alice <alice@example.com> wrote:\n"
                          "> Top secret numbers: could you send them?\n"))
    assert "Top secret" not in fake.requests[0]["messages"][1]["content"]
