"""Gmail harness for the provider contract suite: a mailbox on the fake Gmail server (tests/fakes/gmail.py)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from integrations.accounts import save_credentials
from integrations.models import ProviderAccount
from tests.fakes.gmail import FakeGmail
from tests.fakes.google_oauth import GMAIL_MODIFY, GMAIL_READONLY
from tests.providers.imap_harness import make_raw

EMAIL = "carol.gmail@example.com"


def oauth_credentials(tokens: dict[str, Any]) -> dict[str, Any]:
    """The stored credentials (package storage contract) for tokens the fake issued."""
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=int(tokens["expires_in"]))
    return {"kind": "oauth", "refresh_token": tokens["refresh_token"], "access_token": tokens["access_token"],
            "expiry": expiry.isoformat(), "scopes": tokens["scope"].split()}


@dataclass
class GmailHarness:
    fake: FakeGmail
    owner: Any
    email: str = EMAIL
    supports_auth: bool = True
    auth_error_text: str = "Reconnect Gmail"  # what the account's last_error says after break_auth()
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.box = self.fake.add_mailbox(self.email)

    def make_account(self, **config: Any) -> ProviderAccount:
        return ProviderAccount.objects.create(
            owner=self.owner, provider="gmail", display_name="Gmail", external_address=self.email,
            config={"email": self.email, **config}, credentials=oauth_credentials(self.fake.issue_tokens(self.email)),
        )

    def add_messages(self, count: int, **kwargs: Any) -> list[bytes]:
        raws = [make_raw(**kwargs) for _ in range(count)]
        self.append_raw(raws)
        return raws

    def append_raw(self, raws: list[bytes], **options: Any) -> list[str]:
        added = [self.box.add(raw, **options) for raw in raws]
        self.ids += added
        return added

    def add_unread(self, count: int) -> None:
        self.append_raw([make_raw() for _ in range(count)], labels=("INBOX", "UNREAD"))

    def allow_mark_read(self, account: ProviderAccount) -> None:
        """The user reconnected allowing gmail.modify."""
        save_credentials(account, oauth_credentials(self.fake.issue_tokens(self.email, scopes=(GMAIL_READONLY, GMAIL_MODIFY))))

    def read_states(self) -> list[bool]:
        messages = [self.box.get(message_id) for message_id in self.ids]
        return ["UNREAD" not in m.labels for m in messages if m is not None]

    def add_malformed(self) -> None:
        self.append_raw([b"Subject: =?bogus?Q?x?=\r\nFrom: ;;;@@@\r\nDate: yesterday-ish\r\n\r\n\xff\xfe garbage\r\n"])

    def expire_cursor(self) -> None:
        """History moves on (a label added and removed again) and is then forgotten: the stored
        historyId answers 404."""
        if self.ids:
            self.box.label(self.ids[0], add=["IMPORTANT"])
            self.box.label(self.ids[0], remove=["IMPORTANT"])
        self.box.expire_history()

    def break_auth(self) -> None:
        self.fake.revoke(self.email)

    def restore_auth(self, account: ProviderAccount) -> None:
        """The user reconnects: new tokens are stored."""
        save_credentials(account, oauth_credentials(self.fake.issue_tokens(self.email)))

    def snapshot(self) -> object:
        """Everything a sync could change: the history id (it moves on any change) and every label."""
        messages = [self.box.get(message_id) for message_id in self.ids]
        return self.box.history_id, [(m.id, tuple(m.labels)) for m in messages if m is not None]
