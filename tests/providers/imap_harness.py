"""IMAP harness for the provider contract suite: a real Dovecot mailbox per test."""
from __future__ import annotations

import datetime as dt
import email.utils
import itertools
from dataclasses import dataclass, field

from integrations.models import ProviderAccount
from tests.dovecot import append_many
from tests.fixtures_dovecot import ImapUser

_numbers = itertools.count(1)


def make_raw(number: int | None = None, *, subject: str = "", sender: str = "carol@acme.com",
             to: str = "", extra_headers: str = "", body: str = "") -> bytes:
    number = next(_numbers) if number is None else number
    date = email.utils.format_datetime(dt.datetime(2026, 10, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=number))
    return (
        f"From: Carol <{sender}>\r\nTo: {to or 'someone@example.org'}\r\nSubject: {subject or f'Message {number}'}\r\n"
        f"Date: {date}\r\nMessage-ID: <imap-{number}-{id(object())}@acme.com>\r\n{extra_headers}\r\n"
        f"{body or f'Body number {number}'}\r\n"
    ).encode()


@dataclass
class ImapHarness:
    user: ImapUser
    owner: object
    supports_rate_limit: bool = False
    appended: list[int] = field(default_factory=list)

    def make_account(self, **config: object) -> ProviderAccount:
        return ProviderAccount.objects.create(
            owner=self.owner,
            provider="imap",
            display_name="Dovecot",
            external_address=f"{self.user.username}@example.org",
            config={"host": self.user.host, "port": self.user.port, "security": "none",
                    "username": self.user.username, **config},
            credentials={"password": self.user.password},
        )

    def add_messages(self, count: int, folder: str = "INBOX", **kwargs: object) -> list[bytes]:
        raws = [make_raw(**kwargs) for _ in range(count)]  # type: ignore[arg-type]
        self.append_raw(raws, folder)
        return raws

    def append_raw(self, raws: list[bytes], folder: str = "INBOX") -> None:
        client = self.user.client()
        try:
            self.appended += append_many(client, folder, raws)
        finally:
            client.logout()

    def add_malformed(self) -> None:
        self.append_raw([b"Subject: =?bogus?Q?x?=\r\nFrom: ;;;@@@\r\nDate: yesterday-ish\r\n\r\n\xff\xfe garbage"])

    def expire_cursor(self, account: ProviderAccount) -> None:
        """Delete and recreate INBOX's sibling? INBOX cannot be deleted: change UIDVALIDITY of a folder."""
        folder = "Reset"
        client = self.user.client()
        try:
            client.delete_folder(folder) if client.folder_exists(folder) else None
            client.create_folder(folder)
        finally:
            client.logout()

    def break_auth(self) -> None:
        self.user.server.set_password(self.user.username, "a-different-password")
