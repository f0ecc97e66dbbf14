#!/usr/bin/env python
"""IMAP sync benchmark: sync_account against a real Dovecot, backfill and deltas.

    .venv/bin/python bench/imap_backfill.py [--n 20000] [--databases postgres,sqlite] [--seed 1]
                                            [--deltas 5] [--extra 100] [--profile 30 [--profile-out PATH]]
                                            [--page-size N]   (experiment)

The parent starts a private Dovecot (tests/dovecot.py, in a make_base_dir() directory,
stopped and removed at the end, also on error), creates one user and loads N synthetic
messages (bench/synthetic.py) into its INBOX with MULTIAPPEND (timed, not part of the
figures). The mailbox is loaded once and reused for every database.

Each database is then measured in a child process of this script (DATABASE_URL set before
Django starts, peak RSS that database's alone) on a throwaway database: SQLite in a temp
file, PostgreSQL in a fresh ``crmext_bench_imap`` database (dropped before and after; admin
URL from $BENCH_PG_URL as for bench/ingest.py). MEDIA_ROOT is a temp dir; DEBUG is off.
In the child, after migrate and creating a user + IMAP account (security "none"):

  1. full backfill: one sync_account(account.pk), timed end to end (IMAP fetch + parse +
     store); created count and SyncRun.api_calls; a time breakdown (IMAP round trips,
     parse_message, store_batch, the rest) from thin wrappers around those functions;
  2. no-change delta: sync_account again --deltas times (median, max, api_calls of one, and
     the IMAP commands it sent, to show it does not scan the mailbox);
  3. new mail: --extra more messages are appended to INBOX, then one sync_account (time,
     created count). The parent expunges them again afterwards, so every database starts
     from the same N-message mailbox;
  4. peak RSS (ru_maxrss) of the child.

It prints figures and asserts nothing. --profile N runs the backfill under cProfile and
prints the top N functions (that run's rates are deflated by the profiler; Dovecot and
PostgreSQL time shows up as socket and psycopg waits). Experiments, which leave the
project's code alone but change what is measured (and say so in the report):
--page-size N overrides ImapProvider.page_size. The sync engine fetches the next backfill
page while it stores the current one, so the breakdown's parts overlap and add up to more
than the wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == BENCH_DIR:
    sys.path[0] = str(REPO_ROOT)  # run as a script: import from the repo root, not bench/
elif str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.ingest import (  # noqa: E402  (after the sys.path fix above)
    child_environment,
    run_child_process,
    _backend_pid,
    _load,
    _machine,
    _peak_rss_mb,
    _process_cpu,
    _server_version,
)

PG_BENCH_DB = "crmext_bench_imap"  # not bench/ingest.py's, so both can run at once
IMAP_USER = "bench"
IMAP_PASSWORD = "bench-imap-pw"
TARGET_BACKFILL_PG = 1000  # messages/s
TARGET_DELTA_S = 0.5
TARGET_RSS_MB = 300


# ============================================================================ child process


def _proc_cpu_with_children(pid: int) -> float:
    """utime + stime + cutime + cstime of ``pid`` (seconds): includes its reaped children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _dovecot_cpu(master: int | None) -> float:
    """CPU seconds of the Dovecot master and all its processes, live or already reaped."""
    if not master:
        return 0.0
    total = _proc_cpu_with_children(master)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == master:
            total += _proc_cpu_with_children(int(entry.name))
    return total


