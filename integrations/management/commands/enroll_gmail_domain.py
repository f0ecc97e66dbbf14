"""manage.py enroll_gmail_domain (--key-file PATH | --key-env VAR) --owner USER (--domain D | --users a@d,b@d)"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q

from integrations.providers.gmail.enroll import (
    BadAddresses,
    BadKey,
    domain_mailboxes,
    enroll,
    load_key,
    parse_addresses,
)


class Command(BaseCommand):
    help = (
        "Connect Workspace mailboxes through a service account with domain-wide delegation (gmail.readonly): "
        "one Gmail account per mailbox, owned by --owner, each verified with one profile call first. --users "
        "names the mailboxes (bare names get --domain's suffix when both are given); --domain alone re-enrolls "
        "the owner's Gmail accounts already connected in that domain (a domain's user list is not read from "
        "Google). The key is read from a file or an environment variable and is never printed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        key = parser.add_mutually_exclusive_group(required=True)
        key.add_argument("--key-file", help="The service account's JSON key file")
        key.add_argument("--key-env", metavar="VAR", help="An environment variable holding the JSON key")
        parser.add_argument("--owner", required=True, help="Username (or email) of the user owning the accounts")
        parser.add_argument("--domain", help="The Workspace domain (alone: re-enroll the owner's accounts in it)")
        parser.add_argument("--users", help="Mailboxes to enroll, comma-separated (a@d,b@d)")

    def handle(self, *args: Any, **options: Any) -> None:
        key = self._key(options)
        owner = self._owner(options["owner"])
        domain = (options["domain"] or "").strip().lower().lstrip("@") or None
        try:
            if options["users"]:
                addresses = parse_addresses(options["users"], domain)
            elif domain:
                addresses = domain_mailboxes(owner, domain)
                if not addresses:
                    raise CommandError(
                        f"{owner} has no Gmail account in {domain} to re-enroll. Name the mailboxes with --users "
                        "(this command does not list a domain's users from Google).")
            else:
                raise CommandError("Give --users, --domain, or both.")
        except BadAddresses as error:
            raise CommandError(str(error)) from None
        results = enroll(key, owner, addresses)
        for result in results:
            write = self.stdout.write if result.ok else self.stderr.write
            write(result.describe())
        refused = sum(not result.ok for result in results)
        if refused:
            raise CommandError(f"{refused} of {len(results)} mailbox(es) were not enrolled (see above).")
        self.stdout.write(self.style.SUCCESS(f"Enrolled {len(results)} mailbox(es); they sync from the next "
                                             "scheduler tick."))

    def _key(self, options: dict[str, Any]) -> dict[str, Any]:
        if options["key_file"]:
            try:
                data = Path(options["key_file"]).read_bytes()
            except OSError as error:
                raise CommandError(f"Cannot read the key file {options['key_file']}: {error.strerror}.") from None
        else:
            data = os.environ.get(options["key_env"], "")
            if not data:
                raise CommandError(f"The environment variable {options['key_env']} is not set or empty.")
        try:
            return load_key(data)
        except BadKey as error:
            raise CommandError(str(error)) from None

    @staticmethod
    def _owner(name: str) -> Any:
        users = get_user_model().objects.filter(Q(username=name) | Q(email__iexact=name))
        if len(users) != 1:
            raise CommandError(f"No single user {name!r} (give a username, or an email that one user has).")
        return users[0]
