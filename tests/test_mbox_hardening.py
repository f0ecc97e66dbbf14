"""Mbox hardening: no message can stop a mailbox or exhaust a worker.

Memory bounded by settings (pages by bytes, huge messages headers-only, lines read in
pieces); a half-written last message is left for the next sync; positions belong to one
file; only files under MBOX_IMPORT_DIR are read.
"""
from __future__ import annotations

import base64
import io
import os
import random
import re
import tracemalloc
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from conversations.models import Communication
from integrations.models import ProviderAccount, SyncRun
from integrations.providers import mbox as mbox_module
from integrations.providers.base import BackfillWindow, PermanentError
from integrations.providers.mbox import MboxProvider, iter_mbox
from integrations.sync import sync_account
from tests.test_mbox_import import _message, age, write_mbox

pytestmark = pytest.mark.django_db

SEPARATOR = b"From 1234567890@xxx Mon Nov  2 10:00:00 2026\n"


def _attachment_message(number: int, size: int) -> bytes:
    """A message of about ``size`` bytes: a short text body and a base64 attachment."""
    data = base64.encodebytes(random.Random(number).randbytes(size * 3 // 4))
    return (
        f"From: Carol <carol@acme.com>\nTo: alice@example.org\nSubject: Big {number}\n"
        f"Date: Mon, 2 Nov 2026 10:00:00 +0000\nMessage-ID: <big{number}@acme.com>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nSee attached.\n'
        '--b\nContent-Type: application/octet-stream; name="data.bin"\nContent-Transfer-Encoding: base64\n\n'
    ).encode() + data + b"--b--\n"


def _sync(account: ProviderAccount, path: Path | str, **kwargs) -> SyncRun:
    ProviderAccount.objects.filter(pk=account.pk).update(config={"path": str(path)})
    sync_account(account.pk, **kwargs)
    return SyncRun.objects.filter(account=account).latest("pk")


def _provider(account: ProviderAccount, path: Path) -> MboxProvider:
    ProviderAccount.objects.filter(pk=account.pk).update(config={"path": str(path)})
    account.refresh_from_db()
    return MboxProvider(account)


def _traced_peak(function) -> int:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --- 1. memory bounded by settings, not by the largest message ------------------------------

def test_pages_are_bounded_by_bytes_as_well_as_count(account, tmp_path, settings):
    settings.PAGE_MAX_BYTES = 250_000
    path = write_mbox(tmp_path / "a.mbox", [_attachment_message(i, 100_000) for i in range(10)])
    provider = _provider(account, path)
    token, pages = None, []
    while True:
        batch = provider.fetch_initial(BackfillWindow(), token)
        pages.append([m.raw_size for m in batch.messages])
        if (token := batch.next_page_token) is None:
            break
    assert sum(len(page) for page in pages) == 10
    assert all(sum(page) <= 250_000 for page in pages), pages
    assert len(pages) == 5  # two 100 KB messages a page: a third would not fit

    run = _sync(account, path)
    assert (run.status, run.created) == ("succeeded", 10)


def test_a_message_bigger_than_a_page_has_a_page_to_itself(account, tmp_path, settings):
    settings.PAGE_MAX_BYTES = 50_000
    path = write_mbox(tmp_path / "a.mbox", [_message(1), _attachment_message(2, 120_000), _message(3)])
    run = _sync(account, path)
    assert (run.status, run.created, run.api_calls) == ("succeeded", 3, 3)
    big = Communication.objects.get(rfc_message_id="big2@acme.com")
    assert big.attachments.get().size == 120_000 * 3 // 4 and big.parse_warnings == []


def test_a_message_over_the_limit_is_stored_headers_only(account, tmp_path, settings):
    settings.MESSAGE_MAX_BYTES = 100_000
    path = write_mbox(tmp_path / "a.mbox", [_message(1), _attachment_message(2, 400_000), _message(3)])
    raw_size = len(_attachment_message(2, 400_000))
    run = _sync(account, path)
    assert (run.status, run.created) == ("succeeded", 3)
    big = Communication.objects.get(rfc_message_id="big2@acme.com")
    assert (big.subject, big.body_text, big.raw_size) == ("Big 2", "", raw_size)
    assert not big.attachments.exists()
    assert any("over MESSAGE_MAX_BYTES" in w and "headers only" in w for w in big.parse_warnings)
    assert Communication.objects.get(rfc_message_id="m3@acme.com").body_text.strip() == "Body 3"


def test_a_message_over_the_limit_is_never_held_whole(tmp_path, settings):
    settings.MESSAGE_MAX_BYTES = 1_000_000
    body = (b"y" * 999 + b"\n") * 30_000
    path = tmp_path / "huge.mbox"
    path.write_bytes(SEPARATOR + _message(1, body="x\n")[:-3] + b"\n" + body + b"\n" + SEPARATOR + _message(2))
    messages: list = []
    peak = _traced_peak(lambda: messages.extend(iter_mbox(path)))
    assert [m.whole for m in messages] == [False, True]
    huge = messages[0]
    assert huge.size == len(_message(1, body="x\n")[:-3]) + 1 + len(body)
    assert huge.raw.startswith(b"From: Carol") and huge.raw.endswith(b"Message-ID: <m1@acme.com>\n")
    assert peak < 3_000_000, peak


def test_a_file_without_newlines_is_read_in_bounded_pieces(tmp_path, settings):
    settings.MESSAGE_MAX_BYTES = 1_000_000
    path = tmp_path / "line.mbox"
    with open(path, "wb") as handle:
        handle.write(SEPARATOR + b"Subject: one line\n\n")
        for _ in range(30):
            handle.write(b"z" * 1_000_000)
    messages: list = []
    peak = _traced_peak(lambda: messages.extend(iter_mbox(path)))
    assert [(m.whole, m.size, m.followed, m.ends_line) for m in messages] == [(False, 30_000_019, False, False)]
    assert messages[0].raw == b"Subject: one line\n"
    assert peak < 3_000_000, peak


def _reference_split(data: bytes) -> list[tuple[int, int, bytes]]:
    """The mbox rules applied line by line to the whole file in memory: what iter_mbox must find."""
    found, lines, position, start = [], [], 0, None
    previous_blank = True

    def finish() -> None:
        if lines and lines[-1] in (b"\n", b"\r\n"):
            lines.pop()
        found.append((start, position, b"".join(lines)))

    for line in re.findall(rb"[^\n]*\n|[^\n]+", data):
        if line.startswith(b"From ") and previous_blank:
            if start is not None:
                finish()
            lines, start = [], position
        elif start is not None:
            stripped = line.lstrip(b">")
            lines.append(line[1:] if line.startswith(b">") and stripped.startswith(b"From ") else line)
        previous_blank = line in (b"\n", b"\r\n")
        position += len(line)
    if start is not None:
        finish()
    return found


def _tricky_mbox(seed: int) -> bytes:
    """Lines built to straddle piece boundaries: long ">" runs, "From " cut in two, long separators."""
    rng = random.Random(seed)
    choices = [
        lambda: b"From here on it is text\n",
        lambda: b">" * rng.randint(1, 40) + b"From quoted\n",
        lambda: b">" * rng.randint(1, 40) + b"Fr" + b"iday\n",
        lambda: b">" * rng.randint(1, 40) + b"\n",
        lambda: b">" * rng.randint(1, 40),  # and no newline: the next line continues it
        lambda: b"x" * rng.randint(0, 40) + b">From mid-line\n",
        lambda: b"x" * rng.randint(0, 40) + b"From mid-line\n",
        lambda: b"\n",
        lambda: b"\r\n",
        lambda: b"\n" + b"x" * rng.randint(10, 40) + b"From after a blank, mid-line\n",
        lambda: b"text with crlf\r\n",
        lambda: b"w" * rng.randint(1, 100) + b"\n",
    ]
    out = b""
    for number in range(12):
        separator = b"From sender@example.org " + b"x" * rng.randint(0, 60) + b"\n"
        out += separator + f"Subject: {number}\n\n".encode()
        out += b"".join(rng.choice(choices)() for _ in range(rng.randint(0, 30))) + b"\n\n"
    return out


@pytest.mark.parametrize("piece_bytes,block_bytes", [(16, 7), (17, 50), (23, 1024), (64, 13), (65536, 262144)])
@pytest.mark.parametrize("seed", range(5))
def test_unquoting_and_separators_survive_piece_boundaries(tmp_path, monkeypatch, piece_bytes, block_bytes, seed):
    monkeypatch.setattr(mbox_module, "PIECE_BYTES", piece_bytes)
    monkeypatch.setattr(mbox_module, "BLOCK_BYTES", block_bytes)
    data = _tricky_mbox(seed)
    path = tmp_path / "tricky.mbox"
    path.write_bytes(data)
    expected = _reference_split(data)
    assert len(expected) >= 12  # more when a "From " line follows a blank one: a separator, as in any mbox
    assert [(m.start, m.end, m.raw) for m in iter_mbox(path)] == expected
    resumed = [(m.start, m.end, m.raw) for m in iter_mbox(path, expected[5][0])]
    assert resumed == expected[5:]


def test_engine_memory_is_bounded_by_the_page_not_the_file(account, tmp_path, settings):
    """Twenty 1 MB messages: pages of 1 MB hold one each, so the engine never holds the lot."""
    settings.PAGE_MAX_BYTES = 1_000_000
    path = write_mbox(tmp_path / "a.mbox", [_attachment_message(i, 1_000_000) for i in range(20)])
    ProviderAccount.objects.filter(pk=account.pk).update(config={"path": str(path)})
    outcome = []
    peak = _traced_peak(lambda: outcome.append(sync_account(account.pk)))
    assert outcome[0].status == "succeeded" and Communication.objects.count() == 20
    assert peak < 15_000_000, peak


# --- 2. a half-written last message is never stored truncated -------------------------------

def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def test_a_half_written_last_message_waits_for_the_next_sync(account, tmp_path):
    path = write_mbox(tmp_path / "live.mbox", [_message(1), _message(2)])
    tail_start = path.stat().st_size
    whole = _message(3, body="first half\nsecond half\n")
    cut = whole.index(b"second")
    _append(path, SEPARATOR + whole[:cut])  # the writer is midway: the file was modified just now
    run = _sync(account, path)
    assert (run.status, run.created) == ("succeeded", 2)
    account.refresh_from_db()
    assert account.sync_cursor["offset"] == tail_start
    assert _sync(account, path).created == 0  # still being written: still left alone

    _append(path, whole[cut:] + b"\n")
    age(path)
    run = _sync(account, path)
    assert (run.kind, run.created) == ("delta", 1)
    assert Communication.objects.get(rfc_message_id="m3@acme.com").body_text.strip() == "first half\nsecond half"


def test_a_last_message_cut_mid_line_is_not_complete_however_old(account, tmp_path):
    path = write_mbox(tmp_path / "cut.mbox", [_message(1)])
    whole = _message(2, body="a body that ends here\n")
    _append(path, SEPARATOR + whole[:-9])
    age(path)
    assert _sync(account, path).created == 1
    _append(path, whole[-9:])
    age(path)
    assert _sync(account, path).created == 1
    assert Communication.objects.get(rfc_message_id="m2@acme.com").body_text.strip() == "a body that ends here"


def test_a_backfill_stops_before_a_half_written_message(account, tmp_path, monkeypatch):
    monkeypatch.setattr(MboxProvider, "page_size", 1)
    path = write_mbox(tmp_path / "live.mbox", [_message(i) for i in range(3)])
    tail_start = path.stat().st_size
    _append(path, SEPARATOR + _message(3)[:40])
    run = _sync(account, path)
    account.refresh_from_db()
    assert (run.kind, run.created, account.backfill_state) == ("initial", 3, None)
    assert account.sync_cursor["offset"] == tail_start


def test_import_mbox_waits_for_a_fresh_file_and_imports_its_last_message(user, tmp_path, monkeypatch):
    monkeypatch.setattr(MboxProvider, "settle_seconds", 0.5)
    path = write_mbox(tmp_path / "fresh.mbox", [_message(i) for i in range(3)])
    os.utime(path)  # just written
    out = io.StringIO()
    call_command("import_mbox", str(path), "--owner", "alice", stdout=out, stderr=io.StringIO())
    assert "waiting for it to be complete" in out.getvalue() and "3 created" in out.getvalue()
    assert Communication.objects.count() == 3


# --- 3. a position belongs to one file ------------------------------------------------------

def test_switching_the_file_while_it_syncs_reads_the_new_one_from_its_start(account, tmp_path, monkeypatch):
    monkeypatch.setattr(MboxProvider, "page_size", 2)
    first = write_mbox(tmp_path / "first.mbox", [_message(i) for i in range(5)])
    second = write_mbox(tmp_path / "second.mbox", [_message(i) for i in range(100, 110)])
    calls = []

    def switch_then_crash(done: int, total: int | None) -> None:
        calls.append(done)
        if len(calls) == 1:  # what import_mbox --account does while this sync runs
            ProviderAccount.objects.filter(pk=account.pk).update(
                config={"path": str(second)}, sync_cursor={}, backfill_state=None)
        elif len(calls) == 2:
            raise KeyboardInterrupt

    ProviderAccount.objects.filter(pk=account.pk).update(config={"path": str(first)})
    with pytest.raises(KeyboardInterrupt):
        sync_account(account.pk, progress=switch_then_crash)
    account.refresh_from_db()
    assert account.config["path"] == str(second) and account.backfill_state["page_token"]["offset"] > 0

    outcome = sync_account(account.pk)  # the page token is in first.mbox: second.mbox is read from its start
    assert outcome.status == "succeeded", outcome
    assert SyncRun.objects.filter(account=account).latest("pk").kind == "full_resync"
    assert Communication.objects.filter(rfc_message_id__startswith="m10").count() == 10


def test_a_cursor_in_another_file_runs_one_full_resync(account, tmp_path):
    first = write_mbox(tmp_path / "first.mbox", [_message(i) for i in range(3)])
    second = write_mbox(tmp_path / "second.mbox", [_message(i) for i in range(100, 110)])
    _sync(account, first)
    run = _sync(account, second)  # the account's cursor is first.mbox's
    assert (run.status, run.kind, run.created) == ("succeeded", "full_resync", 10)
    assert _sync(account, second).kind == "delta"


def test_a_file_rewritten_in_place_is_read_again_from_its_start(account, tmp_path):
    path = write_mbox(tmp_path / "export.mbox", [_message(i) for i in range(3)])
    inode = path.stat().st_ino
    _sync(account, path)
    write_mbox(path, [_message(i) for i in range(100, 110)])  # the export redone: same file, longer
    assert path.stat().st_ino == inode
    run = _sync(account, path)
    assert (run.kind, run.created) == ("full_resync", 10)
    assert Communication.objects.count() == 13


# --- 4. only files under MBOX_IMPORT_DIR ----------------------------------------------------

@pytest.fixture
def import_dir(settings, tmp_path: Path) -> Path:
    directory = tmp_path / "imports"
    directory.mkdir()
    settings.MBOX_IMPORT_DIR = directory
    return directory


@pytest.mark.parametrize("how", ["absolute", "symlink", "relative", "missing"])
def test_a_file_outside_the_import_dir_is_refused_unread(account, tmp_path, import_dir, how):
    outside = write_mbox(tmp_path / "secret.mbox", [_message(1)])
    (import_dir / "link.mbox").symlink_to(outside)
    path = {"absolute": str(outside), "symlink": str(import_dir / "link.mbox"), "relative": "../secret.mbox",
            "missing": str(tmp_path / "nothing-here")}[how]
    run = _sync(account, path)
    account.refresh_from_db()
    assert run.status == "failed" and run.api_calls == 0
    assert "outside" in account.last_error and "MBOX_IMPORT_DIR" in account.last_error
    assert "import_mbox --copy" in account.last_error
    assert account.status == "error" and account.next_sync_at is None
    assert not Communication.objects.exists()


def test_files_inside_the_import_dir_are_read_also_through_symlinks_and_relative_paths(account, import_dir):
    write_mbox(import_dir / "export.mbox", [_message(1), _message(2)])
    (import_dir / "latest.mbox").symlink_to("export.mbox")
    assert _sync(account, "latest.mbox").created == 2


def test_a_symlink_swapped_in_after_authenticate_is_not_read(account, tmp_path, import_dir):
    path = write_mbox(import_dir / "export.mbox", [_message(1)])
    outside = write_mbox(tmp_path / "secret.mbox", [_message(2)])
    provider = _provider(account, path)
    provider.authenticate()
    path.unlink()
    path.symlink_to(outside)
    with pytest.raises(PermanentError, match="outside"):
        provider.fetch_initial(BackfillWindow(), None)


@pytest.mark.parametrize("symlink", [False, True])
def test_import_mbox_refuses_a_file_outside_and_points_to_copy(user, tmp_path, import_dir, symlink):
    path = write_mbox(tmp_path / "secret.mbox", [_message(1)])
    if symlink:
        (import_dir / "link.mbox").symlink_to(path)
        path = import_dir / "link.mbox"
    with pytest.raises(CommandError, match="outside MBOX_IMPORT_DIR .* --copy"):
        call_command("import_mbox", str(path), "--owner", "alice", stdout=io.StringIO(), stderr=io.StringIO())
    assert not ProviderAccount.objects.exists() and not Communication.objects.exists()


def test_import_mbox_copy_imports_a_copy_and_reuses_it(user, tmp_path, import_dir):
    source = write_mbox(tmp_path / "takeout.mbox", [_message(i) for i in range(3)])
    out = io.StringIO()
    call_command("import_mbox", str(source), "--owner", "alice", "--copy", stdout=out, stderr=io.StringIO())
    copy = import_dir / "takeout.mbox"
    assert copy.read_bytes() == source.read_bytes() and "3 created" in out.getvalue()
    account = ProviderAccount.objects.get()
    assert account.config["path"] == str(copy)
    assert not [p for p in import_dir.iterdir() if p != copy]  # no temporary file left behind

    out = io.StringIO()
    call_command("import_mbox", str(source), "--owner", "alice", "--copy", stdout=out, stderr=io.StringIO())
    assert "a copy of" in out.getvalue() and "0 created" in out.getvalue()

    _append(source, SEPARATOR + _message(3) + b"\n")
    age(source, 30)
    call_command("import_mbox", str(source), "--owner", "alice", "--copy", stdout=io.StringIO(),
                 stderr=io.StringIO())
    assert ProviderAccount.objects.count() == 1 and Communication.objects.count() == 4
    assert SyncRun.objects.latest("pk").created == 1


def test_import_mbox_copy_never_replaces_another_accounts_file(user, other_account, tmp_path, import_dir):
    theirs = write_mbox(import_dir / "export.mbox", [_message(50)])
    ProviderAccount.objects.filter(pk=other_account.pk).update(config={"path": str(theirs)})
    before = theirs.read_bytes()
    source = write_mbox(tmp_path / "export.mbox", [_message(1), _message(2)])
    with pytest.raises(CommandError, match="another account's mbox file"):
        call_command("import_mbox", str(source), "--owner", "alice", "--copy", stdout=io.StringIO(),
                     stderr=io.StringIO())
    assert theirs.read_bytes() == before
