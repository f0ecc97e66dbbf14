"""Streaming, resumable mbox import (a Google Takeout export is an mbox)."""
from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

import integrations.quarantine as quarantine_module
from conversations.models import Communication, Conversation
from integrations.models import ProviderAccount, SyncRun
from integrations.providers.mbox import MboxProvider, iter_mbox
from integrations.sync import sync_account

pytestmark = pytest.mark.django_db


def _message(number: int, *, thread: str = "", labels: str = "", body: str = "") -> bytes:
    headers = [
        f"From: Carol <carol{number % 3}@acme.com>",
        "To: alice@example.org",
        f"Subject: Message {number}",
        f"Date: Mon, 2 Nov 2026 10:{number % 60:02d}:00 +0000",
        f"Message-ID: <m{number}@acme.com>",
    ]
    if thread:
        headers.append(f"X-GM-THRID: {thread}")
    if labels:
        headers.append(f"X-Gmail-Labels: {labels}")
    return ("\n".join(headers) + "\n\n" + (body or f"Body {number}\n")).encode()


def write_mbox(path: Path, messages: list[bytes]) -> Path:
    with open(path, "wb") as handle:
        for raw in messages:
            handle.write(b"From 1234567890@xxx Mon Nov  2 10:00:00 2026\n")
            escaped = b"\n".join(b">" + line if line.startswith(b"From ") or line.startswith(b">From ") else line
                                 for line in raw.split(b"\n"))
            handle.write(escaped.rstrip(b"\n") + b"\n\n")
    return age(path)


def age(path: Path, seconds: float = 60) -> Path:
    """Dates ``path`` back: a file written and left alone, whose last message counts as complete."""
    past = time.time() - seconds
    os.utime(path, (past, past))
    return path


def test_iter_mbox_splits_and_unquotes(tmp_path):
    body = "First line\nFrom here on it is quoted\n>From already quoted\n"
    path = write_mbox(tmp_path / "a.mbox", [_message(1, body=body), _message(2)])
    messages = list(iter_mbox(path))
    assert len(messages) == 2
    assert b"\nFrom here on it is quoted\n>From already quoted\n" in messages[0].raw
    assert messages[0].raw.endswith(b">From already quoted\n")
    assert messages[1].start == messages[0].end
    assert messages[1].end == path.stat().st_size
    assert [m.raw for m in iter_mbox(path, messages[1].start)] == [messages[1].raw]


def test_empty_file_yields_nothing(tmp_path):
    path = tmp_path / "empty.mbox"
    path.write_bytes(b"")
    assert list(iter_mbox(path)) == []


@pytest.fixture
def import_mbox(monkeypatch):
    """Imports ``path`` into ``account`` through the sync engine, ``batch_size`` messages a page."""

    def run(account, path, batch_size=500):
        monkeypatch.setattr(MboxProvider, "page_size", batch_size)
        ProviderAccount.objects.filter(pk=account.pk).update(config={"path": str(Path(path).resolve())})
        sync_account(account.pk)
        return SyncRun.objects.filter(account=account).latest("started_at")

    return run


def test_import_stores_everything_with_takeout_labels_and_threads(account, tmp_path, import_mbox):
    messages = [_message(i, thread="1780000000000001" if i < 3 else "", labels="Inbox,Important")
                for i in range(10)]
    path = write_mbox(tmp_path / "takeout.mbox", messages)
    run = import_mbox(account, path, batch_size=4)
    assert (run.status, run.kind, run.fetched, run.created) == ("succeeded", "initial", 10, 10)
    assert Communication.objects.filter(account=account).count() == 10
    assert Communication.objects.get(rfc_message_id="m5@acme.com").labels == ["Inbox", "Important"]
    threaded = Communication.objects.filter(provider_thread_id="1780000000000001")
    assert threaded.count() == 3 and len({c.conversation_id for c in threaded}) == 1
    assert Conversation.objects.count() == 8
    account.refresh_from_db()
    assert account.sync_cursor["offset"] == path.stat().st_size
    assert account.sync_cursor["file"] == {"path": str(path.resolve()), "device": path.stat().st_dev,
                                           "inode": path.stat().st_ino}
    assert account.backfill_state is None


def test_reimport_creates_nothing(account, tmp_path, import_mbox):
    path = write_mbox(tmp_path / "a.mbox", [_message(i) for i in range(5)])
    import_mbox(account, path)
    ProviderAccount.objects.filter(pk=account.pk).update(sync_cursor={})
    run = import_mbox(account, path)
    assert (run.created, run.skipped) == (0, 5)
    assert Communication.objects.count() == 5


