"""Triggers: what matching adds per ingested message with 1,000 enabled triggers, and how many
webhooks per second delivery sustains to a local receiver.

    DEBUG=true .venv/bin/python -m bench.triggers [--triggers 1000] [--messages 1000] [--deliveries 1000]
        [--workers 1,2]
    (DATABASE_URL=postgres://... for PostgreSQL; a throwaway test database is created and dropped)

Matching: ``fire`` (load the batch's facts in three queries, compile the account's triggers,
test every message against every trigger, record the matches) over batches of 200 stored
messages, against 1,000 enabled triggers with varied conditions; the figure is its time per
message. Targets: < 1 ms per message.

Delivery: the task a qcluster worker runs, ``automation.tasks.deliver_webhook`` (claim and load,
build, sign, POST through the SSRF guard to a loopback HTTP/1.1 receiver, record the attempt),
for each pending delivery, run the way a qcluster runs it: --workers lists worker counts
(default: 1 and Q_CLUSTER["workers"]); for each, that many forked worker processes, each with
its own database connection and connection pool, take delivery ids from one shared queue (as
django-q2's workers take tasks from the pusher's). The broker's own cost (the ORM queue's
dequeue and result rows) is not counted; the receiver runs in the parent process. On SQLite the test database is a file, so that the
worker processes share it. Target: >= 200 webhooks/s.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmext.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.test.utils import CaptureQueriesContext, setup_test_environment  # noqa: E402

from automation import tasks  # noqa: E402
from automation.models import Trigger, WebhookDelivery  # noqa: E402
from automation.triggers import services  # noqa: E402
from automation.triggers.conditions import MatcherIndex  # noqa: E402
from conversations.ingest import store_batch  # noqa: E402
from conversations.messages import Address, AddressKind, Channel, ParsedMessage  # noqa: E402
from integrations.models import ProviderAccount  # noqa: E402

BATCH = 200


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real receivers (nginx, any PaaS front) do

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def make_triggers(owner, account, count: int) -> None:
    """Varied, mostly selective triggers: senders, subjects, labels, directions, types."""
    rows = []
    for i in range(count):
        kind = i % 5
        conditions = [{"sender": f"partner{i}.example"}, {"subject_contains": f"project-{i}"},
                      {"label": f"label-{i}", "direction": "inbound"}, {"body_contains": f"order #{i}"},
                      {"sender": f"person{i}@acme.com", "has_attachment": True}][kind]
        trigger = Trigger(owner=owner, name=f"t{i}", connector=account if i % 2 else None,
                          type=("email", "any", "sms")[i % 3], conditions=conditions, url="http://127.0.0.1:9/x")
        trigger.set_secret("whsec_bench_secret_0123456789")
        rows.append(trigger)
    Trigger.objects.bulk_create(rows, batch_size=500)


def messages(count: int, start: int) -> list[ParsedMessage]:
    return [ParsedMessage(
        provider_message_id=f"bench-{start + n}", rfc_message_id=f"bench-{start + n}@bench.example",
        sender=Address(AddressKind.EMAIL, f"person{n % 300}@partner{n % 700}.example", "Someone"),
        to=(Address(AddressKind.EMAIL, "alice@example.org", "Alice"),), subject=f"About project-{n % 2000}",
        body_text=f"Hello,\n\nplease see order #{n % 5000} and reply.\n" * 20, channel=Channel.EMAIL,
        labels=("INBOX", f"label-{n % 3000}")) for n in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--triggers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--workers", default=f"1,{settings.Q_CLUSTER['workers']}",
                        help="comma-separated worker counts (default: 1 and Q_CLUSTER workers)")
    args = parser.parse_args()
    setup_test_environment()
    if connection.vendor == "sqlite":  # worker processes cannot share an in-memory database
        connection.settings_dict.setdefault("TEST", {})["NAME"] = os.path.join(
            tempfile.mkdtemp(prefix="bench-triggers-"), "test.sqlite3")
    old_name = connection.creation.create_test_db(verbosity=0, keepdb=False)
    try:
        run(args)
    finally:
        connections.close_all()
        connection.creation.destroy_test_db(old_name, verbosity=0)


def run(args: argparse.Namespace) -> None:
    owner = get_user_model().objects.create_user("bench", email="alice@example.org")
    account = ProviderAccount.objects.create(owner=owner, provider="mbox", external_address="alice@example.org")
    services.queue_delivery = lambda delivery_id, at=None: None  # no qcluster: deliveries are run below
    ids: list[list[int]] = []
    for start in range(0, args.messages, BATCH):
        result = store_batch(account, messages(min(BATCH, args.messages - start), start))
        ids.append(list(result.created_ids))
    total = sum(len(batch) for batch in ids)

    # Matching, with no trigger (the cost of asking) and with --triggers enabled ones.
    t = time.perf_counter()
    for batch in ids:
        services.fire(account.pk, batch, "delta")
    baseline = time.perf_counter() - t
    make_triggers(owner, account, args.triggers)
    WebhookDelivery.objects.all().delete()
    t = time.perf_counter()
    matched = 0
    for batch in ids:
        matched += services.fire(account.pk, batch, "delta").matched
    elapsed = time.perf_counter() - t
    WebhookDelivery.objects.all().delete()
    facts = services.load_facts(ids[0])
    compiled = services.compile_triggers(account, list(services.triggers_for(account).select_related("owner")))
    index = MatcherIndex([matcher for _trigger, _level, matcher in compiled])
    t = time.perf_counter()
    for item in facts:
        index.matching(item)
    pure = (time.perf_counter() - t) / len(facts)
    print(f"matching: triggers={args.triggers} messages={total} matched={matched} "
          f"fire_ms_per_message={elapsed / total * 1000:.3f} (no-trigger baseline {baseline / total * 1000:.3f}) "
          f"pure_match_ms_per_message={pure * 1000:.3f} target<1ms")

    # Delivery to a loopback receiver.
    settings.TRIGGERS_ALLOW_PRIVATE_TARGETS = True
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Trigger.objects.all().delete()
    hook = Trigger(owner=owner, name="bench", url=f"http://127.0.0.1:{server.server_address[1]}/hook")
    hook.set_secret("whsec_bench_secret_0123456789")
    hook.save()
    every = [pk for batch in ids for pk in batch]
    targets = (every * (args.deliveries // len(every) + 1))[:args.deliveries]
    pending = [WebhookDelivery(trigger=hook, communication_id=pk, event="communication.created") for pk in
               dict.fromkeys(targets)]
    pending += [WebhookDelivery(trigger=hook, event="trigger.test") for _ in range(args.deliveries - len(pending))]
    WebhookDelivery.objects.bulk_create(pending)
    delivery_ids = list(WebhookDelivery.objects.values_list("pk", flat=True))

    # Queries of one attempt of a communication's delivery (then put back to pending).
    sample = WebhookDelivery.objects.filter(communication__isnull=False).values_list("pk", flat=True).first()
    with CaptureQueriesContext(connection) as queries:
        tasks.deliver_webhook(sample)
    per_webhook = len(queries)
    for counts in args.workers.split(","):
        workers = int(counts)
        WebhookDelivery.objects.update(status="pending", attempts=0, attempt_log=[], claimed_at=None,
                                       next_attempt_at=None, delivered_at=None, response_code=None, error="")
        succeeded, elapsed = run_workers(workers, delivery_ids)
        print(f"delivery: webhooks={len(delivery_ids)} succeeded={succeeded} workers={workers} (processes) "
              f"seconds={elapsed:.2f} rate={len(delivery_ids) / elapsed:.0f}/s "
              f"ms_per_webhook_per_worker={elapsed * workers / len(delivery_ids) * 1000:.2f} "
              f"queries_per_webhook={per_webhook} target>=200/s database={connection.vendor}")
    server.shutdown()


def worker(queue: multiprocessing.Queue, start: multiprocessing.Event, results: multiprocessing.Queue) -> None:
    """A qcluster worker: takes delivery ids off the shared queue and runs the delivery task."""
    succeeded = 0
    start.wait()
    while (delivery_id := queue.get()) is not None:
        succeeded += tasks.deliver_webhook(delivery_id) == "succeeded"
    connections.close_all()
    results.put(succeeded)


def run_workers(workers: int, delivery_ids: list[int]) -> tuple[int, float]:
    context = multiprocessing.get_context("fork")  # as django-q2 starts its workers on Linux
    queue, results, start = context.Queue(), context.Queue(), context.Event()
    for delivery_id in delivery_ids:
        queue.put(delivery_id)
    for _ in range(workers):
        queue.put(None)
    connections.close_all()  # no connection crosses the fork
    processes = [context.Process(target=worker, args=(queue, start, results), daemon=True) for _ in range(workers)]
    for process in processes:
        process.start()
    time.sleep(0.5)  # every worker up (and its imports done) before the clock starts
    t = time.perf_counter()
    start.set()
    succeeded = sum(results.get() for _ in processes)
    elapsed = time.perf_counter() - t
    for process in processes:
        process.join()
    return succeeded, elapsed


if __name__ == "__main__":
    main()
