"""manage.py recount_communications [--account ID ...]: repairs the accounts' message counters."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from integrations.accounts import recount_communications


class Command(BaseCommand):
    help = ("Recount each account's live communications (ingest keeps the counter current; run this after "
            "writing communications by hand, e.g. SQL imports).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", type=int, action="append", help="Account id (repeatable); default all")

    def handle(self, *args: Any, account: list[int] | None = None, **options: Any) -> None:
        fixed = recount_communications(account)
        self.stdout.write(f"{fixed} account count{'s' if fixed != 1 else ''} corrected.")
