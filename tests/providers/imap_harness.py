"""IMAP harness for the provider contract suite: a real Dovecot mailbox per test."""
from __future__ import annotations

import datetime as dt
import email.utils
import itertools
import uuid
from dataclasses import dataclass
from typing import Any

from integrations.models import ProviderAccount
from tests.dovecot import append_many
from tests.fixtures_dovecot import ImapUser

_numbers = itertools.count(1)


def make_raw(*, subject: str = "", sender: str = "carol@acme.com", to: str = "someone@example.org",
             extra_headers: str = "", body: str = "", message_id: str = "") -> bytes:
    number = next(_numbers)
    date = email.utils.format_datetime(dt.datetime(2026, 10, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=number))
    message_id = message_id or f"imap-{number}-{uuid.uuid4().hex[:8]}@acme.com"
    return (
        f"From: Carol <{sender}>\r\nTo: {to}\r\nSubject: {subject or f'Message {number}'}\r\n"
        f"Date: {date}\r\nMessage-ID: <{message_id}>\r\n{extra_headers}\r\n"
        f"{body or f'Body number {number}'}\r\n"
    ).encode()


@dataclass
class ImapHarness:
    """Messages go to the folder "Box", which (unlike INBOX) can be deleted and recreated."""

    user: ImapUser
    owner: Any
    folder: str = "Box"
    supports_auth: bool = True

    def __post_init__(self) -> None:
        with self.connection() as client:
            if not client.folder_exists(self.folder):
                client.create_folder(self.folder)

    def connection(self):  # type: ignore[no-untyped-def]
        return _Connection(self.user)

    def make_account(self) -> ProviderAccount:
        return ProviderAccount.objects.create(
            owner=self.owner,
            provider="imap",
            display_name="Dovecot",
            external_address=f"{self.user.username}@example.org",
            config={"host": self.user.host, "port": self.user.port, "security": "none",
                    "username": self.user.username, "folders": [self.folder]},
            credentials={"password": self.user.password},
        )

    def add_messages(self, count: int, **kwargs: Any) -> list[bytes]:
        raws = [make_raw(**kwargs) for _ in range(count)]
        self.append_raw(raws)
        return raws

    def append_raw(self, raws: list[bytes], folder: str | None = None) -> list[int]:
        with self.connection() as client:
            return append_many(client, folder or self.folder, raws)

    def add_unread(self, count: int) -> None:
        self.add_messages(count)  # appended without \\Seen

    def allow_mark_read(self, account: ProviderAccount) -> None:
        """Nothing to allow: the login may set flags."""

    def read_states(self) -> list[bool]:
        """Whether each message of the folder is \\Seen, in UID (append) order."""
        with self.connection() as client:
            client.select_folder(self.folder, readonly=True)
            flags = client.get_flags(client.search(["ALL"]))
            return [b"\\Seen" in flags[uid] for uid in sorted(flags)]

    def add_malformed(self) -> None:
        self.append_raw([b"Subject: =?bogus?Q?x?=\r\nFrom: ;;;@@@\r\nDate: yesterday-ish\r\n\r\n\xff\xfe garbage\r\n"])

    def expire_cursor(self) -> None:
        """Deletes and recreates the folder with the same messages: a new UIDVALIDITY."""
        with self.connection() as client:
            client.select_folder(self.folder, readonly=True)
            uids = client.search(["ALL"])
            raws = [data[b"BODY[]"] for data in client.fetch(uids, ["BODY.PEEK[]"]).values()] if uids else []
            client.unselect_folder()
            client.delete_folder(self.folder)
            client.create_folder(self.folder)
            if raws:
                append_many(client, self.folder, raws)

    def break_auth(self) -> None:
        self.user.server.set_password(self.user.username, "a-different-password")


class _Connection:
    def __init__(self, user: ImapUser) -> None:
        self.user = user

    def __enter__(self):  # type: ignore[no-untyped-def]
        self.client = self.user.client()
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.logout()