class _Breakdown:
    """Wall time spent in IMAP round trips, parse_message, store_batch and commits during a sync.

    Thin wrappers installed on the attributes the sync code looks up at call time; nothing
    in the project is changed. The ``imap ...`` keys are the time inside ImapProvider's
    server calls (EXAMINE, UID SEARCH, the RFC822.SIZE sizing fetch, the body fetch),
    including imapclient's response parsing but minus the parse_message calls made inside
    the body fetch; ``commit`` is the outer transaction's COMMIT of every page.
    """

    IMAP_CALLS = {"_select": "imap select", "_search_uids": "imap search", "_bounded": "imap size",
                  "_fetch": "imap fetch"}  # fmt: skip

    def __init__(self) -> None:
        from django.db import connections

        import integrations.quarantine as quarantine_module
        from integrations.providers.imap import provider as imap_provider_module

        self.totals = dict.fromkeys(("parse", "store", "commit", *self.IMAP_CALLS.values()), 0.0)
        provider = imap_provider_module.ImapProvider

        def timed(key, function):  # type: ignore[no-untyped-def]
            def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
                started = time.perf_counter()
                try:
                    return function(*args, **kwargs)
                finally:
                    self.totals[key] += time.perf_counter() - started

            return wrapper

        def imap_call(key, original):  # type: ignore[no-untyped-def]
            def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
                started, parse_start = time.perf_counter(), self.totals["parse"]
                try:
                    return original(*args, **kwargs)
                finally:
                    parsed_inside = self.totals["parse"] - parse_start
                    self.totals[key] += time.perf_counter() - started - parsed_inside

            return wrapper

        imap_provider_module.parse_message = timed("parse", imap_provider_module.parse_message)
        quarantine_module.store_batch = timed("store", quarantine_module.store_batch)
        connection = connections["default"]
        connection.commit = timed("commit", connection.commit)  # what transaction.atomic calls
        for name, key in self.IMAP_CALLS.items():
            setattr(provider, name, imap_call(key, getattr(provider, name)))

    def snapshot(self) -> dict[str, float]:
        return dict(self.totals)

    def since(self, before: dict[str, float]) -> dict[str, float]:
        spent = {key: self.totals[key] - before[key] for key in self.totals}
        spent["imap"] = sum(spent[key] for key in self.IMAP_CALLS.values())
        return spent


class _CommandLog:
    """Records the IMAP commands sent while active (name + first arguments).

    imapclient sends most commands through imaplib's ``_command`` and some (ENABLE, SEARCH,
    FETCH...) through its own ``_raw_command``; both are wrapped, they never nest.
    """

    def __init__(self) -> None:
        import imaplib

        import imapclient

        self.commands: list[str] = []
        self.active = False
        original_command = imaplib.IMAP4._command
        original_raw = imapclient.IMAPClient._raw_command

        def text(value) -> str:  # type: ignore[no-untyped-def]
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)

        def record(name: str, args) -> None:  # type: ignore[no-untyped-def]
            shown = "..." if name in ("LOGIN", "AUTHENTICATE") else " ".join(text(a) for a in args)
            self.commands.append(f"{name} {shown[:60]}".strip())

        def command(imap, name, *args):  # type: ignore[no-untyped-def]
            if self.active:
                record(name, args)
            return original_command(imap, name, *args)

        def raw_command(client, name, args, uid=True):  # type: ignore[no-untyped-def]
            if self.active:
                record(("UID " if uid and client.use_uid else "") + text(name).upper(),
                       args if isinstance(args, (list, tuple)) else [args])
            return original_raw(client, name, args, uid=uid)

        imaplib.IMAP4._command = command  # type: ignore[method-assign]
        imapclient.IMAPClient._raw_command = raw_command  # type: ignore[method-assign]


