"""The fake Twilio (tests/fakes/twilio.py) as a standalone process, filled with synthetic messages.

    python -m tests.fakes.twilio_standalone --synthetic 50000 [--number +15005550006]
        [--mms-every 100] [--days 89] [--contacts 2000] [--seed 1]

Prints one JSON line once it is listening: {"url", "account_sid", "auth_token", "number",
"messages", "settings": {"TWILIO_API_BASE_URL": url}}, then serves until SIGTERM/SIGINT.
Used by bench/twilio_backfill.py so that the fake's memory and CPU are not the syncing
process's.

The synthetic account has one incoming number. Messages are spread evenly over the last
``--days`` days (inside TWILIO_INITIAL_DAYS), two thirds inbound (To = our number) and one
third outbound (From = our number), with ``--contacts`` distinct US counterparties; every
``--mms-every``-th message is an MMS with one small image (0: none).

Listing here is indexed: FakeTwilio._messages filters, sorts and serializes the whole store on
every page, which is fine for tests of a few messages but O(store) per page, i.e. quadratic
over a 50,000-message backfill; IndexedFakeTwilio answers the same filters from a cached,
sorted selection and serializes only the page it returns (same records, same paging).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from tests.fakes.twilio import FakeAccount, FakeMessage, FakeTwilio, _filter_date, twilio_error

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4"
       b"\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")
WORDS = ("hi", "thanks", "see", "you", "at", "three", "the", "invoice", "is", "ready", "call", "me", "when",
         "free", "ok", "great", "running", "late", "tomorrow", "works", "for", "us", "please", "confirm")


class _Records(Sequence):
    """The records of a selection, serialized only when sliced (FakeTwilio._page slices one page)."""

    def __init__(self, messages: list[FakeMessage], base: str) -> None:
        self._messages, self._base = messages, base

    def __len__(self) -> int:
        return len(self._messages)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [m.record(self._base) for m in self._messages[index]]
        return self._messages[index].record(self._base)


class IndexedFakeTwilio(FakeTwilio):
    """FakeTwilio whose Messages listing costs one page, not the whole store (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._selections: dict[tuple, list[FakeMessage]] = {}
        self._selection_lock = threading.Lock()

    def _messages(self, account: FakeAccount, path: str, params: dict[str, str]) -> Any:
        try:
            after = _filter_date(params.get("DateSent>"), end=False)
            before = _filter_date(params.get("DateSent<"), end=True)
        except ValueError:
            return twilio_error(400, 20001, "Invalid DateSent")
        on = params.get("DateSent")
        # The store is filled once before serving: a selection, once made, stays right.
        key = (account.sid, len(account.messages), params.get("To"), params.get("From"), after, before, on)
        with self._selection_lock:
            selected = self._selections.get(key)
            if selected is None:
                selected = self._select(account, params, after, before, on)
                self._selections[key] = selected
        return self._page(path, params, "messages", _Records(selected, self.base_url))

    @staticmethod
    def _select(account: FakeAccount, params: dict[str, str], after: dt.datetime | None,
                before: dt.datetime | None, on: str | None) -> list[FakeMessage]:
        selected = []
        for message in list(account.messages.values()):
            if "To" in params and params["To"] not in message.to.split(","):
                continue
            if "From" in params and params["From"] != message.from_:
                continue
            when = message.sent_at
            if when is None and (after or before or on):
                continue
            if after is not None and when < after or before is not None and when > before:
                continue
            if on and when.date().isoformat() != on[:10]:
                continue
            selected.append(message)
        selected.sort(key=lambda m: (m.sent_at or dt.datetime.max.replace(tzinfo=dt.UTC), m.sid), reverse=True)
        return selected


def fill_synthetic(fake: FakeTwilio, account: FakeAccount, count: int, *, number: str, days: int, contacts: int,
                   mms_every: int, seed: int) -> None:
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    span = dt.timedelta(days=days).total_seconds()
    for index in range(count):
        other = f"+1415{200 + (index % contacts) // 10000:03d}{(index % contacts) % 10000:04d}"
        inbound = index % 3 != 2
        sent_at = now - dt.timedelta(seconds=int(span * (count - index) / max(1, count)) + 60)
        body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 25)))
        media = [("image/png", PNG)] if mms_every and index % mms_every == mms_every - 1 else []
        fake.add_message(account, from_=other if inbound else number, to=number if inbound else other,
                         body=body, direction="inbound" if inbound else "outbound-api",
                         status="received" if inbound else "delivered", sent_at=sent_at, media=media)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", type=int, default=0, help="number of synthetic messages")
    parser.add_argument("--number", default="+15005550006", help="the account's incoming number")
    parser.add_argument("--days", type=int, default=89)
    parser.add_argument("--contacts", type=int, default=2000)
    parser.add_argument("--mms-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    fake = IndexedFakeTwilio(args.host, args.port)
    account = fake.add_account([args.number])
    fill_synthetic(fake, account, args.synthetic, number=args.number, days=args.days,
                   contacts=max(1, args.contacts), mms_every=args.mms_every, seed=args.seed)
    fake.requests = _Discard()  # a long run must not grow the request log
    fake.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(json.dumps({"url": fake.base_url, "account_sid": account.sid, "auth_token": account.auth_token,
                      "number": args.number, "messages": len(account.messages),
                      "settings": fake.settings()}), flush=True)
    stop.wait()
    fake.stop()
    sys.exit(0)


class _Discard(list):
    def append(self, item: Any) -> None:
        pass


if __name__ == "__main__":
    main()
