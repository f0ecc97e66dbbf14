"""manage.py sync [--account ID | --all] [--full]: runs syncs inline, with a progress bar."""
from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from integrations.models import ProviderAccount
from integrations.sync import NOT_SYNCABLE, sync_account


class Command(BaseCommand):
    help = "Sync accounts now, in this process (the scheduler does the same in the background)."

    def add_arguments(self, parser: CommandParser) -> None:
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--account", type=int, action="append", help="Account id (repeatable)")
        target.add_argument("--all", action="store_true", help="Every account that can sync")
        parser.add_argument("--full", action="store_true", help="Forget the cursor and refetch everything")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["all"]:
            ids = list(ProviderAccount.objects.exclude(status__in=NOT_SYNCABLE).order_by("pk").values_list("pk", flat=True))
        else:
            ids = options["account"]
            missing = set(ids) - set(ProviderAccount.objects.filter(pk__in=ids).values_list("pk", flat=True))
            if missing:
                raise CommandError(f"No account with id {', '.join(map(str, sorted(missing)))}")
        failures = 0
        for account_id in ids:
            with tqdm(desc=f"account {account_id}", unit="msg", disable=options["verbosity"] < 1) as bar:
                def progress(done: int, total: int | None) -> None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()

                outcome = sync_account(account_id, full=options["full"], progress=progress)
            style = self.style.SUCCESS if outcome.status == "succeeded" else self.style.WARNING
            self.stdout.write(style(f"Account {account_id}: {outcome.status}: {outcome.message}"))
            failures += outcome.status in ("failed", "not_syncable")
        if failures:
            raise CommandError(f"{failures} of {len(ids)} account(s) did not sync")