def run_child(args: argparse.Namespace) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "crmext.settings"
    import django

    django.setup()
    from django.conf import settings

    # Production behaviour: with DEBUG on, Django keeps the SQL of the last 9,000 queries.
    settings.DEBUG = False

    import imapclient
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from bench.synthetic import OWNER_ADDRESS, OWNER_NAME
    from conversations.models import Communication
    from integrations.models import ProviderAccount, SyncRun
    from integrations.providers.imap.provider import ImapProvider
    from integrations.sync import sync_account
    from tests.dovecot import append_many

    label = args.child
    rss_start = _peak_rss_mb()
    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    migrate_s = time.perf_counter() - started
    server = _server_version()

    owner = get_user_model().objects.create_user("bench", email=OWNER_ADDRESS, password="bench-pw-123")
    account = ProviderAccount.objects.create(
        owner=owner,
        provider="imap",
        display_name=OWNER_NAME,
        external_address=OWNER_ADDRESS,
        config={"host": args.imap_host, "port": args.imap_port, "security": "none", "username": IMAP_USER},
        credentials={"password": IMAP_PASSWORD},
    )
    if args.page_size:  # experiment only: the provider's own page size is the reference
        ImapProvider.page_size = args.page_size
    breakdown = _Breakdown()
    commands = _CommandLog()
    backend = _backend_pid()
    rss_setup = _peak_rss_mb()

    def measure(what: str, profiler=None):  # type: ignore[no-untyped-def]
        """One sync_account, timed; returns a dict of figures."""
        load = _load()
        before = breakdown.snapshot()
        s0, d0, c0 = _process_cpu(backend), _dovecot_cpu(args.dovecot_pid), time.process_time()
        if profiler is not None:
            profiler.enable()
        t0 = time.perf_counter()
        outcome = sync_account(account.pk, progress=progress if what == "backfill" else None)
        wall = time.perf_counter() - t0
        if profiler is not None:
            profiler.disable()
        cpu = time.process_time() - c0
        server_cpu = _process_cpu(backend) - s0
        time.sleep(0.05)  # let the Dovecot master reap the session's imap process
        dovecot_cpu = _dovecot_cpu(args.dovecot_pid) - d0
        run = SyncRun.objects.get(pk=outcome.run_id) if outcome.run_id else None
        return {
            "what": what,
            "status": outcome.status,
            "message": outcome.message,
            "wall": wall,
            "cpu": cpu,
            "server_cpu": server_cpu if backend else None,
            "dovecot_cpu": dovecot_cpu,
            "breakdown": breakdown.since(before),
            "kind": run.kind if run else "",
            "fetched": run.fetched if run else 0,
            "created": run.created if run else 0,
            "updated": run.updated if run else 0,
            "skipped": run.skipped if run else 0,
            "api_calls": run.api_calls if run else 0,
            "load": load,
        }

    next_report = [args.n // 10 or 1]
    progress_start = [time.perf_counter()]

    def progress(done: int, total: int | None) -> None:
        if done >= next_report[0]:
            rate = done / (time.perf_counter() - progress_start[0])
            print(f"[{label}] backfill {done:,}/{total or '?':,}  ({rate:,.0f} msg/s so far, "
                  f"peak RSS {_peak_rss_mb():.0f} MB)", file=sys.stderr, flush=True)
            while next_report[0] <= done:
                next_report[0] += args.n // 10 or 1

    # 1. Full backfill.
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    print(f"[{label}] backfill of {args.n:,} messages ...", file=sys.stderr, flush=True)
    progress_start[0] = time.perf_counter()
    backfill = measure("backfill", profiler)
    stored = Communication.objects.filter(account=account).count()
    rss_backfill = _peak_rss_mb()
    print(f"[{label}] backfill: {backfill['status']} in {backfill['wall']:.1f}s ({backfill['message']})",
          file=sys.stderr, flush=True)

    # 2. No-change deltas.
    deltas = []
    for i in range(args.deltas):
        commands.active = i == 0
        deltas.append(measure("delta"))
        commands.active = False
    delta_commands = list(commands.commands)

    # 3. New mail, then a delta.
    extra = pickle.loads(Path(args.extra_file).read_bytes())
    client = imapclient.IMAPClient(args.imap_host, port=args.imap_port, ssl=False, timeout=60)
    try:
        client.login(IMAP_USER, IMAP_PASSWORD)
        append_many(client, "INBOX", extra)
    finally:
        client.logout()
    new_mail = measure(f"delta +{len(extra)}")
    new_mail["appended"] = len(extra)
    after_new = measure("delta")

    result = {
        "database": label,
        "server": server,
        "vendor": connection.vendor,
        "n": args.n,
        "migrate_s": migrate_s,
        "backfill": backfill,
        "stored": stored,
        "deltas": deltas,
        "delta_commands": delta_commands,
        "new_mail": new_mail,
        "after_new": after_new,
        "total_stored": Communication.objects.filter(account=account).count(),
        "rss_start_mb": rss_start,
        "rss_setup_mb": rss_setup,
        "rss_backfill_mb": rss_backfill,
        "peak_rss_mb": _peak_rss_mb(),
        "page_size": ImapProvider.page_size,
    }
    connection.close()
    Path(args.result).write_text(json.dumps(result))

    if profiler is not None:
        import io
        import pstats

        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(args.profile)
            print(f"\n===== [{label}] backfill profile, top {args.profile} by {order} =====")
            print(out.getvalue().split("\n", 4)[-1].strip("\n"))
        if args.profile_out:
            profiler.dump_stats(f"{args.profile_out}.{label}")


# ============================================================================ parent process


def _load_mailbox(server, n: int, seed: int, extra: int, extra_path: Path) -> dict:  # type: ignore[no-untyped-def]
    """Appends the first n generated messages to INBOX; keeps the next ``extra`` for later."""
    from bench.synthetic import generate_messages
    from tests.dovecot import append_many

    messages = generate_messages(n + extra, seed)
    load_before = _load()
    started = time.perf_counter()
    client = server.client(IMAP_USER, IMAP_PASSWORD, timeout=300)
    try:
        uids = append_many(client, "INBOX", islice(messages, n))
        status = client.select_folder("INBOX", readonly=True)
    finally:
        client.logout()
    seconds = time.perf_counter() - started
    extra_path.write_bytes(pickle.dumps(list(messages)))
    return {
        "seconds": seconds,
        "exists": int(status[b"EXISTS"]),
        "last_uid": max(uids) if uids else int(status[b"UIDNEXT"]) - 1,
        "load": load_before,
    }


def _trim_mailbox(server, last_uid: int) -> int:  # type: ignore[no-untyped-def]
    """Expunges every INBOX message above ``last_uid`` (those a child appended)."""
    client = server.client(IMAP_USER, IMAP_PASSWORD)
    try:
        client.select_folder("INBOX")
        uids = [uid for uid in client.search(["UID", f"{last_uid + 1}:*"]) if uid > last_uid]
        if uids:
            client.delete_messages(uids)
            client.uid_expunge(uids) if client.has_capability("UIDPLUS") else client.expunge()
        exists = int(client.select_folder("INBOX", readonly=True)[b"EXISTS"])
    finally:
        client.logout()
    return exists


def _run_database(  # type: ignore[no-untyped-def]
    database: str, args: argparse.Namespace, workdir: Path, server, extra_path: Path
) -> dict | None:
    env = child_environment(database, workdir, PG_BENCH_DB)
    result_path = workdir / "result.json"
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", database, "--n", str(args.n),
        "--seed", str(args.seed), "--deltas", str(args.deltas), "--result", str(result_path),
        "--imap-host", server.host, "--imap-port", str(server.port), "--extra-file", str(extra_path),
        "--dovecot-pid", str(server._proc.pid if server._proc else 0),  # noqa: SLF001
    ]  # fmt: skip
    if args.page_size:
        command += ["--page-size", str(args.page_size)]
    if args.profile:
        command += ["--profile", str(args.profile)]
        if args.profile_out:
            command += ["--profile-out", args.profile_out]
    return run_child_process(command, env, database, PG_BENCH_DB, result_path)


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    print(fmt(header))
    print("-" * len(fmt(header)))
    for row in rows:
        print(fmt(row))


