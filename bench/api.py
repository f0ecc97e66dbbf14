#!/usr/bin/env python
"""REST API latency on a large table (default: 1,000,000 communications, PostgreSQL).

    DEBUG=true .venv/bin/python bench/api.py [--n 1000000] [--repeat 50] [--keep] [--reuse] [--explain]

Fills a throwaway database (``crmext_bench_api``, dropped before and after unless --keep)
with SQL generate_series after the real migrations (the search GIN index of migration 0003
is dropped for the load and built again before anything is timed), then times the API
through DRF's APIClient in-process with token auth: each request timed, --repeat times
after a warm-up, p50/p95/max and the SQL query count per request. Prints figures; asserts
nothing. --reuse times a database left by --keep without loading it again; --explain
prints EXPLAIN ANALYZE of the slowest query of each scenario that misses its target.

The data: the measured user (not staff) owns 20 accounts; three teammates own 10 more, at
every sharing level (private, metadata, subject, everything). Communications go round the
30 accounts, sent over five years, one conversation per three; subjects and bodies are
words drawn with a skew from a vocabulary (a common word is in a large share of rows, one
rare word in a few dozen); each communication has a "from" participant linked to one of
20,000 contacts (skewed: a few contacts have thousands of communications) and a "to"
participant that is the owner.

Measured 2026-11-21 (2 shared cores, PostgreSQL 15, shared_buffers 128 MB; load 365 s, of which
the GIN index build 107 s; --repeat 30, cpu pressure under 4%):

    scenario                                p50      p95   SQL  target p95
    communications list, page 1           22.7     32.1     5   50 met
    communications list, page 1,000       20.2     35.3     5   50 met
    contact timeline (2,899 comms)       411.3    526.9     6   50 MISSED: planner walks the
        sent_at index and probes participants per row (45k probes); participants first: 59 ms cold
    q, common word (266k rows)            45.6     52.3     5  150 met
    q, most frequent word (994k rows)     29.5     37.5     5  150 met
    q, rare word (40 rows)               195.7    251.6     6  150 MISSED: per visible account,
        a BitmapAnd of the GIN bitmap with that account's 33k-entry account_sent_idx bitmap
    connector list, 20 accounts         3471.5   3924.4     3   50 MISSED: the count reads every
        live row's heap (660k blocks); partial index (account_id) WHERE deleted_at IS NULL and
        COUNT(*): index-only, 60 ms; a stored counter is the way under 50 ms
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == BENCH_DIR:
    sys.path[0] = str(REPO_ROOT)  # run as a script: import from the repo root, not bench/
elif str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.ingest import _load, _machine, _pg_admin, _pg_url, _server_version  # noqa: E402

DATABASE = "crmext_bench_api"
OWN_ACCOUNTS = 20
TEAM_SHARING = ["private", "metadata", "subject", "everything"] * 3  # 12 -> 10 used
TEAM_ACCOUNTS = 10
CONTACTS = 20_000
RARE_WORD = "quokka"  # in one communication of 25,000
TARGETS_MS = {"list": 50, "timeline": 50, "search": 150, "connectors": 50}

VOCABULARY = (
    "meeting invoice project update report contract order delivery payment review budget schedule "
    "proposal client offer price quote team call agenda minutes draft plan release launch design "
    "feedback request approval question answer support ticket issue problem solution account access "
    "password login server network backup storage migration database query index table column row "
    "customer partner supplier vendor shipment warehouse stock inventory product service package "
    "license renewal subscription trial demo presentation slides workshop training course seminar "
    "conference travel hotel flight booking reservation dinner lunch coffee office holiday vacation "
    "weekend monday tuesday wednesday thursday friday morning afternoon evening tomorrow yesterday "
    "today week month quarter year january february march april may june july august september "
    "october november december hello thanks regards best please attached document file spreadsheet "
    "summary details information note reminder deadline urgent important follow status progress "
    "milestone task action item owner manager director board finance legal marketing sales "
    "engineering product research analysis strategy growth revenue cost margin forecast target "
    "berlin paris london madrid rome vienna zurich amsterdam brussels lisbon prague warsaw oslo"
).split()
TOP_WORD = VOCABULARY[0]  # the most frequent: in nearly every row
COMMON_WORD = VOCABULARY[len(VOCABULARY) // 2]  # a common word: in about a fifth of the rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50, help="timed requests per scenario")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--page", type=int, default=1000, help="the deep page reached by following next")
    parser.add_argument("--keep", action="store_true", help="keep the database (to investigate a slow query)")
    parser.add_argument("--reuse", action="store_true",
                        help="time the database a --keep run left, no load (and keep it)")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE the slowest query of a miss")
    args = parser.parse_args()

    if not args.reuse:
        _pg_admin(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        _pg_admin(f'CREATE DATABASE "{DATABASE}"')
    os.environ["DATABASE_URL"] = _pg_url(DATABASE)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmext.settings")
    os.environ.setdefault("DEBUG", "true")  # development secrets; settings.DEBUG is turned off below
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    try:
        run(args)
    finally:
        if not (args.keep or args.reuse):  # a reused database stays for the next --reuse
            from django.db import connections

            connections.close_all()
            _pg_admin(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


# ---------------------------------------------------------------------------------------- loading

def _step(label: str, started: float) -> float:
    now = time.perf_counter()
    print(f"  {label:52s} {now - started:7.1f}s   ({_load()})", flush=True)
    return now


def load(n: int) -> None:
    """The users, accounts, contacts, conversations, communications and participants, by SQL."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from contacts.models import Contact
    from conversations.models import Communication
    from integrations.models import ProviderAccount

    User = get_user_model()
    user = User.objects.create_user("bench", "bench@example.org", "bench-pw-123")
    Token.objects.create(user=user, key="b" * 40)
    accounts = [ProviderAccount(owner=user, provider="imap", display_name=f"Mailbox {i}",
                                external_address=f"box{i}@example.org") for i in range(OWN_ACCOUNTS)]
    teammates = [User.objects.create_user(f"mate{i}", f"mate{i}@example.org", "bench-pw-123") for i in range(3)]
    accounts += [ProviderAccount(owner=teammates[i % 3], provider="imap", display_name=f"Team box {i}",
                                 external_address=f"team{i}@example.org", sharing=TEAM_SHARING[i])
                 for i in range(TEAM_ACCOUNTS)]
    ProviderAccount.objects.bulk_create(accounts)
    account_ids = list(ProviderAccount.objects.order_by("pk").values_list("pk", flat=True))

    search_index = next(index for index in Communication._meta.indexes if index.name == "communication_search_idx")
    started = first = time.perf_counter()
    print(f"loading {n:,} communications ({_load()})", flush=True)
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '256MB'")
        cursor.execute("SELECT setseed(0.42)")
        cursor.execute('DROP INDEX "communication_search_idx"')
        cursor.execute(
            "INSERT INTO contacts_contact (name, created_from, created_at) "
            "SELECT 'Contact ' || i, 'email', now() FROM generate_series(1, %s) i", [CONTACTS])
        cursor.execute("SELECT min(id) FROM contacts_contact")
        first_contact = cursor.fetchone()[0]
        conversations = max(1, n // 3)
        cursor.execute(
            "INSERT INTO conversations_conversation (subject, channel, message_count, created_at, "
            "first_message_at, last_message_at) SELECT 'Thread ' || i, 'email', 3, now(), "
            "now() - (i || ' minutes')::interval, now() - (i || ' minutes')::interval "
            "FROM generate_series(1, %s) i", [conversations])
        cursor.execute("SELECT min(id) FROM conversations_conversation")
        first_conversation = cursor.fetchone()[0]
        started = _step(f"{CONTACTS:,} contacts, {conversations:,} conversations", started)
        # Words by a skewed draw (pow(random(), 2)): the vocabulary's first words are the common
        # ones. The inner selects name the outer row so that they are drawn again for each row.
        words = len(VOCABULARY)
        draw = f"w[1 + floor(pow(random(), 2) * {words})::int + 0 * g]"  # g: this select's aggregate
        cursor.execute(
            "INSERT INTO conversations_communication (account_id, conversation_id, provider_message_id, "
            "rfc_message_id, provider_thread_id, channel, direction, subject, body_text, body_html, snippet, "
            "sent_at, received_at, in_reply_to, \"references\", labels, delivery_status, raw_size, parse_warnings, "
            "created_at, updated_at) "
            "SELECT a[1 + i %% cardinality(a)], %s + i %% %s, 'mid:' || i, i || '@bench.example', '', "
            "CASE WHEN i %% 10 = 0 THEN 'sms' ELSE 'email' END, "
            "CASE WHEN i %% 3 = 0 THEN 'outbound' ELSE 'inbound' END, subject, body, '', left(body, 200), "
            "sent, sent, '', '[]', '[\"INBOX\"]', '', 2000 + length(body), '[]', now(), now() "
            "FROM (SELECT i, a, sent, "
            f"  (SELECT string_agg({draw}, ' ') FROM generate_series(1, 4 + i %% 3) g) AS subject, "
            f"  (SELECT string_agg({draw}, ' ') FROM generate_series(1, 40 + i %% 60) g) "
            f"    || CASE WHEN i %% 25000 = 7 THEN ' {RARE_WORD}' ELSE '' END AS body "
            "  FROM (SELECT i, %s::text[] AS w, %s::bigint[] AS a, "
            "        now() - random() * interval '5 years' AS sent FROM generate_series(1, %s) i) s) t",
            [first_conversation, conversations, VOCABULARY, account_ids, n])
        started = _step(f"{n:,} communications", started)
        # "from": a contact drawn with a skew (a few have thousands); "to": the account owner.
        cursor.execute(
            "INSERT INTO conversations_participant (communication_id, role, kind, address, display_name, "
            "contact_id, company_id, is_owner) "
            "SELECT id, 'from', 'email', 'person' || k || '@example.com', 'Contact ' || k, %s + k - 1, NULL, false "
            f"FROM (SELECT id, 1 + floor(pow(random(), 2) * {CONTACTS})::int AS k "
            "      FROM conversations_communication) c", [first_contact])
        cursor.execute(
            "INSERT INTO conversations_participant (communication_id, role, kind, address, display_name, "
            "contact_id, company_id, is_owner) "
            "SELECT c.id, 'to', 'email', a.external_address, '', NULL, NULL, true "
            "FROM conversations_communication c JOIN integrations_provideraccount a ON a.id = c.account_id")
        started = _step(f"{2 * n:,} participants", started)
        from integrations.accounts import recount_communications

        recount_communications()  # the rows came by SQL, past the ingest that keeps the counters
        started = _step("accounts' communication counts", started)
        from django.db import connection as conn

        with conn.schema_editor(atomic=False) as editor:
            editor.add_index(Communication, search_index)
        started = _step("search GIN index (communication_search_idx) built", started)
        cursor.execute("VACUUM ANALYZE")
        started = _step("VACUUM ANALYZE", started)
    print(f"loaded in {time.perf_counter() - first:.1f}s", flush=True)


# ---------------------------------------------------------------------------------------- timing

def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))]


