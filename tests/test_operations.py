"""/health/ (database, broker, cluster heartbeat) and /metrics/ (Prometheus, read from the database)."""
from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.db import OperationalError, connection
from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.signing import SignedPackage
from django_q.status import Stat, Status
from prometheus_client.parser import text_string_to_metric_families

from conversations.ingest import store_batch
from integrations.models import ProviderAccount, SyncRun
from tests.factories import message

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
TOKEN = "metrics-token-for-tests-0123456789abcdef"


# --- helpers ---------------------------------------------------------------------------------

@pytest.fixture
def orm_broker(settings, monkeypatch):
    """The ORM broker, with heartbeats in a cache of this test's own."""
    settings.CACHES = {**settings.CACHES, "django_q": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": uuid.uuid4().hex}}
    monkeypatch.setattr(Conf, "ORM", "default")
    monkeypatch.setattr(Conf, "CACHE", "django_q")
    return get_broker()


@pytest.fixture
def redis_broker(monkeypatch):
    try:
        redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {REDIS_URL} is required under CI: {error}")
        pytest.skip(f"Redis unreachable: {error}")
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", REDIS_URL)
    monkeypatch.setattr(Conf, "Q_STAT", f"django_q:{prefix}:cluster")
    broker = get_broker()
    yield broker
    for key in broker.connection.keys(f"django_q:{prefix}:*"):
        broker.connection.delete(key)


def heartbeat(broker, *, status=None, age: float = 0.5, workers: int = 2) -> None:
    """What a qcluster's sentinel saves every half second (django_q.status.Stat.save)."""
    stat = Status(pid=os.getpid(), cluster_id=uuid.uuid4())
    stat.status = Conf.IDLE if status is None else status
    stat.workers = list(range(100, 100 + workers))
    stat.timestamp = timezone.now() - dt.timedelta(seconds=age)
    broker.set_stat(Stat.get_key(stat.cluster_id), SignedPackage.dumps(stat, True), 3)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(client, **headers) -> dict:
    response = client.get("/metrics/", headers={"Authorization": f"Bearer {TOKEN}", **headers})
    assert response.status_code == 200, response.content
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


def value(families: dict, family: str, sample: str | None = None, **labels: str) -> float | None:
    for s in families[family].samples:
        if s.name == (sample or family) and s.labels == labels:
            return s.value
    return None


# --- /health/ --------------------------------------------------------------------------------

@pytest.mark.django_db
def test_health_is_ok_with_the_database_the_orm_broker_and_a_cluster(client, orm_broker):
    heartbeat(orm_broker, workers=2)
    response = client.get("/health/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert {name: check["ok"] for name, check in body["checks"].items()} == {
        "database": True, "broker": True, "cluster": True}
    assert body["checks"]["broker"]["kind"] == "orm"
    assert (body["checks"]["cluster"]["clusters"], body["checks"]["cluster"]["workers"]) == (1, 2)
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.django_db
def test_health_is_degraded_without_a_cluster_heartbeat(client, orm_broker):
    response = client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]
    assert body["checks"]["cluster"]["ok"] is False and body["checks"]["cluster"]["clusters"] == 0
    assert "no task cluster is running" in body["checks"]["cluster"]["error"]


@pytest.mark.django_db
def test_stale_or_stopped_clusters_do_not_count(client, orm_broker):
    heartbeat(orm_broker, age=300)  # a clock far behind, or a frozen sentinel
    heartbeat(orm_broker, status=Conf.STOPPING)
    response = client.get("/health/")
    assert response.status_code == 503 and response.json()["checks"]["cluster"]["clusters"] == 0


@pytest.mark.django_db
def test_health_is_ok_with_the_redis_broker(client, redis_broker):
    heartbeat(redis_broker)
    response = client.get("/health/")
    assert response.status_code == 200, response.content
    assert response.json()["checks"]["broker"]["kind"] == "redis"


