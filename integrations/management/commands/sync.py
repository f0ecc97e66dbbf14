"""manage.py sync [--account ID | --all] [--full | --since DATE --until DATE]: runs syncs inline,
with a progress bar."""
from __future__ import annotations

import datetime as dt
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from integrations.models import ProviderAccount
from integrations.providers.base import Capability
from integrations.providers.registry import provider_class
from integrations.sync import NOT_SYNCABLE, SyncOutcome, sync_account
from integrations.tasks import NotSyncable, SyncInProgress, delta_due, request_sync


class Command(BaseCommand):
    help = "Sync accounts now, in this process (the scheduler does the same in the background)."

    def add_arguments(self, parser: CommandParser) -> None:
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--account", type=int, action="append", help="Account id (repeatable)")
        target.add_argument("--all", action="store_true", help="Every account that can sync")
        parser.add_argument("--full", action="store_true", help="Forget the cursor and refetch everything")
        parser.add_argument("--since", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                            help="With --until: a historical sync of the mail received in [since, until), "
                                 "leaving the delta cursor alone")
        parser.add_argument("--until", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                            help="With --all: every account whose provider can fetch date ranges")

    def handle(self, *args: Any, **options: Any) -> None:
        historical = options["since"] is not None or options["until"] is not None
        if historical and options["full"]:
            raise CommandError("--full and --since/--until do not go together")
        if options["all"]:
            accounts = ProviderAccount.objects.exclude(status__in=NOT_SYNCABLE).order_by("pk")
            ids = [account.pk for account in accounts.only("pk", "provider")
                   if not historical or Capability.DATE_RANGE in provider_class(account.provider).capabilities]
        else:
            ids = options["account"]
            missing = set(ids) - set(ProviderAccount.objects.filter(pk__in=ids).values_list("pk", flat=True))
            if missing:
                raise CommandError(f"No account with id {', '.join(map(str, sorted(missing)))}")
        failures = 0
        for account_id in ids:
            unit = "month" if historical else "msg"
            with tqdm(desc=f"account {account_id}", unit=unit, disable=options["verbosity"] < 1) as bar:
                def progress(done: int, total: int | None) -> None:
                    bar.total = total
                    bar.n = done
                    bar.refresh()

                if historical:
                    outcome = self._historical(account_id, options["since"], options["until"], progress)
                else:
                    outcome = sync_account(account_id, full=options["full"], progress=progress)
            style = self.style.SUCCESS if outcome.status == "succeeded" else self.style.WARNING
            self.stdout.write(style(f"Account {account_id}: {outcome.status}: {outcome.message}"))
            failures += outcome.status in ("failed", "not_syncable")
        if failures:
            raise CommandError(f"{failures} of {len(ids)} account(s) did not sync")

    @staticmethod
    def _historical(account_id: int, since: dt.date | None, until: dt.date | None, progress: Any) -> SyncOutcome:
        """Queues a historical run (without a task) and runs its chunks here, one after another;
        a due delta runs between two chunks, as it would in the background."""
        if since is None or until is None:
            raise CommandError("A historical sync needs both --since and --until")
        account = ProviderAccount.objects.get(pk=account_id)
        try:
            run = request_sync(account, kind="historical", since=since, until=until, dispatch=False)
        except ValueError as error:
            raise CommandError(str(error)) from None
        except (NotSyncable, SyncInProgress) as error:
            return SyncOutcome("not_syncable" if isinstance(error, NotSyncable) else "already_running",
                               message=str(error))
        while True:
            outcome = sync_account(account_id, run_id=run.pk, progress=progress)
            if outcome.status != "yielded":
                return outcome
            if delta_due(account_id):
                sync_account(account_id)
