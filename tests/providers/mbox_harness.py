"""Mbox harness for the provider contract suite: a file the test appends to."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from integrations.models import ProviderAccount
from tests.providers.imap_harness import make_raw


@dataclass
class MboxHarness:
    path: Path
    owner: Any
    supports_auth: bool = False  # a file has no credentials

    def __post_init__(self) -> None:
        self.path.write_bytes(b"")
        self.raws: list[bytes] = []

    def make_account(self) -> ProviderAccount:
        return ProviderAccount.objects.create(owner=self.owner, provider="mbox", display_name="Export",
                                              config={"path": str(self.path)})

    def add_messages(self, count: int, **kwargs: Any) -> list[bytes]:
        raws = [make_raw(**kwargs) for _ in range(count)]
        self.append_raw(raws)
        return raws

    def append_raw(self, raws: list[bytes]) -> None:
        self.raws.extend(raws)
        with open(self.path, "ab") as handle:
            for raw in raws:
                handle.write(b"From MAILER-DAEMON Mon Nov  2 10:00:00 2026\n" + raw.replace(b"\r\n", b"\n") + b"\n")
        self.age()

    def age(self) -> None:
        """Dates the file a minute back: written and left alone, so its last message counts as complete."""
        past = time.time() - 60
        os.utime(self.path, (past, past))

    def add_malformed(self) -> None:
        self.append_raw([b"Subject: =?bogus?Q?x?=\nFrom: ;;;@@@\nDate: yesterday-ish\n\n\xff\xfe garbage\n"])

    def expire_cursor(self) -> None:
        """The file is replaced by a shorter copy (the export was redone without the last message)."""
        raws = self.raws[:-1]
        self.path.write_bytes(b"")
        self.raws = []
        self.append_raw(raws)

    def break_auth(self) -> None:
        raise NotImplementedError
