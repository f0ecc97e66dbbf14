"""Suggestion engines: one explicit registry, imported on first use; the setting picks one.

An engine reads a ``MessageInput`` (a provider-agnostic view of one communication) and answers
a ``Judgement`` (see automation.engines.base for the contract).
"""
from __future__ import annotations

from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string

from automation.engines.base import Engine, Judgement, MessageInput

ENGINES: dict[str, str] = {
    "rules": "automation.engines.rules.RulesEngine",
    "llm": "automation.engines.llm.LlmEngine",
}

__all__ = ["ENGINES", "Engine", "Judgement", "MessageInput", "get_engine"]


@cache
def _engine(name: str) -> Engine:
    return import_string(ENGINES[name])()


def get_engine(name: str | None = None) -> Engine:
    """The engine named (default: settings.SUGGESTIONS_ENGINE); one shared instance per name."""
    name = name or settings.SUGGESTIONS_ENGINE
    if name not in ENGINES:
        raise ValueError(f"Unknown suggestion engine {name!r}; use one of: {', '.join(ENGINES)}")
    if name == "llm":  # its client reads settings that tests change: not shared
        return import_string(ENGINES[name])()
    return _engine(name)
