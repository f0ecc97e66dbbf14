#!/usr/bin/env python
"""Admin changelist timings on a large table (default: 1,000,000 communications, PostgreSQL).

    .venv/bin/python bench/admin_changelist.py [--n 1000000] [--pg-url postgres://postgres@127.0.0.1:5432/postgres]

Fills a throwaway database (``crmext_bench_admin``, dropped before and after) with SQL
generate_series, then times the admin pages a staff member opens most, through Django's
test client, best of three. Prints figures; asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

DATABASE = "crmext_bench_admin"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the database (to investigate a slow page)")
    parser.add_argument("--pg-url", default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()

    import psycopg

    admin_url = args.pg_url
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        admin.execute(f"CREATE DATABASE {DATABASE}")
    os.environ["DATABASE_URL"] = admin_url.rsplit("/", 1)[0] + f"/{DATABASE}"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmext.settings")
    os.environ.setdefault("DEBUG", "true")  # development secrets; settings.DEBUG is turned off below
    try:
        run(args.n)
    finally:
        if args.keep:
            return
        from django.db import connections

        connections.close_all()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")


def run(n: int) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    settings.DEBUG = False
    settings.ALLOWED_HOSTS = ["testserver"]
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_superuser("bench", "bench@example.org", "bench-pw-123")
    from integrations.models import ProviderAccount

    ProviderAccount.objects.bulk_create(
        [ProviderAccount(owner=user, provider="imap", display_name=f"Mailbox {i}", external_address=f"box{i}@example.org")
         for i in range(20)]
    )
    started = time.perf_counter()
    with connection.cursor() as cursor:
        conversations = max(1, n // 3)
        cursor.execute(
            "INSERT INTO conversations_conversation (subject, channel, message_count, created_at, "
            "first_message_at, last_message_at) SELECT 'Thread ' || i, 'email', 3, now(), "
            "now() - (i || ' minutes')::interval, now() - (i || ' minutes')::interval "
            "FROM generate_series(1, %s) i",
            [conversations],
        )
        cursor.execute("SELECT min(id) FROM integrations_provideraccount")
        first_account = cursor.fetchone()[0]
        cursor.execute("SELECT min(id) FROM conversations_conversation")
        first_conversation = cursor.fetchone()[0]
        cursor.execute(
            "INSERT INTO conversations_communication (account_id, conversation_id, provider_message_id, "
            "rfc_message_id, provider_thread_id, channel, direction, subject, body_text, body_html, snippet, "
            "sent_at, received_at, in_reply_to, \"references\", labels, delivery_status, raw_size, parse_warnings, "
            "created_at, updated_at) "
            "SELECT %s + i %% 20, %s + i %% %s, 'mid:' || i, i || '@bench.example', '', "
            "CASE WHEN i %% 10 = 0 THEN 'sms' ELSE 'email' END, "
            "CASE WHEN i %% 3 = 0 THEN 'outbound' ELSE 'inbound' END, 'Subject ' || i, 'Body of ' || i, '', "
            "'Body of ' || i, now() - (i || ' minutes')::interval, now() - (i || ' minutes')::interval, '', "
            "'[]', '[\"INBOX\"]', '', 2000, '[]', now(), now() FROM generate_series(1, %s) i",
            [first_account, first_conversation, conversations, n],
        )
        cursor.execute("ANALYZE")
    print(f"filled {n:,} communications in {time.perf_counter() - started:.1f}s")

    client = Client()
    client.force_login(user)
    target_id = n // 2
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM conversations_communication ORDER BY id LIMIT 1 OFFSET %s", [target_id])
        communication_id = cursor.fetchone()[0]
    pages = [
        ("communications, unfiltered", "/admin/conversations/communication/"),
        ("communications, page 200", "/admin/conversations/communication/?p=200"),
        ("communications, channel=sms", "/admin/conversations/communication/?channel__exact=sms"),
        ("communications, outbound", "/admin/conversations/communication/?direction__exact=outbound"),
        ("communications, search Message-ID", f"/admin/conversations/communication/?q={target_id}@bench.example"),
        ("communications, date drill-down", "/admin/conversations/communication/?sent_at__year=2026"),
        ("communication change page", f"/admin/conversations/communication/{communication_id}/change/"),
        ("conversations, unfiltered", "/admin/conversations/conversation/"),
        ("accounts", "/admin/integrations/provideraccount/"),
    ]
    print(f"{'page':40s} {'best of 3':>10s}  status")
    slowest_queries = os.environ.get("BENCH_SHOW_QUERIES")
    for label, url in pages:
        if slowest_queries:
            from django.test.utils import CaptureQueriesContext

            with CaptureQueriesContext(connection) as captured:
                client.get(url)
            for query in sorted(captured.captured_queries, key=lambda q: -float(q["time"]))[:3]:
                print(f"    {float(query['time']) * 1000:6.0f} ms  {query['sql'][:160]}")
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            response = client.get(url)
            timings.append(time.perf_counter() - started)
        print(f"{label:40s} {min(timings) * 1000:8.0f} ms  {response.status_code}")


if __name__ == "__main__":
    main()
