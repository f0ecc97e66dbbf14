#!/usr/bin/env python
"""Ingest benchmark: parse_message and store_batch throughput on synthetic mail.

    .venv/bin/python bench/ingest.py [--n 20000] [--batch 500] [--databases sqlite,postgres]
                                     [--seed 1] [--profile 25]

Each database is measured in a child process of this script (so that DATABASE_URL is set
before Django starts and peak RSS is that database's alone), on a throwaway database:
SQLite in a temp file, PostgreSQL in a fresh ``crmext_bench`` database (dropped before
and after; admin URL from $BENCH_PG_URL, default postgres://postgres@127.0.0.1:5432/postgres).
Attachments go to a temp MEDIA_ROOT.

In the child:
  1. parse only: messages are generated in batches (not timed) and parsed (timed);
  2. streaming ingest: generate a batch, parse it, store_batch it, drop it; store/s times
     only the store_batch calls, end-to-end/s times parse + store (generation excluded).
Nothing ever holds more than one batch, so memory is bounded whatever --n.

This prints figures; it asserts nothing (a failed created-count check is reported).
Diagnostics: --profile N runs store_batch under cProfile and prints the top N functions
(that run's rates are inflated by the profiler); --queries times the SQL inside store_batch
by statement; --imap-style stores messages as the IMAP provider hands them over (ref,
folder label, flags, merge_labels); --pg-option KEY=VALUE tries a PostgreSQL OPTIONS entry.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == BENCH_DIR:
    sys.path[0] = str(REPO_ROOT)  # run as a script: import from the repo root, not bench/
elif str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
PG_BENCH_DB = "crmext_bench"
TARGET_PARSE = 2000
TARGET_STORE_PG = 3000
TARGET_RSS_MB = 300


# ============================================================================ child process


def _batches(iterator, size: int):  # type: ignore[no-untyped-def]
    """Lists of up to ``size`` items, timing how long the iterator took to produce them."""
    while True:
        started = time.perf_counter()
        batch = []
        for item in iterator:
            batch.append(item)
            if len(batch) == size:
                break
        if not batch:
            return
        yield batch, time.perf_counter() - started


def _peak_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux
    return peak / 1024 if sys.platform != "darwin" else peak / 1024 / 1024


def _backend_pid() -> int | None:
    """The PostgreSQL backend's pid when the server runs on this machine (to read its CPU time)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), inet_server_addr()::text")
        pid, address = cursor.fetchone()
    local = address is None or address.split("/")[0] in ("127.0.0.1", "::1")
    return pid if local and Path(f"/proc/{pid}/stat").exists() else None


