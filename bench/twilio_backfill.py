#!/usr/bin/env python
"""Twilio benchmark: a polling backfill against the fake Twilio, and the inbound-SMS webhook under load.

    .venv/bin/python bench/twilio_backfill.py [--n 50000] [--database postgres|sqlite]
        [--senders 50] [--seconds 10] [--paced 0] [--mms-every 100] [--skip-webhook]
        [--workers NPROC] [--threads 8] [--no-cluster] [--profile]

Processes (each measured thing runs alone in its own process):

- the fake Twilio, standalone (``python -m tests.fakes.twilio_standalone --synthetic N``): one
  incoming number, N messages over the last 89 days, two thirds inbound, one third outbound,
  2,000 counterparties, every 100th an MMS with a small image (two more round trips each:
  its media list and its bytes). Its memory and CPU are not the syncing process's;
- ``manage.py migrate`` on the throwaway database (SQLite in a temp file, or PostgreSQL
  ``crmext_bench_twilio``, dropped before and after; admin URL from $BENCH_PG_URL as for
  bench/ingest.py);
- the syncing child: creates the account (auth token credentials, as connected), then one
  sync_account(account.pk), end to end (the real twilio client paging the fake's Messages
  API, media downloads, phone normalisation, contacts, conversations, store); messages/s,
  HTTP round trips, CPU, and its peak RSS (ru_maxrss): the syncing process alone; then one
  no-change delta (the overlap window re-read);
- the web server, as deployed: ``--workers`` processes (default: one per core) sharing one
  listening socket, each a wsgiref server with a fixed pool of ``--threads`` threads whose
  database connections persist (CONN_MAX_AGE); settings.DEBUG off, APP_PUBLIC_URL set to its
  own address; on the database the backfill filled (gunicorn is not installed);
- a qcluster (``manage.py qcluster``, settings Q_CLUSTER) during the load, on the same cores:
  the webhook answers once the message is queued, and the cluster stores it. After the load
  the bench waits for every accepted message to be stored and says how long that took
  (``--no-cluster``: the cluster starts only after the load);
- the senders (this process): ``--senders`` threads POST validly signed (RequestValidator)
  inbound messages with unique SIDs to /webhooks/twilio/sms for ``--seconds``. By default each
  sender posts again as soon as it is answered (closed loop: the server saturated, latency =
  senders / throughput); with ``--paced R`` the senders together post R requests/s at
  fixed intervals (open loop), the latency a webhook sees at that arrival rate. Latency is
  measured from connect to the last byte, on a fresh connection per request (wsgiref speaks
  HTTP/1.0). Every answer must be 200 with ``<Response/>``; the communications the queue
  created are counted afterwards (every accepted message exactly once).

It prints figures, with the load average and CPU pressure of the shared machine, and asserts
nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == BENCH_DIR:
    sys.path[0] = str(REPO_ROOT)  # run as a script: import from the repo root, not bench/
elif str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.ingest import _backend_pid, _load, _machine, _peak_rss_mb, _pg_admin, _process_cpu, child_environment

PG_BENCH_DB = "crmext_bench_twilio"
WEBHOOK_PATH = "/webhooks/twilio/sms"
TARGET_RATE = 2000  # messages/s
TARGET_RSS_MB = 300
TARGET_P95_MS = 50


# ============================================================================ syncing child


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
    for name, value in fake["settings"].items():
        setattr(settings, name, value)
    if args.page_size:
        from integrations.providers.twilio.provider import TwilioProvider

        TwilioProvider.page_size = args.page_size  # an experiment, reported as such
    rss_before = _peak_rss_mb()
    owner = get_user_model().objects.create_user("bench", email="owner@example.org", password="pw-bench-123")
    number = fake["number"]
    account = ProviderAccount.objects.create(
        owner=owner, provider="twilio", display_name="Bench Twilio", external_address=number,
        config={"account_sid": fake["account_sid"], "numbers": [number], "aliases": [number]},
        credentials={"auth_token": fake["auth_token"]},
    )
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    backend = _backend_pid()  # sync_account stores through this process's one connection
    load_before = _load()
    backend_before = _process_cpu(backend)
    cpu_before = time.process_time()
    started = time.perf_counter()
    outcome = sync_account(account.pk)
    backfill_s = time.perf_counter() - started
    backfill_cpu = time.process_time() - cpu_before
    # None when the backend changed: django_q's ORM broker (automation's announce receiver)
    # runs close_old_connections() after each batch's commit, which reopens the connection
    # once it is CONN_MAX_AGE old (every batch with CONN_MAX_AGE 0): no single backend's CPU
    # then covers the backfill.
    backend_cpu = _process_cpu(backend) - backend_before if backend and backend == _backend_pid() else None
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(45)
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
    load_after = _load()
    run = SyncRun.objects.filter(account=account).latest("pk")
    started = time.perf_counter()
    delta = sync_account(account.pk)
    delta_s = time.perf_counter() - started
    delta_run = SyncRun.objects.filter(account=account).latest("pk")
    result = {
        "outcome": outcome.status, "message": outcome.message, "backfill_s": backfill_s, "created": run.created,
        "fetched": run.fetched, "failed": run.failed, "api_calls": run.api_calls, "backfill_cpu_s": backfill_cpu,
        "backend_cpu_s": backend_cpu, "delta_outcome": delta.status, "delta_s": delta_s, "delta_calls": delta_run.api_calls,
        "delta_created": delta_run.created, "rss_before_mb": rss_before, "peak_rss_mb": _peak_rss_mb(),
        "load_before": load_before, "load_after": load_after, "account_id": account.pk,
    }
    Path(args.result).write_text(json.dumps(result))


# ============================================================================ web server child


def run_server(args: argparse.Namespace) -> None:
    """The Django app as a production deploy serves it; prints {"url", "pid", "pids"} once listening.

    ``--workers`` processes (forked after Django is set up, before any database connection)
    accept on one shared listening socket, as gunicorn's sync/gthread workers do; each hands
    connections to a fixed pool of ``--threads`` threads, whose database connections persist
    between requests (settings CONN_MAX_AGE): no connection per request, and at most
    workers x threads of them (a thread per connection, as runserver does, opened one
    PostgreSQL connection per request and ran out of them). settings.DEBUG off.
    """
    import signal
    from concurrent.futures import ThreadPoolExecutor
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmext.settings")
    django.setup()
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application
    from django.db import connections

    settings.DEBUG = False

    class PooledWSGIServer(WSGIServer):
        request_queue_size = 1024
        pool: ThreadPoolExecutor | None = None

        def process_request(self, request, client_address):  # type: ignore[no-untyped-def]
            if self.pool is None:
                self.pool = ThreadPoolExecutor(max_workers=args.threads, thread_name_prefix="wsgi")
            self.pool.submit(self._handle, request, client_address)

        def _handle(self, request, client_address):  # type: ignore[no-untyped-def]
            try:
                self.finish_request(request, client_address)
            except Exception:  # noqa: BLE001 - as socketserver does: one broken connection, not the server
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = PooledWSGIServer(("127.0.0.1", 0), QuietHandler)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    settings.APP_PUBLIC_URL = url  # the URL the senders sign, as Twilio would
    application = get_wsgi_application()
    server.set_app(application)
    connections.close_all()  # none may be shared across fork
    children: list[int] = []
    for _ in range(max(1, args.workers) - 1):
        pid = os.fork()
        if pid == 0:
            children.clear()
            break
        children.append(pid)
    else:
        def stop(*_: object) -> None:
            for child in children:
                try:
                    os.kill(child, signal.SIGTERM)
                except OSError:
                    pass
            os._exit(0)

        signal.signal(signal.SIGTERM, stop)
        print(json.dumps({"url": url, "pid": os.getpid(), "pids": [os.getpid(), *children]}), flush=True)
    server.serve_forever(poll_interval=0.1)


def run_counter(args: argparse.Namespace) -> None:
    """Waits until ``--expect`` webhook messages are stored (the queue drained) or ``--seconds``
    pass; prints {"stored", "waited_s"}."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmext.settings")
    django.setup()
    from django_q.models import Task

    from conversations.models import Communication
    from integrations.models import QuarantinedMessage
    from integrations.providers.twilio.webhooks import STORE_TASK

    expected = set(Path(args.sids).read_text().split())
    rows = Communication.objects.filter(account_id=args.account_id, provider_message_id__startswith="SM",
                                        body_text__startswith="Webhook bench")
    failures = Task.objects.filter(func=STORE_TASK, success=False)
    started = time.perf_counter()
    stored, failed = rows.count(), failures.count()
    while stored + failed + QuarantinedMessage.objects.filter(account_id=args.account_id).count() < args.expect and time.perf_counter() - started < args.seconds:
        time.sleep(0.25)
        stored, failed = rows.count(), failures.count()
    first = failures.order_by("started").first()
    stored_sids = set(rows.values_list("provider_message_id", flat=True))
    missing = sorted(expected - stored_sids)
    quarantined = QuarantinedMessage.objects.filter(account_id=args.account_id)
    reason = quarantined.values_list("reason", flat=True).first()
    print(json.dumps({"stored": stored, "waited_s": time.perf_counter() - started, "failed": failed,
                      "failure": str(first.result)[-300:] if first else "", "quarantined": quarantined.count(),
                      "reason": (reason or "")[:300], "queued": _queued_left(), "missing": len(missing),
                      "missing_sample": missing[:3], "unexpected": len(stored_sids - expected)}), flush=True)