@pytest.mark.django_db
def test_health_is_down_with_an_unreachable_broker_and_says_nothing_of_it(client, monkeypatch, caplog):
    port = closed_port()
    monkeypatch.setattr(Conf, "ORM", None)
    monkeypatch.setattr(Conf, "REDIS", f"redis://:broker-pw-secret@127.0.0.1:{port}/14")
    response = client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "down" and body["checks"]["database"]["ok"]
    assert body["checks"]["broker"] == {"ok": False, "error": "unavailable (ConnectionError)",
                                        "ms": body["checks"]["broker"]["ms"]}
    assert body["checks"]["cluster"]["ok"] is False
    text = response.content.decode()
    for detail in ("broker-pw-secret", "127.0.0.1", str(port), "redis://"):
        assert detail not in text
    assert "broker-pw-secret" not in caplog.text


@pytest.mark.django_db
def test_health_is_down_when_the_database_fails(client, orm_broker, monkeypatch):
    def broken() -> dict:
        raise OperationalError('connection to server at "db.internal" failed: password=pw-in-dsn')

    monkeypatch.setattr("crmext.health.check_database", broken)
    heartbeat(orm_broker)
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json()["status"] == "down"
    assert response.json()["checks"]["database"]["error"] == "unavailable (OperationalError)"
    assert "db.internal" not in response.content.decode() and "pw-in-dsn" not in response.content.decode()


