#!/usr/bin/env python
"""Mbox import memory benchmark: peak RSS and throughput of sync_account on an mbox of big messages.

    .venv/bin/python bench/mbox_memory.py [--count 200] [--size-mb 20] [--database-url postgres://...]
                                          [--seed 1] [--breakdown]

The parent generates an mbox of --count messages of --size-mb MB each, shaped like real
mail with a big attachment: a short text body and a base64 attachment (distinct content
per message, so every attachment is stored), in MBOX_IMPORT_DIR = <temp dir>/imports. The
file is dated back a minute: a finished export, whose last message counts as complete.
Generation is not measured. The free disk space is checked first (the file, plus the
decoded attachments the import stores, plus a margin).

The import is measured in a child process of this script (its peak RSS is the import's
alone), on a throwaway database set up by bench/ingest.py's helpers: SQLite in a temp
file by default; with --database-url (a PostgreSQL server URL to connect to for
CREATE/DROP DATABASE) a fresh ``crmext_bench_mbox`` database there, dropped before and
after. MEDIA_ROOT is a temp dir; DEBUG is off; the project's settings are the reference
(PAGE_MAX_BYTES, MESSAGE_MAX_BYTES, ATTACHMENT_MAX_BYTES as configured). In the child,
after migrate and creating a user + mbox account: one sync_account(account.pk), timed end
to end (read + parse + store), while a thread samples the process's RSS every 20 ms.

Printed: peak RSS (ru_maxrss of the child, and the sampled peak during the import over
the RSS before it), throughput (MB/s of mbox, messages/s), pages (SyncRun.api_calls) and
created count. --breakdown then also traces (tracemalloc) reading and parsing the first
message alone: what the reader holds, parse_message's peak over it, and what the parsed
message keeps; it runs after the import, so the import's figures are unaffected. It
asserts nothing; the target is peak RSS < 400 MB.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == BENCH_DIR:
    sys.path[0] = str(REPO_ROOT)  # run as a script: import from the repo root, not bench/
elif str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import bench.ingest as ingest_bench  # noqa: E402  (after the sys.path fix above)
from bench.ingest import (  # noqa: E402
    _load,
    _machine,
    _peak_rss_mb,
    _server_version,
    child_environment,
    run_child_process,
)

PG_BENCH_DB = "crmext_bench_mbox"  # not the other benchmarks', so they can run at once
TARGET_RSS_MB = 400
MB = 1024 * 1024
SEPARATOR = b"From bench@example.org Mon Nov  2 10:00:00 2026\n"


# ============================================================================ the mbox


def write_mbox(path: Path, count: int, size: int, seed: int) -> int:
    """Writes ``count`` messages of about ``size`` bytes; returns the file's size.

    Each attachment is a distinct 57-byte line (one base64 line) followed by a shared
    random block: base64 of the concatenation is the concatenation of the two encodings,
    so each message costs one write, not one encoding.
    """
    rng = random.Random(seed)
    lines = max(1, (size - 2048) // 77)  # base64 lines of 76 characters + newline
    shared = base64.encodebytes(rng.randbytes((lines - 1) * 57))
    text = ("Hello,\n\nplease find the quarterly figures attached. Tell me if anything looks off.\n\n"
            "Best,\nCarol\n" * 12)
    with open(path, "wb") as handle:
        for number in range(count):
            head = (
                f"From: Carol Chen <carol@acme.com>\nTo: Alex Morgan <alex.morgan@northwind-trading.com>\n"
                f"Subject: Quarterly figures {number}\nDate: Mon, 2 Nov 2026 10:{number % 60:02d}:00 +0000\n"
                f"Message-ID: <figures-{seed}-{number}@acme.com>\nMIME-Version: 1.0\n"
                'Content-Type: multipart/mixed; boundary="=-part"\n\n--=-part\n'
                f"Content-Type: text/plain; charset=utf-8\n\n{text}\n--=-part\n"
                f'Content-Type: application/pdf; name="figures-{number}.pdf"\n'
                f'Content-Disposition: attachment; filename="figures-{number}.pdf"\n'
                "Content-Transfer-Encoding: base64\n\n"
            ).encode()
            handle.write(SEPARATOR + head + base64.encodebytes(rng.randbytes(57)))
            handle.write(shared)
            handle.write(b"--=-part--\n\n")
    past = time.time() - 60  # a finished export, left alone
    os.utime(path, (past, past))
    return path.stat().st_size


# ============================================================================ child process


class _RssSampler(threading.Thread):
    """The process's resident set size every ``interval`` seconds; keeps the peak."""

    def __init__(self, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process()
        self.interval = interval
        self.peak = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            self.stopping.wait(self.interval)

    def stop(self) -> float:
        self.stopping.set()
        self.join()
        return self.peak / MB


def run_child(args: argparse.Namespace) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "crmext.settings"
    import django

    django.setup()
    from django.conf import settings

    settings.DEBUG = False  # production behaviour: DEBUG keeps every query's SQL in memory

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from integrations.models import ProviderAccount, SyncRun
    from integrations.providers.mbox import MboxProvider
    from integrations.sync import sync_account

    label = args.child
    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user("bench", email="alex.morgan@northwind-trading.com",
                                                 password="bench-pw-123")
    account = ProviderAccount.objects.create(owner=owner, provider="mbox", display_name="Bench export",
                                             external_address=owner.email, config={"path": args.mbox})
    import psutil

    rss_before = psutil.Process().memory_info().rss / MB
    peak_before = _peak_rss_mb()
    size = Path(args.mbox).stat().st_size
    next_report = [size // 10]

    def progress(done: int, total: int | None) -> None:
        if done >= next_report[0]:
            rss = psutil.Process().memory_info().rss / MB
            print(f"[{label}] {done / MB:,.0f} / {size / MB:,.0f} MB, RSS {rss:.0f} MB (peak {_peak_rss_mb():.0f} MB)",
                  file=sys.stderr, flush=True)
            next_report[0] = done + size // 10

    sampler = _RssSampler()
    sampler.start()
    started = time.perf_counter()
    outcome = sync_account(account.pk, progress=progress)
    wall = time.perf_counter() - started
    sampled_peak = sampler.stop()
    run = SyncRun.objects.get(pk=outcome.run_id) if outcome.run_id else None
    result = {
        "database": label,
        "server": _server_version(),
        "status": outcome.status,
        "message": outcome.message,
        "wall": wall,
        "size": size,
        "count": args.count,
        "created": run.created if run else 0,
        "pages": run.api_calls if run else 0,
        "rss_before_mb": rss_before,
        "peak_before_mb": peak_before,
        "sampled_peak_mb": sampled_peak,
        "peak_rss_mb": _peak_rss_mb(),
        "settings": {name: getattr(settings, name) for name in
                     ("PAGE_MAX_BYTES", "MESSAGE_MAX_BYTES", "ATTACHMENT_MAX_BYTES")},
        "page_size": MboxProvider.page_size,
        "breakdown": _breakdown(Path(args.mbox)) if args.breakdown else [],
    }
    connection.close()
    Path(args.result).write_text(json.dumps(result))


def _breakdown(mbox: Path) -> list[str]:
    """Traced memory of reading and parsing one message alone, in MB."""
    import tracemalloc

    from conversations.parsing import parse_message
    from integrations.providers.mbox import iter_mbox

    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        message = next(iter(iter_mbox(mbox)))
        held, read_peak = (value - base for value in tracemalloc.get_traced_memory())
        tracemalloc.reset_peak()
        parsed = parse_message(message.raw)
        parse_peak = tracemalloc.get_traced_memory()[1] - base
        del message
        kept = tracemalloc.get_traced_memory()[0] - base
        attachments = sum(len(a.content or b"") for a in parsed.attachments)
    finally:
        tracemalloc.stop()
    return [
        f"one message of {held / MB:.1f} MB, traced alone: the reader holds {held / MB:.1f} MB (peak "
        f"{read_peak / MB:.1f} MB while reading); parse_message peaks at {parse_peak / MB:.0f} MB "
        f"({parse_peak / held:.1f}x the message, raw included); the parsed message keeps {kept / MB:.1f} MB "
        f"({attachments / MB:.1f} MB of it attachment content) once the raw bytes are dropped",
    ]


# ============================================================================ parent process


def _report(result: dict, args: argparse.Namespace, generated_s: float) -> None:
    print()
    for line in _machine():
        print(line)
    print(f"database: {result['server']}")
    print(f"load    : {args.start_load} at start, {_load()} now (other work shares this machine's CPUs)")
    print(f"mbox    : {result['count']} messages of ~{args.size_mb} MB (text body + base64 attachment), "
          f"{result['size'] / MB:,.0f} MB, generated in {generated_s:.0f}s (not measured)")
    s = result["settings"]
    print(f"settings: PAGE_MAX_BYTES {s['PAGE_MAX_BYTES'] / MB:.0f} MB, MESSAGE_MAX_BYTES "
          f"{s['MESSAGE_MAX_BYTES'] / MB:.0f} MB, ATTACHMENT_MAX_BYTES {s['ATTACHMENT_MAX_BYTES'] / MB:.0f} MB, "
          f"page size {result['page_size']}")
    print()
    ok = "OK" if result["created"] == result["count"] and result["status"] == "succeeded" else "MISMATCH"
    print(f"import  : {result['status']} in {result['wall']:.1f}s; {result['size'] / MB / result['wall']:.1f} MB/s, "
          f"{result['count'] / result['wall']:.2f} messages/s; {result['created']} / {result['count']} created {ok}; "
          f"{result['pages']} pages ({result['message']})")
    print(f"RSS     : {result['rss_before_mb']:.0f} MB before the import (after migrate + setup; peak so far "
          f"{result['peak_before_mb']:.0f} MB), {result['sampled_peak_mb']:.0f} MB sampled peak during it; "
          f"peak RSS of the process {result['peak_rss_mb']:.0f} MB")
    verdict = "meets" if result["peak_rss_mb"] < TARGET_RSS_MB else "MISSES"
    print(f"target  : peak RSS {result['peak_rss_mb']:.0f} MB {verdict} < {TARGET_RSS_MB} MB")
    for line in result["breakdown"]:
        print(f"memory  : {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="messages in the mbox (default 200)")
    parser.add_argument("--size-mb", type=float, default=20, help="size of each message in MB (default 20)")
    parser.add_argument("--database-url", default="",
                        help="run on PostgreSQL: a server URL to connect to for CREATE/DROP DATABASE "
                             "(e.g. postgres://postgres@127.0.0.1:5432/postgres); default SQLite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--breakdown", action="store_true",
                        help="diagnostic: after the import, trace reading and parsing one message alone")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--mbox", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count < 1 or args.size_mb <= 0:
        parser.error("--count and --size-mb must be positive")
    if args.child:
        run_child(args)
        return
    args.start_load = _load()

    database = "postgres" if args.database_url else "sqlite"
    if args.database_url:
        ingest_bench.PG_ADMIN_URL = args.database_url  # read by bench/ingest.py's helpers at call time
    size = int(args.size_mb * MB)
    workdir = Path(tempfile.mkdtemp(prefix="crmext-mboxbench-"))
    try:
        needed = args.count * size * 1.8 + 512 * MB  # the mbox, the stored attachments, the database
        free = shutil.disk_usage(workdir).free
        if free < needed:
            raise SystemExit(f"{workdir} has {free / MB:,.0f} MB free; this run needs about {needed / MB:,.0f} MB")
        imports = workdir / "imports"
        imports.mkdir()
        mbox = imports / "bench.mbox"
        print(f"== writing {args.count} messages of {args.size_mb:g} MB to {mbox} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        write_mbox(mbox, args.count, size, args.seed)
        generated_s = time.perf_counter() - started
        env = child_environment(database, workdir, PG_BENCH_DB)
        env["MBOX_IMPORT_DIR"] = str(imports)
        result_path = workdir / "result.json"
        command = [sys.executable, str(Path(__file__).resolve()), "--child", database, "--mbox", str(mbox),
                   "--count", str(args.count), "--result", str(result_path)]
        if args.breakdown:
            command.append("--breakdown")
        print(f"== {database}: importing ...", file=sys.stderr, flush=True)
        result = run_child_process(command, env, database, PG_BENCH_DB, result_path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if result is None:
        sys.exit(1)
    _report(result, args, generated_s)


if __name__ == "__main__":
    main()