def _queued_left() -> str:
    """The inbound-message tasks still in the queue: how many, and how many are locked (taken)."""
    from django.utils import timezone
    from django_q.models import OrmQ

    from integrations.providers.twilio.webhooks import STORE_TASK

    rows = [row for row in OrmQ.objects.all() if row.task.get("func") == STORE_TASK]
    taken = sum(1 for row in rows if row.lock and row.lock > timezone.now())
    return f"{len(rows)} still in the queue ({taken} taken by the cluster: run or running, not yet acknowledged)"


# ============================================================================ parent


def _start_line(command: list[str], env: dict[str, str] | None, what: str) -> tuple[subprocess.Popen, dict]:
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.kill()
        raise SystemExit(f"{what} did not start")
    return process, json.loads(line)


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (its threads included), from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def senders(url: str, fake: dict, args: argparse.Namespace, run: int = 1) -> dict:
    """``args.senders`` threads posting signed inbound messages for ``args.seconds``."""
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(fake["auth_token"])
    target = urllib.parse.urlsplit(url)
    signed_url = f"{url}{WEBHOOK_PATH}"
    latencies: list[float] = []
    sids: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(args.senders + 1)
    deadline = [0.0]
    interval = args.senders / args.paced if args.paced else 0.0

    def sender(index: int) -> None:
        mine: list[float] = []
        accepted: list[str] = []
        failures: list[str] = []
        start.wait()
        next_at = time.perf_counter() + (interval * index / args.senders if interval else 0.0)
        sequence = 0
        while True:
            if interval:
                pause = next_at - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                next_at += interval
            if time.perf_counter() >= deadline[0]:
                break
            sequence += 1
            # Unique per run, sender and post, and never a SID of the fake's synthetic messages (SM0000...).
            sid = f"SM{0xB0 + run:02x}{index:06x}{sequence:024x}"
            params = {
                "ToCountry": "US", "ToState": "CA", "SmsMessageSid": sid, "NumMedia": "0", "SmsSid": sid,
                "SmsStatus": "received", "Body": f"Webhook bench {index}/{sequence}: can we move our call?",
                "FromCountry": "US", "To": fake["number"], "NumSegments": "1", "MessageSid": sid,
                "AccountSid": fake["account_sid"], "From": f"+1628{300 + index:03d}{sequence % 10000:04d}",
                "ApiVersion": "2010-04-01",
            }
            body = urllib.parse.urlencode(params)
            headers = {"Content-Type": "application/x-www-form-urlencoded",
                       "X-Twilio-Signature": validator.compute_signature(signed_url, params),
                       "User-Agent": "TwilioProxy/1.1"}
            began = time.perf_counter()
            try:
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                connection.request("POST", WEBHOOK_PATH, body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                connection.close()
                elapsed = time.perf_counter() - began
                if response.status != 200 or b"<Response/>" not in answer:
                    failures.append(f"{response.status} {answer[:100]!r}")
                else:
                    mine.append(elapsed)
                    accepted.append(sid)
            except OSError as error:
                failures.append(f"{type(error).__name__}: {error}")
        with lock:
            sids.extend(accepted)
            latencies.extend(mine)
            errors.extend(failures)

    threads = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(args.senders)]
    for thread in threads:
        thread.start()
    began = time.perf_counter()
    deadline[0] = began + args.seconds
    start.wait()
    load_before = _load()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    return {"latencies": latencies, "sids": sids, "errors": errors, "wall_s": wall, "load_before": load_before,
            "load_after": _load()}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _wait_stored(env: dict[str, str], account_id: int, sids: list[str], seconds: float) -> dict:
    sids_path = Path(env["MEDIA_ROOT"]).parent / "accepted-sids.txt"
    sids_path.write_text("\n".join(sids))
    completed = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--count", "--account-id",
                                str(account_id), "--expect", str(len(sids)), "--seconds", str(seconds),
                                "--sids", str(sids_path)],
                               env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    try:
        return json.loads(completed.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        print(completed.stderr[-2000:], file=sys.stderr)
        return {"stored": None, "waited_s": 0.0, "failed": None, "failure": ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--database", default="postgres")
    parser.add_argument("--mms-every", type=int, default=100)
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--paced", type=float, default=0.0,
                        help="total requests/s of the senders, evenly spaced (0: closed loop)")
    parser.add_argument("--skip-webhook", action="store_true")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2,
                        help="web server processes (default: one per core)")
    parser.add_argument("--threads", type=int, default=8, help="threads (and database connections) per process")
    parser.add_argument("--no-cluster", action="store_true",
                        help="no qcluster during the load: the queued webhooks are stored afterwards")
    parser.add_argument("--page-size", type=int, default=0,
                        help="EXPERIMENT: TwilioProvider.page_size for the backfill (default: the provider's)")
    parser.add_argument("--profile", action="store_true", help="cProfile the backfill (to stderr; rates inflated)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--account-id", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--expect", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sids", help=argparse.SUPPRESS)
    parser.add_argument("--fake", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return
    if args.serve:
        run_server(args)
        return
    if args.count:
        run_counter(args)
        return
    started = time.perf_counter()
    fake_process, fake = _start_line(
        [sys.executable, "-m", "tests.fakes.twilio_standalone", "--synthetic", str(args.n),
         "--mms-every", str(args.mms_every)], None, "the fake Twilio")
    print(f"fake Twilio: {fake['messages']:,} synthetic messages ready in {time.perf_counter() - started:.1f} s "
          f"(pid {fake_process.pid}, not measured)", flush=True)
    result: dict | None = None
    try:
        with tempfile.TemporaryDirectory(prefix="twilio-bench-") as workdir:
            env = child_environment(args.database, Path(workdir), PG_BENCH_DB)
            try:
                # Migrated by another process: its memory must not count in the syncing process's peak.
                subprocess.run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], env=env, cwd=REPO_ROOT,
                               check=True)
                result_path = Path(workdir) / "result.json"
                command = [sys.executable, str(Path(__file__).resolve()), "--child", "--fake", json.dumps(fake),
                           "--result", str(result_path), "--page-size", str(args.page_size)]
                command += ["--profile"] if args.profile else []
                fake_cpu = _cpu_seconds(fake_process.pid)
                completed = subprocess.run(command, env=env, cwd=REPO_ROOT, check=False)
                if completed.returncode != 0 or not result_path.exists():
                    raise SystemExit(f"the syncing child failed (exit {completed.returncode})")
                result = json.loads(result_path.read_text())
                result["fake_cpu_s"] = _cpu_seconds(fake_process.pid) - fake_cpu
                report_backfill(args, fake, result)
                if not args.skip_webhook:
                    run_webhook(args, env, fake, result["account_id"])
            finally:
                if args.database != "sqlite":
                    try:
                        _pg_admin(f'DROP DATABASE IF EXISTS "{PG_BENCH_DB}" WITH (FORCE)')
                    except Exception as error:  # noqa: BLE001 - report, do not hide the benchmark's own error
                        print(f"warning: could not drop {PG_BENCH_DB}: {error}", file=sys.stderr)
    finally:
        fake_process.terminate()
        fake_process.wait(timeout=30)


