"""manage.py import_mbox PATH (--account ID | --owner USERNAME)"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from integrations.models import ProviderAccount
from integrations.sync import sync_account


class Command(BaseCommand):
    help = (
        "Import an mbox file (a Google Takeout export is one), streaming, with a progress bar. "
        "Interrupted imports resume where they stopped when run again; later runs pick up appended mail."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="Path to the mbox file")
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--account", type=int, help="Import into this existing mbox account (id)")
        target.add_argument("--owner", help="Create (or reuse) an mbox account for this file, owned by USERNAME")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"]).expanduser().resolve()
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        account = self._account(options, path)
        if account.backfill_state:
            offset = account.backfill_state.get("page_token", {}).get("offset", 0)
            self.stdout.write(f"Resuming account {account.pk} at byte {offset:,} of {path.stat().st_size:,}")
        bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name,
                   disable=options["verbosity"] < 1)

        def progress(done: int, total: int | None) -> None:
            bar.total = total or bar.total
            bar.n = done
            bar.refresh()

        with bar:
            outcome = sync_account(account.pk, progress=progress)
        if outcome.status != "succeeded":
            raise CommandError(f"Import into account {account.pk} did not complete: {outcome.message}")
        self.stdout.write(self.style.SUCCESS(f"Account {account.pk}: {outcome.message}"))

    def _account(self, options: dict[str, Any], path: Path) -> ProviderAccount:
        if options["account"] is not None:
            account = ProviderAccount.objects.filter(pk=options["account"]).first()
            if account is None:
                raise CommandError(f"No account with id {options['account']}")
            if account.provider != "mbox":
                raise CommandError(f"Account {account.pk} is a {account.provider} account, not an mbox import")
            if account.config.get("path") != str(path):
                account.config = {**account.config, "path": str(path)}
                account.sync_cursor, account.backfill_state = {}, None
                account.save(update_fields=["config", "sync_cursor", "backfill_state", "updated_at"])
            return account
        owner = get_user_model().objects.filter(username=options["owner"]).first()
        if owner is None:
            raise CommandError(f"No user named {options['owner']!r}")
        account, created = ProviderAccount.objects.get_or_create(
            owner=owner,
            provider="mbox",
            config__path=str(path),
            defaults={"display_name": path.name, "external_address": owner.email, "config": {"path": str(path)},
                      # imports run when asked, not on the schedule
                      "next_sync_at": None},
        )
        if created:
            self.stdout.write(f"Created mbox account {account.pk} for {owner.get_username()}")
        return account
