"""Twilio harness for the provider contract suite: an account on the fake Twilio (tests/fakes/twilio.py)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from integrations.accounts import save_credentials
from integrations.models import ProviderAccount
from tests.fakes.twilio import FakeAccount, FakeTwilio

OUR_NUMBER = "+15005550006"
_senders = itertools.count(1)


@dataclass
class TwilioHarness:
    fake: FakeTwilio
    owner: Any
    supports_auth: bool = True
    auth_error_text: str = "Twilio refused the credentials"
    numbers: list[str] = field(default_factory=lambda: [OUR_NUMBER])
    account: ProviderAccount | None = None

    def __post_init__(self) -> None:
        self.twilio: FakeAccount = self.fake.add_account(list(self.numbers))

    def make_account(self) -> ProviderAccount:
        self.account = ProviderAccount.objects.create(
            owner=self.owner, provider="twilio", display_name="Twilio", external_address=self.numbers[0],
            config={"account_sid": self.twilio.sid, "numbers": list(self.numbers), "aliases": list(self.numbers)},
            credentials={"auth_token": self.twilio.auth_token},
        )
        return self.account

    def add_messages(self, count: int, **kwargs: Any) -> list[str]:
        return [self.fake.add_message(self.twilio, from_=f"+1415555{next(_senders) % 10000:04d}", to=self.numbers[0],
                                      body=f"Text number {index}", **kwargs).sid for index in range(count)]

    def add_malformed(self) -> None:
        self.fake.add_message(self.twilio, from_="+14155550199", to=self.numbers[0], body="\ufffd garbage",
                              date_sent_text="yesterday-ish")

    def expire_cursor(self) -> None:
        """The user adds a number to the account: the cursor no longer covers the configured numbers."""
        assert self.account is not None
        number = f"+1500555{len(self.numbers) + 10:04d}"
        self.numbers.append(number)
        self.twilio.numbers.append(number)
        config = {**self.account.config, "numbers": list(self.numbers), "aliases": list(self.numbers)}
        ProviderAccount.objects.filter(pk=self.account.pk).update(config=config)

    def break_auth(self) -> None:
        self.twilio.auth_token = "rotated-" + self.twilio.auth_token

    def restore_auth(self, account: ProviderAccount) -> None:
        save_credentials(account, {"auth_token": self.twilio.auth_token})

    def snapshot(self) -> object:
        """Every message and its status, and that no request but GET was ever made."""
        changes = [target for method, target in self.fake.requests if method != "GET"]
        return sorted((m.sid, m.status, m.body) for m in self.twilio.messages.values()), changes
