"""GET /health/: can this deployment do its work? The database, the task broker, the task cluster.

For load balancers and uptime checks: no authentication, and nothing in the answer beyond what
each check found (no host names, URLs, process ids or error text; failures are logged in full,
through the log filter that masks credentials).

Status 200 with "ok" when every check passes. 503 otherwise: "down" when the database or the
broker fails (nothing works), "degraded" when only the cluster is missing (pages and the API
answer, but no sync runs: scheduled and requested syncs wait in the queue).

The cluster check reads django-q2's heartbeat (``Stat``): every qcluster saves its status
every half second, with a 3-second expiry, in the broker (Redis) or, with the ORM broker, in
the Django cache named by Q_CLUSTER["cache"] (a cache every process of the deployment shares).
A cluster counts when its status is idle or working and its heartbeat is at most
HEARTBEAT_MAX_AGE old (a margin for clocks that differ between hosts).
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from django_q.brokers import Broker, get_broker
from django_q.conf import Conf
from django_q.status import Stat

logger = logging.getLogger(__name__)

HEARTBEAT_MAX_AGE = dt.timedelta(seconds=60)
# Seconds a Redis broker may take to connect and answer (its own default is to wait for the OS).
BROKER_TIMEOUT_SECONDS = 3

Result = dict[str, Any]


def _timed(name: str, check: Callable[[], Result]) -> Result:
    started = time.monotonic()
    try:
        result = {"ok": True, **check()}
    except Exception as error:  # any failure is the answer; its text goes to the log only
        logger.warning("Health check %s failed: %s: %s", name, type(error).__name__, error)
        result = {"ok": False, "error": f"unavailable ({type(error).__name__})"}
    result["ms"] = round((time.monotonic() - started) * 1000, 1)
    return result


def check_database() -> Result:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {}


def broker_for_health() -> Broker:
    """django-q2's configured broker, with a bounded wait when it is Redis."""
    broker = get_broker()
    pool = getattr(broker.connection, "connection_pool", None)
    if pool is not None:
        for option in ("socket_connect_timeout", "socket_timeout"):
            pool.connection_kwargs.setdefault(option, BROKER_TIMEOUT_SECONDS)
    return broker


def check_broker(broker: Broker) -> Result:
    if broker.ping() is False:
        raise ConnectionError("the broker did not answer its ping")
    broker.queue_size()  # the ORM broker's ping does not touch the database; this does
    return {"kind": type(broker).__name__.lower()}


def check_cluster(broker: Broker) -> Result:
    now = timezone.now()
    running = [str(Conf.IDLE), str(Conf.WORKING)]
    alive = [
        stat for stat in Stat.get_all(broker=broker)
        if str(stat.status) in running and now - stat.timestamp <= HEARTBEAT_MAX_AGE
    ]
    if not alive:
        logger.warning("Health check cluster failed: no qcluster heartbeat")
        return {
            "ok": False, "clusters": 0,
            "error": f"no task cluster is running (no heartbeat in the last {HEARTBEAT_MAX_AGE.seconds} s): "
                     "syncs are not processed; start one with 'manage.py qcluster'",
        }
    return {
        "clusters": len(alive),
        "workers": sum(len(stat.workers) for stat in alive),
        "heartbeat_age_seconds": round(max((now - stat.timestamp).total_seconds() for stat in alive), 1),
    }


def run_checks() -> tuple[str, dict[str, Result]]:
    """The overall status ("ok", "degraded", "down") and each check's result."""
    checks: dict[str, Result] = {"database": _timed("database", check_database)}
    try:
        broker = broker_for_health()
    except Exception as error:
        logger.warning("Health check broker failed: %s: %s", type(error).__name__, error)
        unavailable = {"ok": False, "error": f"unavailable ({type(error).__name__})"}
        checks["broker"], checks["cluster"] = unavailable, unavailable
    else:
        checks["broker"] = _timed("broker", lambda: check_broker(broker))
        if checks["broker"]["ok"]:
            checks["cluster"] = _timed("cluster", lambda: check_cluster(broker))
        else:
            checks["cluster"] = {"ok": False, "error": "unknown: the broker is unavailable"}
        close = getattr(broker.connection, "close", None)
        if callable(close):  # a Redis client made for this request
            close()
    if not (checks["database"]["ok"] and checks["broker"]["ok"]):
        return "down", checks
    return ("ok" if checks["cluster"]["ok"] else "degraded"), checks


@require_safe
@never_cache
def health_view(request: HttpRequest) -> JsonResponse:
    status, checks = run_checks()
    response = JsonResponse({"status": status, "checks": checks}, status=200 if status == "ok" else 503)
    # Each failed check is logged (a warning) above; Django's "Service Unavailable" error on
    # every probe of a load balancer would only repeat it.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response