def run_webhook(args: argparse.Namespace, env: dict[str, str], fake: dict, account_id: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", "--workers", str(args.workers),
               "--threads", str(args.threads)]
    server, info = _start_line(command, env, "the web server")
    cluster = None
    if not args.no_cluster:
        # The queued webhooks are stored by a qcluster (settings Q_CLUSTER, its workers), running
        # during the load on the same cores, as in production.
        cluster = subprocess.Popen([sys.executable, "manage.py", "qcluster"], env=env, cwd=REPO_ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # One warm-up second: imports, URL resolvers, the first connections of every worker.
        warm = argparse.Namespace(**{**vars(args), "seconds": 1.0, "paced": 0.0, "senders": 8})
        warmed = senders(info["url"], fake, warm, run=0)
        pids = info.get("pids") or [info["pid"]]
        cpu_before = sum(_cpu_seconds(pid) for pid in pids)
        web = senders(info["url"], fake, args, run=1)
        web["server_cpu_s"] = sum(_cpu_seconds(pid) for pid in pids) - cpu_before
        web["server_rss_mb"] = sum(_rss_mb(pid) for pid in pids)
        web["processes"] = len(pids)
        accepted = warmed["sids"] + web["sids"]
        expect = len(accepted)
        if cluster is None:
            cluster = subprocess.Popen([sys.executable, "manage.py", "qcluster"], env=env, cwd=REPO_ROOT,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        waited = _wait_stored(env, account_id, accepted, seconds=max(120.0, args.seconds * 12))
        web["stored"], web["drain_s"], web["expected"] = waited["stored"], waited["waited_s"], expect
        web["failed"], web["failure"] = waited.get("failed"), waited.get("failure")
        web["quarantined"], web["reason"] = waited.get("quarantined"), waited.get("reason")
        web["queued"] = waited.get("queued", "?")
        web["missing"] = (f"{waited.get('missing')} accepted SID(s) not stored, e.g. {waited.get('missing_sample')}; "
                          f"{waited.get('unexpected')} stored that were not accepted")
    finally:
        server.terminate()
        server.wait(timeout=30)
        if cluster is not None:
            cluster.terminate()
            try:
                cluster.wait(timeout=30)
            except subprocess.TimeoutExpired:
                cluster.kill()
    report_webhook(args, web)
    return web


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report_backfill(args: argparse.Namespace, fake: dict, result: dict) -> None:
    rate = result["created"] / result["backfill_s"] if result["backfill_s"] else 0.0
    print()
    for line in _machine():
        print(line)
    print(f"database: {args.database}")
    print(f"load    : before {result['load_before']}; after {result['load_after']}")
    if args.page_size:
        print(f"EXPERIMENT: TwilioProvider.page_size = {args.page_size} (not the provider's own)")
    print(f"backfill: {result['outcome']} - {result['message']}"
          + ("  [PROFILED: rates deflated by cProfile]" if args.profile else ""))
    print(f"  {result['created']:,} created ({result['fetched']:,} fetched, {result['failed']} failed) of "
          f"{fake['messages']:,} in {result['backfill_s']:.1f} s = {rate:,.0f} messages/s "
          f"(target >= {TARGET_RATE}: {_verdict(rate >= TARGET_RATE)})")
    print(f"  CPU: syncing process {result['backfill_cpu_s']:.1f} s, fake Twilio {result.get('fake_cpu_s', 0):.1f} s, "
          f"PostgreSQL backend {'- (reconnected during the backfill: CONN_MAX_AGE)' if result.get('backend_cpu_s') is None else format(result['backend_cpu_s'], '.1f')} s "
          f"(same {len(os.sched_getaffinity(0))} cores, shared with PostgreSQL and other jobs; "
          f"the fake's CPU includes the delta)")
    print(f"  {result['api_calls']:,} HTTP round trips ({result['api_calls'] / max(1, result['fetched']):.4f} "
          f"per message; MMS every {args.mms_every}: media list + bytes each)")
    print(f"  peak RSS {result['peak_rss_mb']:.0f} MB (after Django start: {result['rss_before_mb']:.0f} MB; "
          f"target < {TARGET_RSS_MB}: {_verdict(result['peak_rss_mb'] < TARGET_RSS_MB)})")
    print(f"no-change delta: {result['delta_outcome']}, {result['delta_s'] * 1000:.0f} ms, "
          f"{result['delta_calls']} round trip(s), {result['delta_created']} created")
    sys.stdout.flush()


def report_webhook(args: argparse.Namespace, web: dict) -> None:
    latencies = web["latencies"]
    p50, p95 = _quantile(latencies, 0.50) * 1000, _quantile(latencies, 0.95) * 1000
    peak = max(latencies, default=0.0) * 1000
    mode = (f"paced at {args.paced:g} requests/s in all (open loop)" if args.paced
            else "closed loop: each posts again once answered")
    print(f"webhook : POST {WEBHOOK_PATH}, {args.senders} concurrent senders, {mode}, {web['wall_s']:.1f} s; "
          f"{web['processes']} wsgiref processes x {args.threads} threads, persistent connections, DEBUG off; "
          f"qcluster storing {'during the load' if not args.no_cluster else 'after the load'}")
    print(f"  load: before {web['load_before']}; after {web['load_after']}")
    print(f"  {len(latencies):,} answered 200 <Response/> = {len(latencies) / web['wall_s']:,.0f} requests/s; "
          f"{len(web['errors'])} errors{(' e.g. ' + web['errors'][0]) if web['errors'] else ''}; "
          f"{web['stored'] if web['stored'] is not None else '?'} of {web['expected']:,} accepted stored by the "
          f"queue (warm-up included) {web['drain_s']:.1f} s after the last answer; {web['failed']} failed task(s)"
          f"{(': ' + web['failure']) if web['failure'] else ''}; {web['quarantined']} quarantined"
          f"{(': ' + web['reason']) if web['reason'] else ''}; {web['queued']}")
    print(f"  exactly once: {web['missing']}")
    print(f"  latency p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {peak:.1f} ms "
          f"(target p95 < {TARGET_P95_MS} ms: {_verdict(p95 < TARGET_P95_MS)})")
    if latencies:
        print(f"  mean {statistics.mean(latencies) * 1000:.1f} ms; server CPU {web['server_cpu_s']:.1f} s "
              f"= {web['server_cpu_s'] / max(1, len(latencies)) * 1000:.1f} ms per request; "
              f"server peak RSS {web['server_rss_mb']:.0f} MB (all processes)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
