"""GET /metrics/: the Prometheus text format, every figure read from the database at scrape time.

Syncs run in qcluster worker processes (several, on several hosts); the web process that answers
the scrape runs none. Counters kept inside processes would each hold one worker's share, so
``DatabaseCollector`` asks the database instead, with a fixed handful of aggregate queries per
scrape (GROUP BY over sync runs, communications and webhook deliveries; one row per account).
The counts scan their tables, so a scrape costs in proportion to them: about 1.5 s with a
million sync runs and a million communications on PostgreSQL (two cores). Scrape every minute
or so, not every few seconds.

Families (labels):
  crmext_sync_runs_total (provider, outcome)       counter: finished runs (succeeded, failed, abandoned)
  crmext_sync_runs_active (provider, status)       gauge: runs queued or running now
  crmext_messages_ingested_total (provider)        counter: communications stored (soft-deleted included)
  crmext_webhook_deliveries_total (outcome)        counter: automation's WebhookDelivery rows by outcome;
                                                   the family is there, without samples, until that model exists
  crmext_accounts (provider, status)               gauge: accounts per health state
  crmext_account_cursor_age_seconds (account_id, provider)
                                                   gauge: seconds since the account's last successful sync;
                                                   no sample for an account never synced
  crmext_sync_duration_seconds (provider, kind, outcome)
                                                   gauge histogram: durations of the runs that started in the
                                                   last DURATION_WINDOW and have finished (succeeded or failed)

The counters count rows, so they only drop when rows are deleted (an account and its history),
which Prometheus takes for a counter reset. The duration histogram is a sliding window, not a
counter: read it with histogram_quantile() as it is (no rate()); its window keeps the query on
the runs index, whatever the age of the installation.

Access: with METRICS_TOKEN set, only requests with ``Authorization: Bearer <token>``; without it,
only in DEBUG (a production server without a token serves no metrics).
"""
from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Iterable, Iterator

from django.apps import apps
from django.conf import settings
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from conversations.models import Communication
from integrations.models import ProviderAccount, SyncRun
from integrations.providers.registry import PROVIDERS

FINISHED = (SyncRun.Status.SUCCEEDED, SyncRun.Status.FAILED, SyncRun.Status.ABANDONED)
# Upper bounds in seconds: a delta with nothing new takes well under a second, a first backfill hours.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
DURATION_WINDOW = dt.timedelta(hours=24)
# Outgoing webhooks are automation's (issue 12); read only if that model is installed, grouped by
# the first of these fields it has. Nothing below automation may import it.
WEBHOOK_DELIVERY_MODEL = ("automation", "WebhookDelivery")
WEBHOOK_OUTCOME_FIELDS = ("outcome", "status")