def _print_report(results: list[dict], args: argparse.Namespace, loading: dict, dovecot: str) -> None:
    print()
    for line in _machine():
        print(line)
    print(f"dovecot : {dovecot}")
    for r in results:
        print(f"{r['database']:<8}: {r['server']}")
    print(f"load    : {args.start_load} when the benchmark started, {_load()} now (these include the benchmark's"
          f" own processes; other work on this machine shares its {os.cpu_count()} CPUs)")
    print(
        f"mailbox : {loading['exists']:,} synthetic messages in INBOX (seed {args.seed}), loaded once with "
        f"MULTIAPPEND in {loading['seconds']:.1f}s ({loading['exists'] / loading['seconds']:,.0f} msg/s; "
        f"not measured; {loading['load']} before)"
    )
    page = results[0]["page_size"] if results else "?"
    experiment = f" EXPERIMENT: page size overridden with --page-size {args.page_size}" if args.page_size else ""
    print(f"account : provider imap, security none, default folders (INBOX + the \\Sent folder), page size {page}"
          + experiment
          + ("  [PROFILED: backfill rates deflated by cProfile]" if args.profile else ""))
    print()

    header = ("database", "backfill", "msgs/s", "created / N", "api calls", "delta median", "delta max",
              "delta calls", f"+{args.extra} delta", "created", "peak RSS")  # fmt: skip
    rows = []
    for r in results:
        b, nm = r["backfill"], r["new_mail"]
        walls = [d["wall"] for d in r["deltas"]]
        ok = "OK" if b["created"] == r["n"] == r["stored"] and b["status"] == "succeeded" else "MISMATCH"
        rows.append((
            r["database"],
            f"{b['wall']:.1f} s",
            f"{r['n'] / b['wall']:,.0f}",
            f"{b['created']:,} / {r['n']:,} {ok}",
            f"{b['api_calls']:,}",
            f"{statistics.median(walls) * 1000:.0f} ms" if walls else "-",
            f"{max(walls) * 1000:.0f} ms" if walls else "-",
            f"{r['deltas'][0]['api_calls']}" if walls else "-",
            f"{nm['wall'] * 1000:.0f} ms",
            f"{nm['created']} / {nm['appended']}",
            f"{r['peak_rss_mb']:.0f} MB",
        ))  # fmt: skip
    _table(header, rows)
    print("backfill = one sync_account() on an empty database, end to end (IMAP fetch + parse + store);\n"
          f"delta = sync_account() again with nothing new ({args.deltas} runs); +{args.extra} delta = after "
          f"appending {args.extra} messages to INBOX; api calls = SyncRun.api_calls.")
    print()

    for r in results:
        b = r["backfill"]
        pad = " " * len(r["database"])
        bd = b["breakdown"]
        server = "" if b["server_cpu"] is None else f", PostgreSQL backend {b['server_cpu']:.1f}s"
        print(
            f"{r['database']}: backfill {b['wall']:.1f}s; IMAP round trips {bd['imap']:.1f}s, parse_message "
            f"{bd['parse']:.1f}s, store_batch {bd['store']:.1f}s, COMMIT {bd['commit']:.1f}s (these overlap: the "
            "next page is fetched while one is stored) "
            f"(fetched {b['fetched']:,}, updated {b['updated']}, skipped {b['skipped']})"
        )
        print(
            f"{pad}  IMAP round trips: EXAMINE {bd['imap select']:.1f}s, UID SEARCH {bd['imap search']:.1f}s, "
            f"RFC822.SIZE sizing {bd['imap size']:.1f}s, body FETCH {bd['imap fetch']:.1f}s "
            f"(server wait + imapclient response parsing)"
        )
        print(f"{pad}  CPU during backfill: Python {b['cpu']:.1f}s, Dovecot {b['dovecot_cpu']:.1f}s{server}; "
              f"machine {b['load']} at start")
        for d in r["deltas"]:
            if d["status"] != "succeeded" or d["created"] or d["fetched"]:
                print(f"{pad}  note: a delta {d['status']}: fetched {d['fetched']}, created {d['created']} "
                      f"({d['message']})")
        d = r["deltas"][0] if r["deltas"] else None
        if d:
            walls = ", ".join(f"{x['wall'] * 1000:.0f}" for x in r["deltas"])
            print(f"{pad}  no-change deltas: {walls} ms; "
                  f"one sends {len(r['delta_commands'])} IMAP commands: {'; '.join(r['delta_commands'])}")
            print(f"{pad}    (of a delta: IMAP {d['breakdown']['imap'] * 1000:.0f} ms, Python CPU "
                  f"{d['cpu'] * 1000:.0f} ms, fetched {d['fetched']})")
        nm, an = r["new_mail"], r["after_new"]
        print(f"{pad}  +{nm['appended']} delta: {nm['status']}, fetched {nm['fetched']}, created {nm['created']}, "
              f"{nm['api_calls']} api calls, {nm['wall'] * 1000:.0f} ms; the next delta {an['wall'] * 1000:.0f} ms "
              f"(created {an['created']}); {r['total_stored']:,} messages stored in all")
        print(f"{pad}  RSS: {r['rss_start_mb']:.0f} MB at start, {r['rss_setup_mb']:.0f} MB after migrate + setup, "
              f"{r['rss_backfill_mb']:.0f} MB after the backfill, {r['peak_rss_mb']:.0f} MB peak; migrate "
              f"{r['migrate_s']:.1f}s; machine {nm['load']} before the last delta")
        if b["status"] != "succeeded":
            print(f"{pad}  BACKFILL {b['status'].upper()}: {b['message']}")
    print()
    print("targets (reported, not asserted):")
    for r in results:
        b = r["backfill"]
        marks = []
        rate = r["n"] / b["wall"]
        if r["vendor"] == "postgresql":
            verdict = "meets" if rate >= TARGET_BACKFILL_PG else "MISSES"
            marks.append(f"backfill {rate:,.0f} msgs/s {verdict} >= {TARGET_BACKFILL_PG:,}")
        else:
            marks.append(f"backfill {rate:,.0f} msgs/s (target is for PostgreSQL)")
        if r["deltas"]:
            median = statistics.median(d["wall"] for d in r["deltas"])
            worst = max(d["wall"] for d in r["deltas"])
            verdict = "meets" if worst < TARGET_DELTA_S else "MISSES"
            scale = "" if r["n"] >= 20000 else f" (at {r['n']:,}; the target is for a 20k mailbox)"
            marks.append(
                f"no-change delta {median:.2f}s median / {worst:.2f}s max {verdict} < {TARGET_DELTA_S}s{scale}"
            )
        verdict = "meets" if r["peak_rss_mb"] < TARGET_RSS_MB else "MISSES"
        marks.append(f"peak RSS {r['peak_rss_mb']:.0f} MB {verdict} < {TARGET_RSS_MB} MB")
        print(f"  {r['database']:<8}: " + "; ".join(marks))
    if args.profile:
        print("  (profiled run: the backfill rate is not representative)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="messages in the mailbox (default 20000)")
    parser.add_argument("--databases", default="postgres,sqlite", help="comma-separated: postgres,sqlite")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--deltas", type=int, default=5, help="no-change deltas to time (default 5)")
    parser.add_argument("--extra", type=int, default=100, help="messages appended before the last delta")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile the backfill, print top N")
    parser.add_argument("--page-size", type=int, default=0, metavar="N",
                        help="experiment: override ImapProvider.page_size (not the project's setting)")
    parser.add_argument("--profile-out", default="", help="also dump the raw profile to PATH.<database>")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--imap-host", help=argparse.SUPPRESS)
    parser.add_argument("--imap-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--extra-file", help=argparse.SUPPRESS)
    parser.add_argument("--dovecot-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.n < 1 or args.deltas < 0 or args.extra < 0:
        parser.error("--n must be positive, --deltas and --extra not negative")

    if args.child:
        run_child(args)
        return
    args.start_load = _load()

    from tests.dovecot import DovecotServer, find_dovecot, make_base_dir

    databases = [d.strip().lower() for d in args.databases.split(",") if d.strip()]
    binary = find_dovecot()
    if binary is None:
        raise SystemExit("Dovecot is not installed (apt-get install dovecot-imapd)")
    dovecot_version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    results = []
    base = make_base_dir("imapbench-")
    scratch = Path(tempfile.mkdtemp(prefix="crmext-imapbench-"))
    server = DovecotServer(base, binary=binary)
    try:
        server.start()
        server.add_user(IMAP_USER, IMAP_PASSWORD)
        print(f"== Dovecot on {server.host}:{server.port}; loading {args.n:,} messages into INBOX ...",
              file=sys.stderr, flush=True)
        extra_path = scratch / "extra.pickle"
        loading = _load_mailbox(server, args.n, args.seed, args.extra, extra_path)
        print(f"== loaded {loading['exists']:,} messages in {loading['seconds']:.1f}s", file=sys.stderr, flush=True)
        for database in databases:
            workdir = Path(tempfile.mkdtemp(prefix=f"{database}-", dir=scratch))
            try:
                exists = _trim_mailbox(server, loading["last_uid"])
                print(f"== {database}: mailbox of {exists:,} messages ...", file=sys.stderr, flush=True)
                result = _run_database(database, args, workdir, server, extra_path)
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
                _trim_mailbox(server, loading["last_uid"])
            if result is not None:
                results.append(result)
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(base, ignore_errors=True)
            shutil.rmtree(scratch, ignore_errors=True)
    if results:
        _print_report(results, args, loading, dovecot_version)
    if len(results) < len(databases):
        sys.exit(1)


if __name__ == "__main__":
    main()