def run(args: argparse.Namespace) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.test import APIClient

    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["testserver"]
    for line in _machine():
        print(line)
    if not args.reuse:
        call_command("migrate", verbosity=0)
        load(args.n)
    print(f"server  : {_server_version()}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM conversations_communication")
        total = cursor.fetchone()[0]
        cursor.execute("SELECT 1 FROM pg_indexes WHERE indexname = 'communication_search_idx'")
        indexed = cursor.fetchone() is not None
        cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('conversations_communication'))")
        size = cursor.fetchone()[0]
        # The timeline's contact: the one with the most communications below 3,000 (a busy correspondent).
        cursor.execute(
            "SELECT contact_id, count(*) FROM conversations_participant WHERE contact_id IS NOT NULL "
            "GROUP BY contact_id HAVING count(*) <= 3000 ORDER BY count(*) DESC LIMIT 1")
        contact_id, contact_count = cursor.fetchone()
        matching = {}
        for word in (TOP_WORD, COMMON_WORD):
            cursor.execute(
                "SELECT count(*) FROM conversations_communication WHERE to_tsvector('simple'::regconfig, "
                "left(coalesce(subject, '') || ' ' || coalesce(body_text, ''), 200000)) @@ "
                "plainto_tsquery('simple'::regconfig, %s)", [word])
            matching[word] = cursor.fetchone()[0]
        common_rows = matching[COMMON_WORD]
        cursor.execute(
            "SELECT count(*) FROM conversations_communication WHERE body_text LIKE %s", [f"%{RARE_WORD}%"])
        rare_rows = cursor.fetchone()[0]
    print(f"data    : {total:,} communications ({size} with indexes), search index "
          f"{'present' if indexed else 'MISSING'}; contact #{contact_id} in {contact_count:,}; "
          f"'{TOP_WORD}' in {matching[TOP_WORD]:,}, '{COMMON_WORD}' in {common_rows:,}, '{RARE_WORD}' in {rare_rows:,}")

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token " + "b" * 40)

    def get(url: str) -> dict:
        response = client.get(url)
        if response.status_code != 200:
            raise SystemExit(f"{url}: {response.status_code} {response.content[:300]!r}")
        return response.json()

    print(f"following next to page {args.page:,} ...", flush=True)
    started = time.perf_counter()
    url = "/api/v1/communications/"
    for _ in range(args.page - 1):
        url = get(url)["next"]
        if url is None:
            raise SystemExit("ran out of pages")
    walk = time.perf_counter() - started
    deep = url
    print(f"  {args.page - 1:,} pages followed in {walk:.1f}s ({walk / (args.page - 1) * 1000:.1f} ms a page)")

    scenarios = [
        ("communications list, page 1", "/api/v1/communications/", "list"),
        (f"communications list, page {args.page:,} (cursor)", deep, "list"),
        (f"contact timeline, page 1 ({contact_count:,} comms)", f"/api/v1/contacts/{contact_id}/timeline/",
         "timeline"),
        (f"q={COMMON_WORD} (common, {common_rows:,} rows)", f"/api/v1/communications/?q={COMMON_WORD}", "search"),
        (f"q={TOP_WORD} (most frequent, {matching[TOP_WORD]:,} rows)", f"/api/v1/communications/?q={TOP_WORD}",
         "search"),
        (f"q={RARE_WORD} (rare, {rare_rows:,} rows)", f"/api/v1/communications/?q={RARE_WORD}", "search"),
        (f"connector list ({OWN_ACCOUNTS} accounts, with counts)", "/api/v1/connectors/", "connectors"),
    ]
    load_before = _load()
    results = []
    for label, url, target in scenarios:
        for _ in range(args.warmup):
            get(url)
        with CaptureQueriesContext(connection) as captured:
            body = get(url)
        queries = captured.captured_queries
        timings = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            get(url)
            timings.append((time.perf_counter() - started) * 1000)
        rows = len(body["results"]) if isinstance(body, dict) and "results" in body else len(body)
        results.append((label, target, timings, len(queries), rows, queries))
        print(f"  {label}: done", flush=True)

    print()
    print(f"load    : before {load_before}; after {_load()}")
    print(f"{'scenario':48s} {'p50':>7s} {'p95':>7s} {'max':>7s} {'SQL':>4s} {'in SQL':>7s} {'rows':>5s}  target")
    for label, target, timings, count, rows, _queries in results:
        p95 = _percentile(timings, 0.95)
        limit = TARGETS_MS[target]
        verdict = "met" if p95 <= limit else "MISSED"
        print(f"{label:48s} {statistics.median(timings):5.1f}ms {p95:5.1f}ms {max(timings):5.1f}ms "
              f"{count:4d} {sum(float(q['time']) for q in _queries) * 1000:5.1f}ms {rows:5d}  p95 <= {limit} ms: {verdict}")
    print(f"(each: {args.repeat} timed requests after {args.warmup} warm-up; APIClient in-process, token auth; "
          f"SQL = queries per request, "
          f"in SQL = their time in one request)")

    if args.explain:
        for label, target, timings, _count, _rows, queries in results:
            if _percentile(timings, 0.95) <= TARGETS_MS[target]:
                continue
            slowest = max(queries, key=lambda q: float(q["time"]))
            print(f"\n--- {label}: slowest query ({float(slowest['time']) * 1000:.0f} ms)\n{slowest['sql']}\n")
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + slowest["sql"])
                print("\n".join(row[0] for row in cursor.fetchall()))


if __name__ == "__main__":
    main()
