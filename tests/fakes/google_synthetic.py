"""Deterministic synthetic RFC 5322 mail for filling a fake mailbox lazily (benchmarks)."""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime

_WORDS = ["invoice", "meeting", "project", "update", "quarterly", "review", "budget", "contract", "proposal", "schedule", "follow", "delivery", "shipment", "report", "agenda", "feedback", "customer", "renewal", "pricing", "support", "ticket", "release"]


_LINE_BYTES = 57  # input bytes per 76-column base64 line


@dataclass(frozen=True)
class _Blob:
    """An attachment body: `size` deterministic bytes, base64 in 76-column CRLF lines."""

    size: int
    seed: int

    @property
    def encoded_len(self) -> int:
        b64 = 4 * math.ceil(self.size / 3)
        return b64 + 2 * math.ceil(b64 / 76)

    def render(self) -> bytes:
        """Same bytes as base64-encoding `size` repetitions of the block, but built by repeating the
        block's encoding: a block of whole 57-byte lines encodes to whole 76-column lines."""
        block = (hashlib.sha256(str(self.seed).encode()).digest() * 4)[:_LINE_BYTES] * 72
        whole, rest = divmod(self.size, len(block))
        encoded = base64.encodebytes(block).replace(b"\n", b"\r\n")
        tail = base64.encodebytes(block[:rest]).replace(b"\n", b"\r\n") if rest else b""
        return encoded * whole + tail


@dataclass(frozen=True)
class Synthetic:
    size: int
    make: Callable[[], bytes]
    labels: tuple[str, ...]
    internal_date: datetime
    thread_group: int
    first_in_thread: bool
    pieces: tuple[bytes | _Blob, ...]


def synthetic_message(i: int, *, owner: str, total: int, now: datetime, big_every: int = 0,
                      big_bytes: int = 0) -> Synthetic:
    """Message i of `total`, spread over the 80 days before `now`; threads of three; every tenth
    one sent by the owner; some with a small attachment, every `big_every`-th with a big one."""
    span = timedelta(days=80).total_seconds()
    jitter = int(hashlib.md5(str(i).encode()).hexdigest()[:4], 16) % 600
    when = now - timedelta(seconds=span - (i + 0.5) * span / max(total, 1) + jitter)
    when = when.replace(microsecond=0)
    group, position = divmod(i, 3)
    s = (group * 7919) % 400
    sender = f'"Sender {s}" <sender{s}@domain{s % 37}.example>'
    me = f"<{owner}>"
    outgoing = i % 10 == 9
    frm, to = (me, sender) if outgoing else (sender, me)
    labels = ("SENT",) if outgoing else ("INBOX",) + (("UNREAD",) if i % 4 == 0 else ()) + (
        ("CATEGORY_UPDATES",) if i % 5 == 0 else ()) + (("IMPORTANT",) if i % 11 == 0 else ())
    subject = ("Re: " if position else "") + f"Synthetic thread {group} about {_WORDS[group % len(_WORDS)]}"
    headers = [
        f"From: {frm}", f"To: {to}", f"Subject: {subject}", f"Date: {format_datetime(when)}",
        f"Message-ID: <synthetic-{i}@bench.example>", "MIME-Version: 1.0",
    ]
    if position:
        refs = " ".join(f"<synthetic-{group * 3 + k}@bench.example>" for k in range(position))
        headers += [f"In-Reply-To: <synthetic-{i - 1}@bench.example>", f"References: {refs}"]
    words = " ".join(_WORDS[(i * 3 + k) % len(_WORDS)] for k in range(40))
    text = f"Hello,\r\n\r\nThis is synthetic message {i}: {words}.\r\n\r\nRegards,\r\nSender {s}\r\n"
    attachments: list[tuple[str, str, _Blob]] = []
    if i % 20 == 7:
        attachments.append(("text/csv", f"report-{i}.csv", _Blob(2048 + i % 512, i)))
    if big_every and big_bytes and i % big_every == big_every - 1:
        attachments.append(("application/octet-stream", f"archive-{i}.bin", _Blob(big_bytes, -i)))
    pieces: list[bytes | _Blob]
    if not attachments:
        headers.append('Content-Type: text/plain; charset="utf-8"')
        pieces = [("\r\n".join(headers) + "\r\n\r\n" + text).encode()]
    else:
        boundary = f"==synthetic-{i}=="
        headers.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        head = "\r\n".join(headers) + f"\r\n\r\n--{boundary}\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n\r\n{text}"
        pieces = [head.encode()]
        for ctype, name, blob in attachments:
            pieces.append((f"\r\n--{boundary}\r\nContent-Type: {ctype}; name=\"{name}\"\r\n"
                           f"Content-Disposition: attachment; filename=\"{name}\"\r\n"
                           "Content-Transfer-Encoding: base64\r\n\r\n").encode())
            pieces.append(blob)
        pieces.append(f"\r\n--{boundary}--\r\n".encode())
    size = sum(p.encoded_len if isinstance(p, _Blob) else len(p) for p in pieces)

    def make() -> bytes:
        # Rebuilt from the arguments, so a filled mailbox holds no message text at all.
        again = synthetic_message(i, owner=owner, total=total, now=now, big_every=big_every, big_bytes=big_bytes)
        return b"".join(p.render() if isinstance(p, _Blob) else p for p in again.pieces)

    return Synthetic(size, make, labels, when, group, position == 0, tuple(pieces))