@pytest.mark.django_db
def test_health_needs_no_login_and_answers_plain_http_probes(client, orm_broker, settings):
    settings.SECURE_SSL_REDIRECT = True
    heartbeat(orm_broker)
    assert client.get("/health/").status_code == 200  # not redirected to https
    assert client.get("/metrics/").status_code == 301  # everything else still is


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_health_sees_a_real_qcluster_in_another_process(client, tmp_path, monkeypatch):
    """The heartbeat crosses processes: a qcluster on the ORM broker, heartbeats in the file cache."""
    if connection.vendor != "postgresql":
        pytest.skip("a second process needs a database it can open: run on PostgreSQL")
    settings_dict = connection.settings_dict
    database_url = (f"postgres://{settings_dict['USER']}@{settings_dict['HOST'] or '127.0.0.1'}:"
                    f"{settings_dict['PORT'] or 5432}/{settings_dict['NAME']}")
    name = f"test-{uuid.uuid4().hex[:8]}"
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.update(DATABASE_URL=database_url, Q_CLUSTER_NAME=name, Q_WORKERS="1", LOG_LEVEL="WARNING")
    monkeypatch.setattr(Conf, "ORM", "default")
    monkeypatch.setattr(Conf, "CACHE", "django_q")  # the settings' file cache, shared with the cluster
    monkeypatch.setattr(Conf, "PREFIX", name)
    monkeypatch.setattr(Conf, "Q_STAT", f"django_q:{name}:cluster")
    assert client.get("/health/").json()["status"] == "degraded"
    log = open(tmp_path / "qcluster.log", "wb")
    process = subprocess.Popen([sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while (body := client.get("/health/").json())["status"] != "ok" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert body["status"] == "ok", (body, (tmp_path / "qcluster.log").read_text()[-3000:])
        assert body["checks"]["cluster"]["workers"] == 1
    finally:
        process.send_signal(signal.SIGTERM)  # the cluster stops its own processes
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
    deadline = time.monotonic() + 10
    while client.get("/health/").json()["status"] != "degraded" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert client.get("/health/").json()["status"] == "degraded"  # a stopped cluster no longer counts


# --- /metrics/ -------------------------------------------------------------------------------

def _run(account, status, *, seconds: float | None, started_ago: dt.timedelta = dt.timedelta(minutes=5),
         token: str = "", kind: str = SyncRun.Kind.DELTA) -> SyncRun:
    """A sync run as a worker leaves it; ``token`` tells the workers (processes) apart."""
    run = SyncRun.objects.create(account=account, kind=kind, status=status, claim_token=token)
    started = timezone.now() - started_ago
    finished = None if seconds is None else started + dt.timedelta(seconds=seconds)
    SyncRun.objects.filter(pk=run.pk).update(started_at=started, finished_at=finished)
    return run


@pytest.fixture
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN


@pytest.fixture
def imap_account(user) -> ProviderAccount:
    return ProviderAccount.objects.create(owner=user, provider="imap", display_name="Work",
                                          external_address="alice.secret.address@example.org")


@pytest.mark.django_db
def test_metrics_are_read_from_the_database(client, metrics_token, account, imap_account):
    now = timezone.now()
    ProviderAccount.objects.filter(pk=imap_account.pk).update(last_synced_at=now - dt.timedelta(seconds=120),
                                                              status="error")
    _run(imap_account, "succeeded", seconds=0.3)
    _run(imap_account, "succeeded", seconds=45)
    _run(imap_account, "failed", seconds=4000)
    _run(imap_account, "succeeded", seconds=5400, kind=SyncRun.Kind.INITIAL, started_ago=dt.timedelta(hours=2))
    _run(imap_account, "succeeded", seconds=20, started_ago=dt.timedelta(days=2))  # counted, outside the window
    _run(account, "abandoned", seconds=1800)
    _run(account, "running", seconds=None)
    store_batch(account, [message() for _ in range(3)])
    store_batch(imap_account, [message()])

    families = scrape(client)

    runs = "crmext_sync_runs"
    assert value(families, runs, f"{runs}_total", provider="imap", outcome="succeeded") == 4
    assert value(families, runs, f"{runs}_total", provider="imap", outcome="failed") == 1
    assert value(families, runs, f"{runs}_total", provider="mbox", outcome="abandoned") == 1
    assert value(families, runs, f"{runs}_total", provider="mbox", outcome="succeeded") == 0
    assert value(families, "crmext_sync_runs_active", provider="mbox", status="running") == 1
    messages = "crmext_messages_ingested"
    assert value(families, messages, f"{messages}_total", provider="mbox") == 3
    assert value(families, messages, f"{messages}_total", provider="imap") == 1
    assert value(families, "crmext_accounts", provider="imap", status="error") == 1
    assert value(families, "crmext_accounts", provider="mbox", status="connected") == 1
    assert value(families, "crmext_accounts", provider="imap", status="connected") == 0
    ages = families["crmext_account_cursor_age_seconds"].samples
    assert [(s.labels, round(s.value)) for s in ages] == [
        ({"account_id": str(imap_account.pk), "provider": "imap"}, 120)]  # never synced: no sample

    duration = "crmext_sync_duration_seconds"
    bucket = f"{duration}_bucket"
    delta_ok = {"provider": "imap", "kind": "delta", "outcome": "succeeded"}
    delta_failed = {"provider": "imap", "kind": "delta", "outcome": "failed"}
    assert value(families, duration, bucket, le="0.25", **delta_ok) == 0
    assert value(families, duration, bucket, le="0.5", **delta_ok) == 1
    assert value(families, duration, bucket, le="60.0", **delta_ok) == 2
    assert value(families, duration, bucket, le="+Inf", **delta_ok) == 2
    assert value(families, duration, bucket, le="3600.0", **delta_failed) == 0
    assert value(families, duration, bucket, le="7200.0", **delta_failed) == 1
    assert value(families, f"{duration}_gsum", **delta_ok) == pytest.approx(45.3)
    assert value(families, f"{duration}_gcount", **delta_failed) == 1
    backfill = {"provider": "imap", "kind": "initial", "outcome": "succeeded"}
    assert value(families, duration, bucket, le="+Inf", **backfill) == 1
    assert value(families, duration, bucket, le="3600.0", **backfill) == 0
    # Abandoned and running runs have no duration worth a histogram.
    assert {s.labels["outcome"] for s in families[duration].samples} == {"succeeded", "failed"}

    # Webhooks (automation, issue 12) are not installed: the family is there, empty.
    assert families["crmext_webhook_deliveries"].type == "counter"
    assert families["crmext_webhook_deliveries"].samples == []


@pytest.mark.django_db
def test_metrics_name_accounts_by_id_never_by_address(client, metrics_token, imap_account):
    ProviderAccount.objects.filter(pk=imap_account.pk).update(last_synced_at=timezone.now())
    text = client.get("/metrics/", headers={"Authorization": f"Bearer {TOKEN}"}).content.decode()
    assert f'account_id="{imap_account.pk}"' in text
    assert "alice" not in text and "example.org" not in text


@pytest.mark.django_db
def test_runs_of_every_worker_process_are_counted(client, metrics_token, account):
    # Two qcluster workers (claim tokens) each finish a run; any process answering the scrape sees both,
    # and a run finished between two scrapes shows in the next one: nothing is counted in memory.
    _run(account, "succeeded", seconds=2, token="worker-a")
    _run(account, "succeeded", seconds=3, token="worker-b")
    first = scrape(client)
    assert value(first, "crmext_sync_runs", "crmext_sync_runs_total", provider="mbox", outcome="succeeded") == 2
    _run(account, "failed", seconds=1, token="worker-a")
    second = scrape(client)
    assert value(second, "crmext_sync_runs", "crmext_sync_runs_total", provider="mbox", outcome="failed") == 1
    assert value(second, "crmext_sync_duration_seconds", "crmext_sync_duration_seconds_bucket",
                 provider="mbox", kind="delta", outcome="succeeded", le="+Inf") == 2


@pytest.mark.django_db
def test_webhook_deliveries_are_counted_from_the_model_once_it_exists(client, metrics_token, account, monkeypatch):
    # Stand-in for automation.WebhookDelivery: any model with a status field.
    monkeypatch.setattr("crmext.metrics.WEBHOOK_DELIVERY_MODEL", ("integrations", "SyncRun"))
    _run(account, "succeeded", seconds=1)
    _run(account, "failed", seconds=1)
    _run(account, "failed", seconds=1)
    families = scrape(client)
    name = "crmext_webhook_deliveries"
    assert value(families, name, f"{name}_total", outcome="failed") == 2
    assert value(families, name, f"{name}_total", outcome="succeeded") == 1


@pytest.mark.django_db
def test_metrics_need_the_bearer_token(client, metrics_token, settings):
    settings.DEBUG = True  # the token is required even in DEBUG once it is set
    assert client.get("/metrics/").status_code == 401
    assert client.get("/metrics/").headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics/", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    assert client.get("/metrics/", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert client.get("/metrics/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


@pytest.mark.django_db
def test_without_a_token_metrics_are_served_only_in_debug(client, settings):
    settings.METRICS_TOKEN = ""
    settings.DEBUG = False
    refused = client.get("/metrics/")
    assert refused.status_code == 403 and b"METRICS_TOKEN" in refused.content
    settings.DEBUG = True
    assert client.get("/metrics/").status_code == 200


@pytest.mark.django_db
def test_metrics_speak_openmetrics_when_asked(client, metrics_token):
    response = client.get("/metrics/", headers={"Authorization": f"Bearer {TOKEN}",
                                                "Accept": "application/openmetrics-text; version=1.0.0"})
    assert response["Content-Type"].startswith("application/openmetrics-text")
    assert response.content.decode().rstrip().endswith("# EOF")
    plain = client.get("/metrics/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert plain["Content-Type"].startswith("text/plain; version=0.0.4")


def test_a_short_metrics_token_stops_start_up_without_echoing_it():
    env = {**os.environ, "DEBUG": "true", "METRICS_TOKEN": "short-token"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0 and "METRICS_TOKEN must be at least 32 characters" in result.stderr
    assert "short-token" not in result.stderr