def _process_cpu(pid: int | None) -> float:
    """User + system CPU seconds of another process (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _load() -> str:
    parts = []
    try:
        parts.append("loadavg " + " ".join(Path("/proc/loadavg").read_text().split()[:3]))
        pressure = Path("/proc/pressure/cpu").read_text().split("\n")[0].split()
        parts.append("cpu pressure " + pressure[1].replace("avg10=", "avg10 ") + "%")
    except (OSError, IndexError):
        pass
    return ", ".join(parts)


def _count(app: str, model: str) -> int | None:
    from django.apps import apps

    try:
        return apps.get_model(app, model).objects.count()
    except LookupError:
        return None


def _server_version() -> str:
    from django.db import connection

    if connection.vendor == "sqlite":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    return f"PostgreSQL {version}"


def run_child(args: argparse.Namespace) -> None:
    import dataclasses
    import hashlib

    os.environ["DJANGO_SETTINGS_MODULE"] = "crmext.settings"
    import django

    django.setup()
    from django.conf import settings

    if args.pg_option and settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        # Experiments only (e.g. server_side_binding=true): the project's settings stay the reference.
        options = settings.DATABASES["default"].setdefault("OPTIONS", {})
        for item in args.pg_option:
            key, _, value = item.partition("=")
            try:
                options[key] = json.loads(value)
            except ValueError:
                options[key] = value
        print(f"[{args.child}] experimental OPTIONS {options}", file=sys.stderr, flush=True)
    # Production behaviour: with DEBUG on, Django would keep the SQL of the last 9,000
    # queries (bulk inserts with bodies inlined) in memory and inflate both time and RSS.
    settings.DEBUG = False

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from bench.synthetic import OWNER_ADDRESS, OWNER_NAME, generate_messages
    from contacts.models import Company, Contact
    from conversations.ingest import store_batch
    from conversations.models import Attachment, Communication, Conversation, Participant, ThreadKey
    from conversations.parsing import parse_message
    from integrations.models import ProviderAccount

    rss_start = _peak_rss_mb()
    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    migrate_s = time.perf_counter() - started
    server = _server_version()

    owner = get_user_model().objects.create_user("bench", email=OWNER_ADDRESS, password="bench-pw-123")
    account = ProviderAccount.objects.create(
        owner=owner, provider="mbox", display_name=OWNER_NAME, external_address=OWNER_ADDRESS
    )
    label = args.child
    n, size = args.n, args.batch
    load_start = _load()
    backend = _backend_pid()

    # 1. Parse only.
    generate_s = parse_s = parse_cpu = 0.0
    distinct: set[int] = set()  # 8-byte digests of provider ids: ~5 MB at 100k
    parsed_count = warnings = 0
    for raw_batch, generated in _batches(generate_messages(n, args.seed), size):
        generate_s += generated
        t0, c0 = time.perf_counter(), time.process_time()
        parsed = [parse_message(raw) for raw in raw_batch]
        parse_s += time.perf_counter() - t0
        parse_cpu += time.process_time() - c0
        parsed_count += len(parsed)
        for message in parsed:
            warnings += bool(message.warnings)
            digest = hashlib.blake2b(message.provider_message_id.encode(), digest_size=8).digest()
            distinct.add(int.from_bytes(digest, "big"))
        del parsed, raw_batch
    expected = len(distinct)
    del distinct
    rss_after_parse = _peak_rss_mb()
    print(f"[{label}] parse pass done: {parsed_count} messages in {parse_s:.1f}s", file=sys.stderr, flush=True)

    # 2. Streaming ingest: parse a batch, store it, drop it.
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    query_times: dict[str, list[float]] = {}  # statement -> [count, seconds, seconds in the last half]
    in_last_half = [False]
    if args.queries:
        import re

        kind_re = re.compile(r"\s*(\w+(?: OR IGNORE)?(?: INTO| FROM)?)")
        table_re = re.compile(r'"(\w+)"')

        def timed(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
            kind, table = kind_re.match(sql), table_re.search(sql)
            verb = kind.group(1).upper() if kind else "?"
            if verb in ("BEGIN", "SAVEPOINT", "RELEASE", "ROLLBACK"):
                key = verb
            else:
                key = f"{verb} {table.group(1) if table else ''}"
            t = time.perf_counter()
            try:
                return execute(sql, params, many, context)
            finally:
                entry = query_times.setdefault(key, [0, 0.0, 0.0])
                elapsed = time.perf_counter() - t
                entry[0] += 1
                entry[1] += elapsed
                if in_last_half[0]:
                    entry[2] += elapsed

        connection.execute_wrappers.append(timed)
    store_kwargs = {"merge_labels": True} if args.imap_style else {}
    e2e_parse_s = store_s = store_cpu = server_cpu = 0.0
    created = updated = skipped = 0
    done = 0
    batch_times: list[float] = []
    next_report = n // 10 or n
    for raw_batch, _generated in _batches(generate_messages(n, args.seed), size):
        t0 = time.perf_counter()
        parsed = [parse_message(raw) for raw in raw_batch]
        if args.imap_style:  # what the IMAP provider adds: one folder copy per message, flags
            parsed = [
                dataclasses.replace(
                    message,
                    labels=("INBOX",),
                    ref=f"INBOX:1:{done + i + 1}",
                    is_read=i % 3 != 0,
                    is_starred=i % 17 == 0,
                )
                for i, message in enumerate(parsed)
            ]
        parse_end = time.perf_counter()
        del raw_batch
        s0 = _process_cpu(backend)
        if profiler is not None:
            profiler.enable()
        t1, c1 = time.perf_counter(), time.process_time()
        result = store_batch(account, parsed, **store_kwargs)
        t2, c2 = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.disable()
        server_cpu += _process_cpu(backend) - s0
        e2e_parse_s += parse_end - t0
        store_s += t2 - t1
        store_cpu += c2 - c1
        batch_times.append(t2 - t1)
        created += result.created
        updated += result.updated
        skipped += result.skipped
        done += len(parsed)
        in_last_half[0] = done >= n / 2
        del parsed, result
        if done >= next_report:
            print(
                f"[{label}] stored {done}/{n}  ({done / store_s:,.0f} msg/s store so far,"
                f" last batch {batch_times[-1] * 1000:.0f} ms, peak RSS {_peak_rss_mb():.0f} MB)",
                file=sys.stderr,
                flush=True,
            )
            next_report += n // 10 or n

    if args.queries:
        connection.execute_wrappers.remove(timed)
        print(f"\n===== [{label}] SQL time inside store_batch ({store_s:.2f}s in all), by statement =====")
        print("   seconds  share   calls  first half / last half of the messages  statement")
        for key, (count, seconds, last) in sorted(query_times.items(), key=lambda kv: -kv[1][1]):
            print(
                f"  {seconds:8.2f}s {100 * seconds / store_s:5.1f}%  {count:6d}x  {seconds - last:7.2f}s / {last:7.2f}s"
                f"                {key}"
            )
        print(f"  {sum(v[1] for v in query_times.values()):8.2f}s total in cursor.execute")
    media = Path(settings.MEDIA_ROOT) / "attachments"
    stored_files = sum(1 for p in media.rglob("*") if p.is_file()) if media.exists() else 0
    counts = {
        "communications": Communication.objects.filter(account=account).count(),
        "conversations": Conversation.objects.count(),
        "thread_keys": ThreadKey.objects.count(),
        "participants": Participant.objects.count(),
        "contacts": Contact.objects.count(),
        "companies": Company.objects.count(),
        "attachments": Attachment.objects.count(),
        "attachment_files": stored_files,
        "message_refs": _count("conversations", "MessageRef"),
    }
    third = max(1, len(batch_times) // 3)
    result_data = {
        "database": label,
        "server": server,
        "n": n,
        "batch": size,
        "migrate_s": migrate_s,
        "generate_s": generate_s,
        "parse_s": parse_s,
        "parse_cpu": parse_cpu,
        "store_cpu": store_cpu,
        "server_cpu": server_cpu if backend else None,
        "load_start": load_start,
        "load_end": _load(),
        "e2e_parse_s": e2e_parse_s,
        "store_s": store_s,
        "first_third_store_batch_ms": 1000 * sum(batch_times[:third]) / third,
        "last_third_store_batch_ms": 1000 * sum(batch_times[-third:]) / third,
        "created": created,
        "updated": updated,
        "skipped": skipped,
        "expected": expected,
        "messages_with_warnings": warnings,
        "counts": counts,
        "rss_start_mb": rss_start,
        "rss_after_parse_mb": rss_after_parse,
        "peak_rss_mb": _peak_rss_mb(),
        "vendor": connection.vendor,
    }
    connection.close()
    Path(args.result).write_text(json.dumps(result_data))

    if profiler is not None:
        import io
        import pstats

        for order in ("tottime", "cumulative"):
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order)
            stats.print_stats(args.profile)
            print(f"\n===== [{label}] store_batch profile, top {args.profile} by {order} =====")
            print(out.getvalue().split("\n", 4)[-1].strip("\n"))
        if args.profile_out:
            profiler.dump_stats(f"{args.profile_out}.{label}")


# ============================================================================ parent process


def _pg_url(database: str) -> str:
    parts = urlsplit(PG_ADMIN_URL)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def _machine() -> list[str]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        total_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {total_kb / 1024 / 1024:.1f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"machine : {platform.machine()} {cpu or platform.processor()}, nproc={usable}{memory}",
        f"os      : {platform.platform()}",
        f"python  : {platform.python_implementation()} {platform.python_version()}",
    ]


def _run_database(database: str, args: argparse.Namespace, workdir: Path) -> dict | None:
    env = child_environment(database, workdir, PG_BENCH_DB)
    result_path = workdir / "result.json"
    command = [
        sys.executable, str(Path(__file__).resolve()), "--child", database,
        "--n", str(args.n), "--batch", str(args.batch), "--seed", str(args.seed), "--result", str(result_path),
    ]  # fmt: skip
    if args.queries:
        command.append("--queries")
    if args.imap_style:
        command.append("--imap-style")
    for option in args.pg_option:
        command += ["--pg-option", option]
    if args.profile:
        command += ["--profile", str(args.profile)]
        if args.profile_out:
            command += ["--profile-out", args.profile_out]
    return run_child_process(command, env, database, PG_BENCH_DB, result_path)


def child_environment(database: str, workdir: Path, pg_database: str) -> dict[str, str]:
    """The environment of one database's child: a fresh throwaway database, media in workdir."""
    env = dict(os.environ)
    env["MEDIA_ROOT"] = str(workdir / "media")
    env.setdefault("LOG_LEVEL", "WARNING")
    # Development secrets (var/) to start with; children turn settings.DEBUG off themselves.
    env.setdefault("DEBUG", "true")
    # The benchmarks' IMAP server is a private Dovecot on loopback, without TLS.
    env.setdefault("ALLOW_INSECURE_IMAP", "true")
    env.pop("DJANGO_SETTINGS_MODULE", None)
    if database == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    elif database in ("postgres", "postgresql"):
        _pg_admin(f'DROP DATABASE IF EXISTS "{pg_database}" WITH (FORCE)')
        _pg_admin(f'CREATE DATABASE "{pg_database}"')
        env["DATABASE_URL"] = _pg_url(pg_database)
    else:
        raise SystemExit(f"unknown database {database!r} (use sqlite, postgres)")
    return env


