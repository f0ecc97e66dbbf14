"""manage.py import_mbox PATH (--account ID | --owner USERNAME)"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from integrations.mbox import import_mbox, resume_offset
from integrations.models import ProviderAccount


class Command(BaseCommand):
    help = (
        "Import an mbox file (a Google Takeout export is one), streaming, with a progress bar. "
        "Interrupted imports resume where they stopped when run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="Path to the mbox file")
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--account", type=int, help="Import into this existing account (id)")
        target.add_argument("--owner", help="Create (or reuse) an mbox account for this file, owned by USERNAME")
        parser.add_argument("--batch-size", type=int, default=None, help="Messages per transaction")

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["path"]).expanduser().resolve()
        if not path.is_file():
            raise CommandError(f"No such file: {path}")
        account = self._account(options, path)
        start = resume_offset(account, path)
        size = path.stat().st_size
        if start:
            self.stdout.write(f"Resuming account {account.pk} at byte {start:,} of {size:,}")
        with tqdm(total=size, initial=start, unit="B", unit_scale=True, desc=path.name,
                  disable=options["verbosity"] < 1) as bar:
            run = import_mbox(account, path, batch_size=options["batch_size"], progress=bar.update)
        self.stdout.write(
            self.style.SUCCESS(
                f"Account {account.pk}: {run.fetched} read, {run.created} created, "
                f"{run.updated} updated, {run.skipped} already present"
            )
        )

    def _account(self, options: dict[str, Any], path: Path) -> ProviderAccount:
        if options["account"] is not None:
            try:
                return ProviderAccount.objects.select_related("owner").get(pk=options["account"])
            except ProviderAccount.DoesNotExist:
                raise CommandError(f"No account with id {options['account']}") from None
        try:
            owner = get_user_model().objects.get(username=options["owner"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user named {options['owner']!r}") from None
        account, created = ProviderAccount.objects.get_or_create(
            owner=owner,
            provider="mbox",
            config__path=str(path),
            defaults={
                "display_name": path.name,
                "external_address": owner.email,
                "config": {"path": str(path)},
            },
        )
        if created:
            self.stdout.write(f"Created mbox account {account.pk} for {owner.get_username()}")
        return account
