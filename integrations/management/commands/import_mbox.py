"""manage.py import_mbox PATH (--account ID | --owner USERNAME) [--copy]"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from integrations.models import ProviderAccount
from integrations.providers.base import PermanentError
from integrations.providers.mbox import MboxProvider, resolve_import_path
from integrations.sync import sync_account

COPY_CHUNK_BYTES = 1024 * 1024
# How long to wait for a file that is still changing before importing what is complete of it.
SETTLE_WAIT_MAX_SECONDS = 60.0


class Command(BaseCommand):
    help = (
        "Import an mbox file (a Google Takeout export is one), streaming, with a progress bar. The file must be "
        "in MBOX_IMPORT_DIR; --copy copies one from elsewhere there first. Interrupted imports resume where they "
        "stopped when run again; later runs pick up appended mail."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="Path to the mbox file")
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--account", type=int, help="Import into this existing mbox account (id)")
        target.add_argument("--owner", help="Create (or reuse) an mbox account for this file, owned by USERNAME")
        parser.add_argument("--copy", action="store_true",
                            help="Copy the file into MBOX_IMPORT_DIR (streaming) and import the copy: for a file "
                                 "outside that directory")

    def handle(self, *args: Any, **options: Any) -> None:
        given = Path(options["path"]).expanduser().absolute()
        if not given.is_file():
            raise CommandError(f"No such file: {given}")
        account, owner = self._target(options)
        quiet = options["verbosity"] < 1
        if options["copy"]:
            given = self._copy(given, owner, account, quiet)
        root = Path(settings.MBOX_IMPORT_DIR).resolve()
        if not given.resolve().is_relative_to(root):
            raise CommandError(f"{given} is outside MBOX_IMPORT_DIR ({root}), the only directory mbox imports may "
                               "read. Run this again with --copy to copy it there and import the copy.")
        try:
            path = resolve_import_path(given)
        except PermanentError as error:
            raise CommandError(str(error)) from error
        account = self._account(account, owner, path)
        if account.backfill_state:
            offset = account.backfill_state.get("page_token", {}).get("offset", 0)
            self.stdout.write(f"Resuming account {account.pk} at byte {offset:,} of {path.stat().st_size:,}")
        self._wait_until_settled(path)
        bar = tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name, disable=quiet)

        def progress(done: int, total: int | None) -> None:
            bar.total = total or bar.total
            bar.n = done
            bar.refresh()

        with bar:
            outcome = sync_account(account.pk, progress=progress)
        if outcome.status != "succeeded":
            raise CommandError(f"Import into account {account.pk} did not complete: {outcome.message}")
        self.stdout.write(self.style.SUCCESS(f"Account {account.pk}: {outcome.message}"))
        account.refresh_from_db()
        offset = (account.sync_cursor or {}).get("offset")
        if offset is not None and offset < path.stat().st_size:
            self.stdout.write(self.style.WARNING(
                f"{path.name} is still being written from byte {offset:,}: its last message is imported by the "
                "next run."
            ))

    def _target(self, options: dict[str, Any]) -> tuple[ProviderAccount | None, Any]:
        """The account named by --account, or the user named by --owner: checked before any work."""
        if options["account"] is not None:
            account = ProviderAccount.objects.select_related("owner").filter(pk=options["account"]).first()
            if account is None:
                raise CommandError(f"No account with id {options['account']}")
            if account.provider != "mbox":
                raise CommandError(f"Account {account.pk} is a {account.provider} account, not an mbox import")
            return account, account.owner
        owner = get_user_model().objects.filter(username=options["owner"]).first()
        if owner is None:
            raise CommandError(f"No user named {options['owner']!r}")
        return None, owner

    def _account(self, account: ProviderAccount | None, owner: Any, path: Path) -> ProviderAccount:
        if account is not None:
            if account.config.get("path") != str(path):
                # A sync running meanwhile may still save a position in the old file: positions
                # name their file, so the next sync sees that and reads this one from its start.
                account.config = {**account.config, "path": str(path)}
                account.sync_cursor, account.backfill_state = {}, None
                account.save(update_fields=["config", "sync_cursor", "backfill_state", "updated_at"])
            return account
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

    def _copy(self, source: Path, owner: Any, account: ProviderAccount | None, quiet: bool) -> Path:
        """Copies ``source`` into MBOX_IMPORT_DIR (unless it is there already) and returns the copy.

        The copy is written under a temporary name and renamed when complete, so no sync
        ever reads it half-copied; it keeps the source's modification time, by which a
        repeated --copy of the same file recognises its earlier copy and resumes that import.
        """
        root = Path(settings.MBOX_IMPORT_DIR)
        root.mkdir(parents=True, exist_ok=True)
        root = root.resolve()
        source = source.resolve()
        if source.is_relative_to(root):
            self.stdout.write(f"{source} is in MBOX_IMPORT_DIR already: importing it in place")
            return source
        destination = root / source.name
        self._wait_until_settled(source)
        before = source.stat()
        if destination.exists():
            there = destination.stat()
            if (there.st_size, there.st_mtime_ns) == (before.st_size, before.st_mtime_ns):
                self.stdout.write(f"{destination} is a copy of {source} already: importing it")
                return destination
            others = ProviderAccount.objects.filter(provider="mbox", config__path=str(destination))
            others = others.exclude(pk=account.pk) if account is not None else others.exclude(owner=owner)
            if others.exists():
                raise CommandError(f"{destination} exists and is another account's mbox file: rename {source} "
                                   "(or move it into MBOX_IMPORT_DIR yourself) and run this again.")
        handle, temporary = tempfile.mkstemp(dir=root, prefix=f".{source.name}.", suffix=".part")
        try:
            with open(source, "rb") as reader, os.fdopen(handle, "wb") as writer, tqdm(
                total=before.st_size, unit="B", unit_scale=True, desc=f"copy {source.name}", disable=quiet
            ) as bar:
                while chunk := reader.read(COPY_CHUNK_BYTES):
                    writer.write(chunk)
                    bar.update(len(chunk))
            shutil.copystat(source, temporary)
            after = source.stat()
            if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
                raise CommandError(f"{source} changed while it was being copied: run this again once it is complete.")
            # Replacing an earlier copy gives the account another file: its next sync reads it whole.
            os.replace(temporary, destination)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        self.stdout.write(f"Copied {source} to {destination}")
        return destination

    def _wait_until_settled(self, path: Path) -> None:
        """Waits (a while at most) until ``path`` has been left alone long enough for its last message to count.

        The provider stores a file's last message only once the file has not changed for
        MboxProvider.settle_seconds (it may be half-written); a file just downloaded or
        copied is imported in full in this run by waiting for that here.
        """
        settle = MboxProvider.settle_seconds
        deadline = time.monotonic() + SETTLE_WAIT_MAX_SECONDS
        announced = False
        while (wait := settle - (time.time() - path.stat().st_mtime)) > 0:
            if time.monotonic() + wait > deadline:
                return  # still changing: what is complete is imported, the rest by a later run
            if not announced:
                self.stdout.write(f"{path.name} changed {settle - wait:.1f}s ago: waiting for it to be complete")
                announced = True
            time.sleep(wait + 0.05)