def run_child_process(command: list[str], env: dict[str, str], database: str, pg_database: str,
                      result_path: Path) -> dict | None:
    """Runs one database's child and returns its JSON result (None if it failed).

    The throwaway PostgreSQL database is dropped afterwards, whatever happened.
    """
    try:
        completed = subprocess.run(command, env=env, cwd=REPO_ROOT)
    finally:
        if database != "sqlite":
            try:
                _pg_admin(f'DROP DATABASE IF EXISTS "{pg_database}" WITH (FORCE)')
            except Exception as error:  # report, do not hide the benchmark's own error
                print(f"warning: could not drop {pg_database}: {error}", file=sys.stderr)
    if completed.returncode != 0 or not result_path.exists():
        print(f"[{database}] failed (exit {completed.returncode})", file=sys.stderr)
        return None
    return json.loads(result_path.read_text())


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}" if seconds > 0 else "-"


def _print_report(results: list[dict], args: argparse.Namespace, profiled: bool) -> None:
    print()
    for line in _machine():
        print(line)
    for r in results:
        print(f"{r['database']:<8}: {r['server']}")
    print(
        f"workload: {args.n:,} synthetic messages (seed {args.seed}), store_batch batches of {args.batch}"
        + ("  [PROFILED: rates inflated by cProfile]" if profiled else "")
        + ("  [IMAP-style: ref + folder label + flags, merge_labels]" if args.imap_style else "")
    )
    if args.pg_option:
        print(f"EXPERIMENT: PostgreSQL OPTIONS {args.pg_option} (not the project's settings)")
    print()
    header = ("database", "parse/s", "store/s", "end-to-end/s", "created / distinct", "peak RSS",
              "parse/s CPU", "store/s CPU")  # fmt: skip
    rows = []
    for r in results:
        check = "OK" if r["created"] == r["expected"] == r["counts"]["communications"] else "MISMATCH"
        store_cpu = r["store_cpu"] + (r["server_cpu"] or 0.0)
        rows.append(
            (
                r["database"],
                _rate(r["n"], r["parse_s"]),
                _rate(r["n"], r["store_s"]),
                _rate(r["n"], r["e2e_parse_s"] + r["store_s"]),
                f"{r['created']:,} / {r['expected']:,} {check}",
                f"{r['peak_rss_mb']:.0f} MB",
                _rate(r["n"], r["parse_cpu"]),
                _rate(r["n"], store_cpu) + ("" if r["vendor"] == "sqlite" or r["server_cpu"] is not None else "?"),
            )
        )
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    print(
        "rates are messages per wall-clock second; the CPU columns divide by CPU seconds instead\n"
        "(store: this process + the PostgreSQL backend), a figure that resists a busy machine."
    )
    print()
    for r in results:
        c = r["counts"]
        print(
            f"{r['database']}: parse {r['parse_s']:.1f}s, store {r['store_s']:.1f}s "
            f"(avg batch {r['first_third_store_batch_ms']:.0f} ms in the first third, "
            f"{r['last_third_store_batch_ms']:.0f} ms in the last), generator {_rate(r['n'], r['generate_s'])}/s "
            f"(not counted), migrate {r['migrate_s']:.1f}s; RSS {r['rss_start_mb']:.0f} MB after setup, "
            f"{r['rss_after_parse_mb']:.0f} MB after the parse pass"
        )
        server = "" if r["server_cpu"] is None else f" + {r['server_cpu']:.1f}s PostgreSQL backend"
        print(
            f"{' ' * len(r['database'])}  CPU: parse {r['parse_cpu']:.1f}s, store {r['store_cpu']:.1f}s Python{server};"
            f" machine: {r['load_start']} at start, {r['load_end']} at end"
        )
        print(
            f"{' ' * len(r['database'])}  rows: {c['communications']:,} communications, {c['conversations']:,} "
            f"conversations, {c['thread_keys']:,} thread keys, {c['participants']:,} participants, "
            f"{c['contacts']:,} contacts, {c['companies']:,} companies, {c['attachments']:,} attachments "
            f"({c['attachment_files']:,} files), {c.get('message_refs') or 0:,} message refs; "
            f"updated {r['updated']}, skipped {r['skipped']}, "
            f"messages with parse warnings {r['messages_with_warnings']}"
        )
    print()
    print("targets (reported, not asserted):")
    for r in results:
        parse_rate = r["n"] / r["parse_s"]
        marks = [f"parse {parse_rate:,.0f}/s {'meets' if parse_rate >= TARGET_PARSE else 'MISSES'} >= {TARGET_PARSE:,}"]
        if r["vendor"] == "postgresql":
            store_rate = r["n"] / r["store_s"]
            verdict = "meets" if store_rate >= TARGET_STORE_PG else "MISSES"
            marks.append(f"store {store_rate:,.0f}/s {verdict} >= {TARGET_STORE_PG:,}")
        if r["n"] >= 100_000:
            verdict = "meets" if r["peak_rss_mb"] < TARGET_RSS_MB else "MISSES"
            marks.append(f"peak RSS {r['peak_rss_mb']:.0f} MB {verdict} < {TARGET_RSS_MB} MB at {r['n']:,}")
        else:
            marks.append("(RSS target applies at 100k; run --n 100000)")
        print(f"  {r['database']:<8}: " + "; ".join(marks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="messages to ingest (default 20000)")
    parser.add_argument("--batch", type=int, default=500, help="messages per store_batch call (default 500)")
    parser.add_argument("--databases", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="cProfile store_batch, print top N")
    parser.add_argument("--profile-out", default="", help="also dump the raw profile to PATH.<database>")
    parser.add_argument(
        "--imap-style",
        action="store_true",
        help="store messages the way the IMAP provider hands them over (ref, folder label, flags, merge_labels)",
    )
    parser.add_argument("--queries", action="store_true", help="time SQL inside store_batch by statement")
    parser.add_argument(
        "--pg-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="experiment: add to the PostgreSQL DATABASES OPTIONS (value read as JSON if it parses),"
        " e.g. server_side_binding=true or options='-c synchronous_commit=off'",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.n < 1 or args.batch < 1:
        parser.error("--n and --batch must be positive")

    if args.child:
        run_child(args)
        return

    databases = [d.strip().lower() for d in args.databases.split(",") if d.strip()]
    results = []
    for database in databases:
        workdir = Path(tempfile.mkdtemp(prefix=f"crmext-bench-{database}-"))
        try:
            print(f"== {database}: {args.n:,} messages, batch {args.batch} ...", file=sys.stderr, flush=True)
            result = _run_database(database, args, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if result is not None:
            results.append(result)
    if results:
        _print_report(results, args, profiled=bool(args.profile))
    if len(results) < len(databases):
        sys.exit(1)


if __name__ == "__main__":
    main()
