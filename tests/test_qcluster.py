"""End to end: a real django-q2 qcluster on Redis and PostgreSQL syncs IMAP accounts.

The cluster is a separate process, as in production; tasks reach it through Redis and it
writes to the same PostgreSQL test database.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.db import connection
from django.utils import timezone
from django_q.brokers.redis_broker import Redis as RedisBroker
from django_q.conf import Conf
from django_q.models import Task
from django_q.tasks import async_task

from conversations.models import Communication
from integrations.models import ProviderAccount, SyncRun
from tests.providers.imap_harness import ImapHarness

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture
def redis_url() -> str:
    try:
        redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {REDIS_URL} is required under CI: {error}")
        pytest.skip(f"Redis unreachable: {error}")
    return REDIS_URL


@pytest.fixture
def cluster(redis_url, monkeypatch, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the multi-process cluster test runs on PostgreSQL (the CI runs it there)")
    settings_dict = connection.settings_dict
    database_url = (f"postgres://{settings_dict['USER']}@{settings_dict['HOST'] or '127.0.0.1'}:"
                    f"{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}")
    name = f"test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "Q_CLUSTER_NAME": name,
           "Q_WORKERS": "2", "LOG_LEVEL": "WARNING"}
    log = open(tmp_path / "qcluster.log", "wb")  # a file, not a pipe: a full pipe would block the cluster
    process = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    monkeypatch.setattr(Conf, "REDIS", redis_url)
    monkeypatch.setattr(Conf, "PREFIX", name)  # the signing salt: both sides must agree
    broker = RedisBroker(list_key=name)
    try:
        yield broker
    finally:
        # The cluster's main process stops its workers itself (in under a second); a SIGTERM to
        # the whole group makes the workers die under it and the shutdown hang until the timeout.
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        try:
            os.killpg(process.pid, signal.SIGKILL)  # anything the main process left behind
        except ProcessLookupError:
            pass
        log.close()
        print((tmp_path / "qcluster.log").read_text()[-5000:])
        broker.delete_queue()


def wait_for(condition, timeout: float = 90, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_cluster_syncs_due_accounts_one_worker_per_account(cluster, imap_user, dovecot_server, user):
    first = ImapHarness(imap_user, user)
    first.add_messages(120)
    second_user = f"q{uuid.uuid4().hex[:8]}"
    dovecot_server.add_user(second_user, "pw-second")
    second = ImapHarness(type(imap_user)(second_user, "pw-second", imap_user.host, imap_user.port, dovecot_server),
                         user)
    second.add_messages(80)
    accounts = [first.make_account(), second.make_account()]
    ProviderAccount.objects.update(next_sync_at=timezone.now())

    # The scheduler's tick, sent through Redis like the cluster's own scheduler would.
    async_task("integrations.tasks.enqueue_due_syncs", broker=cluster)
    wait_for(lambda: SyncRun.objects.filter(status="succeeded").count() == 2, what="both accounts to sync")
    assert Communication.objects.filter(account=accounts[0]).count() == 120
    assert Communication.objects.filter(account=accounts[1]).count() == 80

    # Two syncs of one account at the same time: one account, one worker.
    first.add_messages(300)
    for _ in range(2):
        async_task("integrations.tasks.run_sync", accounts[0].pk, broker=cluster)
    try:
        wait_for(lambda: Task.objects.filter(func="integrations.tasks.run_sync").count() >= 4,
                 what="the run_sync results")
    except AssertionError:
        print(list(Task.objects.values_list("func", "args", "result", "success")))
        print(list(SyncRun.objects.values_list("account_id", "status", "kind", "fetched", "error")))
        raise
    results = [task.result for task in Task.objects.filter(func="integrations.tasks.run_sync",
                                                          args=(accounts[0].pk, ))]
    runs = list(SyncRun.objects.filter(account=accounts[0]).order_by("started_at"))
    for earlier, later in zip(runs, runs[1:]):
        assert earlier.finished_at is not None and earlier.finished_at <= later.started_at, "runs overlapped"
    assert any(str(r).startswith("succeeded") for r in results)
    assert Communication.objects.filter(account=accounts[0]).count() == 420
    assert all(run.status == "succeeded" for run in runs)