class DatabaseCollector(Collector):
    """Reads every figure from the database when collected (once per scrape)."""

    def collect(self) -> Iterator[Metric]:
        now = timezone.now()
        accounts = list(
            ProviderAccount.objects.order_by("pk").values_list("pk", "provider", "status", "last_synced_at")
        )
        providers = sorted(set(PROVIDERS) | {provider for _pk, provider, _status, _synced in accounts})
        yield from self._sync_runs(providers)
        yield self._messages(providers)
        yield self._webhook_deliveries()
        yield from self._accounts(providers, accounts, now)
        yield self._durations(now)

    def _sync_runs(self, providers: list[str]) -> Iterator[Metric]:
        finished = CounterMetricFamily("crmext_sync_runs", "Finished sync runs by provider and outcome.",
                                       labels=["provider", "outcome"])
        active = GaugeMetricFamily("crmext_sync_runs_active", "Sync runs queued or running now.",
                                   labels=["provider", "status"])
        rows = SyncRun.objects.values_list("account__provider", "status").annotate(n=Count("pk")).order_by()
        counts = {(provider, status): n for provider, status, n in rows}
        active_statuses = [s for s in SyncRun.Status.values if s not in FINISHED]
        for provider in providers:
            for status in FINISHED:
                finished.add_metric([provider, status], counts.get((provider, status), 0))
            for status in active_statuses:
                active.add_metric([provider, status], counts.get((provider, status), 0))
        yield finished
        yield active

    def _messages(self, providers: list[str]) -> Metric:
        family = CounterMetricFamily("crmext_messages_ingested", "Communications stored, by provider.",
                                     labels=["provider"])
        counts = dict(Communication.objects.values_list("account__provider").annotate(n=Count("pk")).order_by())
        for provider in providers:
            family.add_metric([provider], counts.get(provider, 0))
        return family

    def _webhook_deliveries(self) -> Metric:
        family = CounterMetricFamily("crmext_webhook_deliveries", "Outgoing webhook calls, by outcome.",
                                     labels=["outcome"])
        for outcome, n in webhook_delivery_counts():
            family.add_metric([outcome], n)
        return family

    def _accounts(self, providers: list[str], accounts: Iterable[tuple], now: dt.datetime) -> Iterator[Metric]:
        states = GaugeMetricFamily("crmext_accounts", "Connected accounts per provider and health state.",
                                   labels=["provider", "status"])
        ages = GaugeMetricFamily("crmext_account_cursor_age_seconds",
                                 "Seconds since the account's last successful sync (none if never synced).",
                                 labels=["account_id", "provider"])
        counts: dict[tuple[str, str], int] = {}
        for pk, provider, status, last_synced_at in accounts:
            counts[provider, status] = counts.get((provider, status), 0) + 1
            if last_synced_at is not None:
                ages.add_metric([str(pk), provider], max(0.0, (now - last_synced_at).total_seconds()))
        for provider in providers:
            for status in ProviderAccount.Status.values:
                states.add_metric([provider, status], counts.get((provider, status), 0))
        yield states
        yield ages

    def _durations(self, now: dt.datetime) -> Metric:
        family = GaugeHistogramMetricFamily(
            "crmext_sync_duration_seconds",
            f"Durations of the sync runs started in the last {DURATION_WINDOW.total_seconds() / 3600:g} hours "
            "that finished, by provider, kind and outcome (a sliding window: no rate()).",
            labels=["provider", "kind", "outcome"],
        )
        buckets = {f"le{i}": Count("pk", filter=Q(duration__lte=dt.timedelta(seconds=bound)))
                   for i, bound in enumerate(DURATION_BUCKETS)}
        rows = (
            SyncRun.objects.filter(status__in=(SyncRun.Status.SUCCEEDED, SyncRun.Status.FAILED),
                                   started_at__gte=now - DURATION_WINDOW, finished_at__isnull=False)
            .annotate(duration=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField()))
            .values("account__provider", "kind", "status")
            .annotate(count=Count("pk"), total=Sum("duration"), **buckets)
            .order_by("account__provider", "kind", "status")
        )
        # Only the combinations that had runs: a backfill's hours and a delta's seconds are
        # different distributions, hence the kind label, and most combinations are empty.
        for row in rows:
            cumulative = [(floatToGoString(bound), row[f"le{i}"]) for i, bound in enumerate(DURATION_BUCKETS)]
            cumulative.append(("+Inf", row["count"]))
            total = row["total"].total_seconds() if row["total"] is not None else 0.0
            family.add_metric([row["account__provider"], row["kind"], row["status"]], cumulative, total)
        return family


def webhook_delivery_counts() -> list[tuple[str, int]]:
    """(outcome, deliveries) from automation's WebhookDelivery; empty while that model is not installed."""
    try:
        model = apps.get_model(*WEBHOOK_DELIVERY_MODEL)
    except LookupError:
        return []
    names = {field.name for field in model._meta.get_fields()}
    field = next((name for name in WEBHOOK_OUTCOME_FIELDS if name in names), None)
    if field is None:
        return [("unknown", model._default_manager.count())]
    rows = model._default_manager.values_list(field).annotate(n=Count("pk")).order_by()
    return sorted((str(outcome), n) for outcome, n in rows)


registry = CollectorRegistry()
registry.register(DatabaseCollector())


def authorized(request: HttpRequest) -> HttpResponse | None:
    """None if the request may read the metrics, else the response that refuses it."""
    token: str = settings.METRICS_TOKEN
    if not token:
        if settings.DEBUG:
            return None
        return HttpResponse("Metrics are off: set METRICS_TOKEN and scrape with 'Authorization: Bearer <token>'.\n",
                            status=403, content_type="text/plain")
    scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(supplied.strip().encode(), token.encode()):
        return None
    response = HttpResponse("A valid bearer token is required.\n", status=401, content_type="text/plain")
    response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response


@require_safe
@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    refusal = authorized(request)
    if refusal is not None:
        return refusal
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry), content_type=content_type)
