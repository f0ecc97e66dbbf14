"""manage.py add_imap_account --owner USER --host H --port P --security ssl|starttls|none --username U"""
from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.accounts import connect_account, same_account
from integrations.models import ProviderAccount
from integrations.providers.base import ProviderError
from integrations.providers.imap.connect import ImapConnect
from integrations.providers.imap.security import SECURITY_CHOICES, insecure_refusal


class Command(BaseCommand):
    help = (
        "Connect an IMAP mailbox. The password is read from a prompt or, with --password-stdin, from "
        "standard input (never from the command line). The login is tested before anything is saved; "
        "an existing account for the same owner, host and username gets the new settings."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--owner", required=True, help="Username of the account's owner")
        parser.add_argument("--host", required=True)
        parser.add_argument("--port", type=int, help="Default: 993 for ssl, 143 otherwise")
        parser.add_argument("--security", choices=SECURITY_CHOICES, default="ssl",
                            help="none sends the password in clear text: refused unless ALLOW_INSECURE_IMAP=true "
                                 "(or, with DEBUG, for a loopback host)")
        parser.add_argument("--username", required=True, help="IMAP login name")
        parser.add_argument("--folders", nargs="*", help="Folders to sync (default: INBOX and the Sent folder)")
        parser.add_argument("--email", help="The mailbox's address (default: the username if it is one)")
        parser.add_argument("--password-stdin", action="store_true", help="Read the password from standard input")
        parser.add_argument("--password", nargs="?", action=_RefusePassword, help=argparse.SUPPRESS)

    def handle(self, *args: Any, **options: Any) -> None:
        owner = get_user_model().objects.filter(username=options["owner"]).first()
        if owner is None:
            raise CommandError(f"No user named {options['owner']!r}")
        refusal = insecure_refusal(options["host"], options["security"])
        if refusal:  # before the password is even asked for
            raise CommandError(f"{refusal} Nothing saved.")
        password = self._password(options["password_stdin"])
        if not password:
            raise CommandError("An empty password was given")
        port = options["port"] or (993 if options["security"] == "ssl" else 143)
        config: dict[str, Any] = {"host": options["host"], "port": port, "security": options["security"],
                                  "username": options["username"]}
        if options["folders"]:
            config["folders"] = options["folders"]
        account = same_account(owner, "imap", config) or ProviderAccount(owner=owner, provider="imap")
        account.config = {**account.config, **config}
        defaults = ImapConnect().account_defaults(config)
        account.external_address = options["email"] or defaults["external_address"] or account.external_address
        account.display_name = account.display_name or defaults["display_name"]
        created = account.pk is None
        try:
            connect_account(account, {"password": password})
        except ProviderError as error:
            raise CommandError(f"Login test failed, nothing saved: {error}") from None
        self.stderr.write(f"{'Created' if created else 'Updated'} IMAP account; login test passed.")
        self.stdout.write(str(account.pk))

    def _password(self, from_stdin: bool) -> str:
        if from_stdin:
            return sys.stdin.readline().rstrip("\r\n")
        if not sys.stdin.isatty():
            raise CommandError("No terminal to prompt for the password: use --password-stdin")
        return getpass.getpass("IMAP password: ")


class _RefusePassword(argparse.Action):
    """A password on the command line lands in shell history and process lists: refuse it,
    without repeating it in the error."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        parser.error("passwords are not accepted on the command line: answer the prompt or use --password-stdin")
