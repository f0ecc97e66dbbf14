"""Outlook harness for the provider contract suite: a mailbox on the fake Graph (tests/fakes/graph.py)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from integrations.accounts import save_credentials
from integrations.models import ProviderAccount
from integrations.providers.outlook import auth
from tests.fakes.graph import FakeGraph
from tests.fixtures_outlook import make_credentials

EMAIL = "erin.outlook@contoso.example"


@dataclass
class OutlookHarness:
    fake: FakeGraph
    owner: Any
    email: str = EMAIL
    supports_auth: bool = True
    auth_error_text: str = "Reconnect Outlook"
    ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.box = self.fake.add_mailbox(self.email)

    def make_account(self, **config: Any) -> ProviderAccount:
        return ProviderAccount.objects.create(
            owner=self.owner, provider="outlook", display_name="Outlook", external_address=self.email,
            config={"email": self.email, **config}, credentials=make_credentials(self.fake, self.email),
        )

    def add_messages(self, count: int, **kwargs: Any) -> list[str]:
        added = [self.box.add(**kwargs) for _ in range(count)]
        self.ids += added
        return added

    def add_unread(self, count: int) -> None:
        """``count`` unread Inbox messages, a minute apart (Graph's times have whole seconds: the
        contract orders them by sent time)."""
        start = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=count)
        self.ids += [self.box.add(is_read=False, received=start + dt.timedelta(minutes=number))
                     for number in range(count)]

    def allow_mark_read(self, account: ProviderAccount) -> None:
        """The user reconnected allowing Mail.ReadWrite."""
        save_credentials(account, make_credentials(self.fake, self.email, (*auth.SCOPES, auth.MAIL_READ_WRITE)))

    def read_states(self) -> list[bool]:
        return [self.box.messages[message_id].fields["isRead"] for message_id in self.ids
                if not self.box.messages[message_id].deleted]

    def add_malformed(self) -> None:
        self.ids.append(self.box.add(subject="broken", sent_date="yesterday-ish"))
        message = self.box.messages[self.ids[-1]]
        message.fields["from"] = {"emailAddress": {"name": ";;;", "address": ";;;@@@"}}

    def expire_cursor(self) -> None:
        self.box.expire_deltas()

    def break_auth(self) -> None:
        """The user withdrew consent, and the cached access token has run out."""
        self.fake.revoke(self.email)
        account = ProviderAccount.objects.get(provider="outlook", external_address=self.email)
        account.credentials = {**account.credentials, "token_cache": _without_access_tokens(account.credentials)}
        account.save(update_fields=["credentials"])

    def restore_auth(self, account: ProviderAccount) -> None:
        save_credentials(account, make_credentials(self.fake, self.email))

    def snapshot(self) -> object:
        return self.box.snapshot()


def _without_access_tokens(credentials: dict[str, Any]) -> str:
    import json

    cache = json.loads(credentials["token_cache"])
    cache["AccessToken"] = {}
    return json.dumps(cache)
