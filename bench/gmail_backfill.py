#!/usr/bin/env python
"""Gmail sync benchmark: sync_account against the fake Gmail API (tests/fakes/gmail.py).

    .venv/bin/python bench/gmail_backfill.py [--n 20000] [--big] [--database postgres|sqlite]
                                             [--deltas 5] [--quota 1000000]

The parent starts the fake standalone in its own process (``python -m tests.fakes.gmail
--synthetic N``, messages generated lazily; with --big every 100th carries a 20 MB attachment),
so the fake's memory and CPU are not the syncing process's. The throwaway database (SQLite in a
temp file, or PostgreSQL ``crmext_bench_gmail``, dropped before and after; admin URL from
$BENCH_PG_URL as for bench/ingest.py) is migrated by its own ``manage.py migrate`` process. A
child process (DATABASE_URL set before Django starts) creates a user and a Gmail account holding
the fake's tokens, then measures:

  1. the backfill: one sync_account(account.pk), end to end (list, size, fetch, parse, store);
     messages/s, and HTTP round trips per message from SyncRun.api_calls (a batch is one);
  2. no-change deltas: sync_account again --deltas times (median and max wall time, and the
     round trips of one: history.list only);
  3. peak RSS (ru_maxrss) of the child: the syncing process alone.

Quota: the client paces each mailbox at GMAIL_QUOTA_UNITS_PER_SECOND (200 units/s by default,
Google's per-user limit being 250). A backfill costs 10 units per message (a sizing get and a
raw get), so at the default a real mailbox syncs at ~20 messages/s whatever this code does.
The benchmark measures the code, so it raises the budget (--quota, default 1,000,000) and says so.
It prints figures and asserts nothing.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == BENCH_DIR:
    sys.path[0] = str(REPO_ROOT)  # run as a script: import from the repo root, not bench/
elif str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.ingest import _load, _machine, _peak_rss_mb, child_environment, run_child_process

PG_BENCH_DB = "crmext_bench_gmail"
EMAIL = "bench@example.com"
TARGET_RATE = 800  # messages/s
TARGET_CALLS_PER_MESSAGE = 0.05
TARGET_RSS_MB = 300
TARGET_DELTA_S = 0.2


# ============================================================================ child process


def run_child(args: argparse.Namespace) -> None:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmext.settings")
    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model

    from integrations.models import ProviderAccount, SyncRun
    from integrations.sync import sync_account

    settings.DEBUG = False
    fake = json.loads(args.fake)
    url = fake["url"]
    settings.GMAIL_API_ENDPOINT, settings.GOOGLE_TOKEN_URI = url, url + "/token"
    settings.GOOGLE_CLIENT_ID, settings.GOOGLE_CLIENT_SECRET = "fake-client-id", "fake-client-secret"
    settings.GMAIL_QUOTA_UNITS_PER_SECOND = args.quota
    rss_before = _peak_rss_mb()
    owner = get_user_model().objects.create_user("bench", email="owner@example.org", password="pw-bench-123")
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=20)
    account = ProviderAccount.objects.create(
        owner=owner, provider="gmail", display_name="Bench Gmail", external_address=EMAIL, config={"email": EMAIL},
        credentials={"kind": "oauth", "refresh_token": fake["refresh_token"], "access_token": fake["access_token"],
                     "expiry": expiry.isoformat(), "scopes": ["https://www.googleapis.com/auth/gmail.readonly"]},
    )
    load_before = _load()
    cpu_before = time.process_time()
    started = time.perf_counter()
    outcome = sync_account(account.pk)
    backfill_s = time.perf_counter() - started
    backfill_cpu = time.process_time() - cpu_before
    run = SyncRun.objects.filter(account=account).latest("pk")
    deltas, delta_calls = [], None
    for _ in range(args.deltas):
        started = time.perf_counter()
        delta = sync_account(account.pk)
        deltas.append(time.perf_counter() - started)
        delta_run = SyncRun.objects.filter(account=account).latest("pk")
        delta_calls = delta_run.api_calls
        if delta.status != "succeeded":
            print(f"delta: {delta}", file=sys.stderr)
    result = {
        "outcome": outcome.status, "message": outcome.message, "backfill_s": backfill_s, "created": run.created,
        "fetched": run.fetched, "failed": run.failed, "api_calls": run.api_calls, "deltas": deltas,
        "delta_calls": delta_calls, "rss_before_mb": rss_before, "peak_rss_mb": _peak_rss_mb(),
        "load_before": load_before, "load_after": _load(), "backfill_cpu_s": backfill_cpu,
    }
    Path(args.result).write_text(json.dumps(result))


# ============================================================================ parent


def start_fake(args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    serve = "import sys, tests.fakes.gmail as fake; fake.main(sys.argv[1:])"
    command = [sys.executable, "-c", serve, "--email", EMAIL, "--synthetic", str(args.n)]
    if args.big:
        command += ["--big-every", "100", "--big-bytes", str(20_000_000)]
    fake = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    assert fake.stdout is not None
    line = fake.stdout.readline()
    if not line:
        fake.kill()
        raise SystemExit("the fake Gmail did not start")
    return fake, line.strip()


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (its threads included), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--big", action="store_true", help="1%% of the messages carry a 20 MB attachment")
    parser.add_argument("--database", default="postgres")
    parser.add_argument("--deltas", type=int, default=5)
    parser.add_argument("--quota", type=int, default=1_000_000, help="GMAIL_QUOTA_UNITS_PER_SECOND for the run")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fake", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return
    started = time.perf_counter()
    fake, fake_json = start_fake(args)
    print(f"fake Gmail: {args.n:,} synthetic messages{' (1% of 20 MB)' if args.big else ''} "
          f"ready in {time.perf_counter() - started:.1f} s (pid {fake.pid}, not measured)")
    try:
        with tempfile.TemporaryDirectory(prefix="gmail-bench-") as workdir:
            env = child_environment(args.database, Path(workdir), PG_BENCH_DB)
            # Migrated by another process: a sync worker does not run migrations, and their
            # memory would count in the syncing process's peak.
            subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], env=env, cwd=REPO_ROOT,
                           check=True)
            result_path = Path(workdir) / "result.json"
            command = [sys.executable, str(Path(__file__).resolve()), "--child", "--fake", fake_json,
                       "--result", str(result_path), "--deltas", str(args.deltas), "--quota", str(args.quota)]
            fake_cpu = _cpu_seconds(fake.pid)
            result = run_child_process(command, env, args.database, PG_BENCH_DB, result_path)
            if result is not None:
                result["fake_cpu_s"] = _cpu_seconds(fake.pid) - fake_cpu
    finally:
        fake.terminate()
        fake.wait(timeout=30)
    if result is None:
        raise SystemExit(1)
    report(args, result)


def report(args: argparse.Namespace, result: dict) -> None:
    def verdict(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    rate = result["created"] / result["backfill_s"] if result["backfill_s"] else 0.0
    per_message = result["api_calls"] / max(1, result["fetched"])
    delta_median = statistics.median(result["deltas"]) if result["deltas"] else 0.0
    for line in _machine():
        print(line)
    print(f"load    : before {result['load_before']}; after {result['load_after']}")
    print(f"database: {args.database}; quota budget {args.quota:,} units/s (see the docstring)")
    print(f"backfill: {result['outcome']} - {result['message']}")
    print(f"  {result['created']:,} created in {result['backfill_s']:.1f} s = {rate:,.0f} messages/s "
          f"(target >= {TARGET_RATE}: {verdict(rate >= TARGET_RATE)})")
    print(f"  CPU: syncing process {result['backfill_cpu_s']:.1f} s, fake Gmail {result.get('fake_cpu_s', 0):.1f} s "
          f"(both on the same {len(os.sched_getaffinity(0))} cores; the fake's CPU includes its deltas)")
    print(f"  {result['api_calls']:,} HTTP round trips = {per_message:.4f} per message "
          f"(target < {TARGET_CALLS_PER_MESSAGE}: {verdict(per_message < TARGET_CALLS_PER_MESSAGE)})")
    print(f"  peak RSS {result['peak_rss_mb']:.0f} MB (after Django start: "
          f"{result['rss_before_mb']:.0f} MB; target < {TARGET_RSS_MB}: {verdict(result['peak_rss_mb'] < TARGET_RSS_MB)})")
    if result["deltas"]:
        print(f"no-change delta: median {delta_median * 1000:.0f} ms, max {max(result['deltas']) * 1000:.0f} ms, "
              f"{result['delta_calls']} round trip(s) (target < {TARGET_DELTA_S * 1000:.0f} ms: "
              f"{verdict(delta_median < TARGET_DELTA_S)})")


if __name__ == "__main__":
    main()
