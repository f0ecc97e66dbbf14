"""The engine contract: what an engine reads (MessageInput) and what it answers (Judgement)."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class MessageInput:
    """One communication as the engines see it, whatever its provider.

    Addresses are normalised (lower-case e-mail, E.164 phone). ``owner_addresses`` are the
    owner's own addresses on this channel: they decide whether the owner sent the message and
    whether they are only in cc. ``headers`` holds the few headers engines read (lower-case
    names: list-unsubscribe, list-id, precedence, auto-submitted, x-autoreply, x-autorespond)
    when the caller has them; ``time_zone`` is the owner's, where relative dates are read.
    """

    channel: str = "email"
    direction: str = "inbound"
    sender: str = ""
    sender_name: str = ""
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    owner_addresses: frozenset[str] = frozenset()
    subject: str = ""
    body: str = ""
    sent_at: dt.datetime | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    labels: tuple[str, ...] = ()
    has_calendar: bool = False
    time_zone: str = "UTC"


@dataclass(frozen=True, slots=True)
class Judgement:
    """An engine's answer. ``action`` says whether a task should be suggested; ``confidence`` (0..1)
    how sure it is; ``reasoning`` names the signals that fired, for a person to read."""

    action: bool
    confidence: float
    reasoning: str
    engine: str
    engine_version: str
    title: str = ""
    description: str = ""
    priority: str = "medium"
    due: dt.date | None = None
    tags: tuple[str, ...] = ()
    signals: tuple[str, ...] = ()


class Engine:
    """Base class of the engines. ``judge`` never raises for a message's content and never
    writes to the database; it may be called from many threads."""

    name: str = ""
    version: str = ""

    def judge(self, message: MessageInput) -> Judgement:
        raise NotImplementedError
