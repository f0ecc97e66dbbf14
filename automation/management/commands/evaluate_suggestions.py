"""manage.py evaluate_suggestions FILE [FILE ...] [--engine rules|llm]: scores an engine on labelled cases."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from automation.engines import ENGINES, get_engine
from automation.evaluation import read_cases, score


class Command(BaseCommand):
    help = ("Runs a suggestion engine on labelled JSON Lines cases, prints the cases it got wrong, and ends with "
            "'precision=P recall=R f1=F due_accuracy=D n=N'.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE", help="JSON Lines, one labelled case per line.")
        parser.add_argument("--engine", choices=sorted(ENGINES), default=None,
                            help="The engine (default: SUGGESTIONS_ENGINE).")

    def handle(self, *args: Any, files: list[str], engine: str | None, **options: Any) -> None:
        scores = score(get_engine(engine), read_cases(files))
        for line in scores.wrong:
            self.stdout.write(line)
        self.stdout.write(scores.line())