def test_appended_mail_is_picked_up_by_the_next_delta(account, tmp_path, import_mbox):
    path = write_mbox(tmp_path / "a.mbox", [_message(i) for i in range(3)])
    import_mbox(account, path)
    with open(path, "ab") as handle:
        handle.write(b"From x Mon Nov  2 10:00:00 2026\n" + _message(99) + b"\n")
    age(path)
    run = import_mbox(account, path)
    assert (run.kind, run.fetched, run.created) == ("delta", 1, 1)
    assert Communication.objects.count() == 4


def test_interrupted_import_resumes_where_it_stopped(account, tmp_path, monkeypatch, import_mbox):
    path = write_mbox(tmp_path / "a.mbox", [_message(i) for i in range(10)])
    real_store = quarantine_module.store_batch
    calls = {"n": 0}

    def crash_on_third_batch(acc, batch, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_store(acc, batch, **kwargs)

    monkeypatch.setattr(quarantine_module, "store_batch", crash_on_third_batch)
    with pytest.raises(KeyboardInterrupt):
        import_mbox(account, path, batch_size=3)
    assert Communication.objects.count() == 6
    failed = SyncRun.objects.get()
    assert failed.status == "failed" and "KeyboardInterrupt" in failed.error
    account.refresh_from_db()
    assert account.claim_token == "" and account.backfill_state["page_token"]["offset"] > 0

    monkeypatch.setattr(quarantine_module, "store_batch", real_store)
    run = import_mbox(account, path, batch_size=3)
    assert (run.fetched, run.created, run.skipped) == (4, 4, 0)
    assert Communication.objects.count() == 10


def test_command_with_owner_creates_one_account_per_file(user, tmp_path):
    path = write_mbox(tmp_path / "export.mbox", [_message(i) for i in range(3)])
    first, second = io.StringIO(), io.StringIO()
    call_command("import_mbox", str(path), "--owner", "alice", stdout=first, stderr=io.StringIO())
    call_command("import_mbox", str(path), "--owner", "alice", stdout=second, stderr=io.StringIO())
    account = ProviderAccount.objects.get()
    assert (account.provider, account.owner, account.config["path"]) == ("mbox", user, str(path.resolve()))
    assert "Created mbox account" in first.getvalue() and "3 fetched, 3 created" in first.getvalue()
    assert "0 fetched, 0 created" in second.getvalue()
    assert Communication.objects.count() == 3


def test_command_into_existing_account(account, tmp_path):
    path = write_mbox(tmp_path / "a.mbox", [_message(1)])
    call_command("import_mbox", str(path), "--account", str(account.pk), stdout=io.StringIO(), stderr=io.StringIO())
    assert account.communications.count() == 1


def test_command_reports_a_failed_import(user, tmp_path, monkeypatch):
    path = write_mbox(tmp_path / "a.mbox", [_message(1)])

    def broken(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(MboxProvider, "fetch_initial", broken)
    with pytest.raises(CommandError, match="did not complete: Internal error \\(OSError\\)"):
        call_command("import_mbox", str(path), "--owner", "alice", stdout=io.StringIO(), stderr=io.StringIO())


@pytest.mark.parametrize("args,error", [
    (["--owner", "nobody"], "No user named 'nobody'"),
    (["--account", "999999"], "No account with id 999999"),
])
def test_command_errors_are_clear(user, tmp_path, args, error):
    path = write_mbox(tmp_path / "a.mbox", [_message(1)])
    with pytest.raises(CommandError, match=error):
        call_command("import_mbox", str(path), *args, stdout=io.StringIO(), stderr=io.StringIO())


def test_command_missing_file(user, tmp_path):
    with pytest.raises(CommandError, match="No such file"):
        call_command("import_mbox", str(tmp_path / "missing.mbox"), "--owner", "alice")


def test_memory_stays_bounded_on_a_large_file(account, tmp_path):
    """Reading must stream: the reader holds one message, not the file."""
    import tracemalloc

    big_body = "x" * 2000 + "\n"
    path = write_mbox(tmp_path / "big.mbox", [_message(i, body=big_body * 5) for i in range(3000)])
    assert path.stat().st_size > 25_000_000
    tracemalloc.start()
    count = sum(1 for _ in iter_mbox(path))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == 3000
    assert peak < 2_000_000, peak
