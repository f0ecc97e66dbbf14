"""Scoring an engine on a labelled JSON Lines set (manage.py evaluate_suggestions, bench/suggest.py).

Each case is turned into the engine's input the way the flow does it: the raw message goes
through conversations.parsing (as every provider's does) and automation.inputs; an SMS case
becomes a ParsedMessage of channel sms. ``owner`` is the owner's own address on that channel.
"""
from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automation.engines import Engine, Judgement, MessageInput
from automation.inputs import engine_headers, from_parsed
from conversations.messages import Address, AddressKind, Channel, ParsedMessage
from conversations.parsing import parse_message


@dataclass
class Case:
    id: str
    message: MessageInput
    action: bool
    due: dt.date | None
    category: str = ""


@dataclass
class Scores:
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    due_total: int = 0
    due_right: int = 0
    wrong: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def due_accuracy(self) -> float:
        return self.due_right / self.due_total if self.due_total else 0.0

    def line(self) -> str:
        return (f"precision={self.precision:.2f} recall={self.recall:.2f} f1={self.f1:.2f} "
                f"due_accuracy={self.due_accuracy:.2f} n={self.n}")


def to_input(row: dict[str, Any]) -> MessageInput:
    owner = str(row["owner"]).lower()
    time_zone = row.get("timezone") or "UTC"
    if "sms" in row:
        sms = row["sms"]
        sent = dt.datetime.fromisoformat(sms["sent_at"].replace("Z", "+00:00"))
        message = ParsedMessage(
            provider_message_id=str(row["id"]), channel=Channel.SMS,
            sender=Address(AddressKind.PHONE, sms["from"]), to=(Address(AddressKind.PHONE, sms["to"]),),
            body_text=sms["body"], sent_at=sent)
        return from_parsed(message, owner_addresses={owner}, time_zone=time_zone)
    raw = row["raw"].encode("utf-8")
    return from_parsed(parse_message(raw), owner_addresses={owner}, time_zone=time_zone, headers=engine_headers(raw))


def read_cases(paths: Iterable[str | Path]) -> Iterator[Case]:
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                row = json.loads(line)
                due = dt.date.fromisoformat(row["due"]) if row.get("due") else None
                yield Case(str(row.get("id", f"{path}:{number}")), to_input(row), bool(row["action"]), due,
                           row.get("category", ""))


def score(engine: Engine, cases: Iterable[Case]) -> Scores:
    scores = Scores()
    for case in cases:
        judgement: Judgement = engine.judge(case.message)
        if judgement.action and case.action:
            scores.tp += 1
            if case.due is not None:
                scores.due_total += 1
                if judgement.due == case.due:
                    scores.due_right += 1
                else:
                    scores.wrong.append(f"{case.id}: due {judgement.due} expected {case.due} ({judgement.reasoning})")
        elif judgement.action:
            scores.fp += 1
            scores.wrong.append(f"{case.id}: false positive {judgement.confidence:.2f} ({judgement.reasoning})")
        elif case.action:
            scores.fn += 1
            scores.wrong.append(f"{case.id}: missed ({judgement.reasoning})")
        else:
            scores.tn += 1
    return scores
