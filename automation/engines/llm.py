"""The LLM engine: any OpenAI-compatible chat-completions endpoint (OpenAI, Ollama, vLLM), asked
for one JSON object of a fixed schema, which is validated.

The rules engine's suppressors run first (outbound, cc-only, newsletters, auto-replies...): such
a message is never sent anywhere. Only the subject and the new text leave, cut to
SUGGESTIONS_LLM_MAX_CHARS. The client times out after SUGGESTIONS_LLM_TIMEOUT_SECONDS and retries
once; on any failure (network, HTTP error, invalid JSON, an answer off the schema) the rules
engine's judgement is returned, its reasoning saying why the LLM was not used.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from django.conf import settings

from automation.engines.base import Engine, Judgement, MessageInput
from automation.engines.dates import local_base
from automation.engines.rules import RulesEngine
from automation.engines.text import new_text

logger = logging.getLogger(__name__)

SYSTEM_PROMPT = """You read one message received by a CRM user and decide whether it asks the user to do \
something they should track as a task. Answer with one JSON object and nothing else:
{"action": true|false, "title": "imperative task title, at most 100 characters",
 "description": "one or two sentences", "priority": "low"|"medium"|"high",
 "due": "YYYY-MM-DD" or null (only a date the message states, read relative to the sent date given),
 "confidence": a number from 0 to 1, "reasoning": "which phrases made you decide, in one sentence"}
FYIs, thanks, greetings, newsletters and notifications are action=false."""

PRIORITIES = ("low", "medium", "high")


class InvalidAnswer(ValueError):
    """The endpoint answered, but not with a JSON object of the schema."""


def validate(content: str | None) -> dict[str, Any]:
    """The answer as a dict of the schema's fields, or InvalidAnswer saying what is wrong."""
    try:
        data = json.loads(content or "")
    except json.JSONDecodeError as error:
        raise InvalidAnswer(f"not JSON ({error.msg})") from None
    if not isinstance(data, dict):
        raise InvalidAnswer("not a JSON object")
    if not isinstance(data.get("action"), bool):
        raise InvalidAnswer("'action' is not true or false")
    confidence = data.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 <= confidence <= 1:
        raise InvalidAnswer("'confidence' is not a number from 0 to 1")
    for name in ("title", "description", "reasoning"):
        if not isinstance(data.get(name, ""), str):
            raise InvalidAnswer(f"'{name}' is not a string")
    if data.get("priority", "medium") not in PRIORITIES:
        raise InvalidAnswer("'priority' is not low, medium or high")
    due = data.get("due")
    if due is not None:
        try:
            data["due"] = dt.date.fromisoformat(str(due))
        except ValueError:
            raise InvalidAnswer("'due' is not a YYYY-MM-DD date") from None
    if data["action"] and not str(data.get("title", "")).strip():
        raise InvalidAnswer("'title' is empty")
    return data


class LlmEngine(Engine):
    name = "llm"
    version = "1.0"

    def __init__(self) -> None:
        self.rules = RulesEngine()
        self.max_chars = settings.SUGGESTIONS_LLM_MAX_CHARS

    def _client(self) -> Any:
        import openai

        return openai.OpenAI(base_url=settings.SUGGESTIONS_LLM_BASE_URL,
                             api_key=settings.SUGGESTIONS_LLM_API_KEY or "not-needed",
                             timeout=settings.SUGGESTIONS_LLM_TIMEOUT_SECONDS, max_retries=1)

    def prompt(self, message: MessageInput) -> str:
        """What is sent about the message: its sent date, subject and new text, at most max_chars."""
        text = new_text(message.body, email=message.channel == "email")
        sent = local_base(message.sent_at, message.time_zone)
        head = f"Sent: {sent:%A %Y-%m-%d %H:%M} ({message.time_zone})\nChannel: {message.channel}\n"
        subject = f"Subject: {message.subject}\n" if message.subject else ""
        room = self.max_chars - len(head)
        return (head + subject + "\n" + text)[: max(room, 0) + len(head)][: self.max_chars]

    def judge(self, message: MessageInput) -> Judgement:
        if (suppressor := self.rules._suppressor(message)) is not None:  # noqa: SLF001 - shared on purpose
            return Judgement(action=False, confidence=0.0, reasoning=f"Suppressed before asking the LLM: {suppressor}.",
                             engine=self.name, engine_version=self.version, signals=("suppressed",))
        try:
            response = self._client().chat.completions.create(
                model=settings.SUGGESTIONS_LLM_MODEL, temperature=0, response_format={"type": "json_object"},
                messages=[{"role": "system", "content": SYSTEM_PROMPT},
                          {"role": "user", "content": self.prompt(message)}])
            data = validate(response.choices[0].message.content if response.choices else None)
        except Exception as error:  # noqa: BLE001 - any failure falls back to the rules engine
            why = str(error) if isinstance(error, InvalidAnswer) else type(error).__name__
            logger.warning("LLM engine failed (%s); falling back to rules", why)
            fallback = self.rules.judge(message)
            return Judgement(**{**_fields(fallback),
                                "reasoning": f"LLM unavailable ({why}); fell back to the rules engine. "
                                             f"{fallback.reasoning}"})
        return Judgement(
            action=data["action"], confidence=round(float(data["confidence"]), 2),
            reasoning=f"LLM ({settings.SUGGESTIONS_LLM_MODEL}): {data.get('reasoning', '').strip()}",
            engine=self.name, engine_version=self.version, title=str(data.get("title", "")).strip()[:200],
            description=str(data.get("description", "")).strip(), priority=data.get("priority", "medium"),
            due=data.get("due"), tags=("llm",), signals=("llm",),
        )


def _fields(judgement: Judgement) -> dict[str, Any]:
    return {name: getattr(judgement, name) for name in Judgement.__dataclass_fields__}
