"""The work behind triggers: firing after a batch commits, delivering with retries, redelivery
and test sends. Called by queued tasks (automation.tasks), the API and the admin alike.

Firing never runs in the sync's transaction: integrations.signals announces a batch after it
commits, automation.receivers queues ``fire`` through django-q2 with the new ids.
Nothing fires twice: a delivery is unique per (trigger, communication), a trigger's task
likewise (inserts that conflict are ignored). An attempt is claimed by a conditional update,
so a retry racing a redelivery, or the same task handed out twice, sends once.
"""
from __future__ import annotations

import datetime as dt
import logging
import random
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone
from django_q.tasks import async_task, schedule

from automation.models import Task, Trigger, WebhookDelivery
from automation.triggers import outbound, payloads
from automation.triggers.conditions import Facts, Matcher, MatcherIndex, compile_matcher
from conversations.models import Attachment, Communication, Participant
from conversations.permissions import can_view_all_content
from conversations.visibility import SHARED_LEVELS, Level
from integrations.models import ProviderAccount

logger = logging.getLogger(__name__)

DELIVER_TASK = "automation.tasks.deliver_webhook"
# Origins that bring old mail in bulk: they fire only the triggers that opt in.
BACKFILL_ORIGINS = ("backfill", "historical")
ATTEMPT_LOG_KEPT = 50
ERROR_LOGGED_CHARS = 500
PAYLOAD_FIELDS = ("id", "account_id", "provider_message_id", "rfc_message_id", "channel", "direction", "subject",
                  "snippet", "sent_at", "conversation_id")


# ------------------------------------------------------------------------------------ who sees what

def connector_level(user: Any, account: ProviderAccount) -> Level | None:
    """How much of ``account``'s communications ``user`` sees; None: nothing (private, not theirs)."""
    if account.owner_id == user.pk or can_view_all_content(user):
        return Level.EVERYTHING
    return SHARED_LEVELS.get(account.sharing)


def attachable_connectors(user: Any) -> QuerySet[ProviderAccount]:
    """The connectors ``user`` may name on a trigger: their own, and teammates' shared ones."""
    if can_view_all_content(user):
        return ProviderAccount.objects.all()
    return ProviderAccount.objects.filter(Q(owner_id=user.pk) | Q(sharing__in=list(SHARED_LEVELS)))


def triggers_for(account: ProviderAccount) -> QuerySet[Trigger]:
    """Enabled triggers listening to ``account``: naming it, or the owner's "any connector" ones."""
    return Trigger.objects.filter(enabled=True).filter(
        Q(connector_id=account.pk) | Q(connector__isnull=True, owner_id=account.owner_id))


# ------------------------------------------------------------------------------------ matching

def load_facts(communication_ids: Sequence[int]) -> list[Facts]:
    """Facts of the (not deleted) communications, in three queries whatever their number."""
    rows = list(Communication.objects.filter(pk__in=communication_ids, deleted_at__isnull=True).order_by("pk")
                .values_list("pk", "account_id", "channel", "direction", "subject", "body_text", "labels"))
    if not rows:
        return []
    ids = [row[0] for row in rows]
    people: dict[int, list[tuple[str, str, int | None, int | None]]] = {}
    for communication_id, role, address, contact_id, company_id in Participant.objects.filter(
            communication_id__in=ids).values_list("communication_id", "role", "address", "contact_id", "company_id"):
        people.setdefault(communication_id, []).append((role, address, contact_id, company_id))
    with_files = set(Attachment.objects.filter(communication_id__in=ids).values_list("communication_id", flat=True))
    facts = []
    for pk, account_id, channel, direction, subject, body_text, labels in rows:
        mine = people.get(pk, [])
        facts.append(Facts(
            id=pk, account_id=account_id, channel=channel, direction=direction,
            senders=frozenset(address.lower() for role, address, _c, _k in mine if role == Participant.Role.FROM),
            subject=(subject or "").lower(), body=(body_text or "").lower(),
            labels=frozenset(str(label).lower() for label in (labels or [])),
            contact_ids=frozenset(c for _r, _a, c, _k in mine if c is not None),
            company_ids=frozenset(k for _r, _a, _c, k in mine if k is not None),
            has_attachment=pk in with_files,
        ))
    return facts


def compile_triggers(account: ProviderAccount, triggers: Sequence[Trigger]) -> list[tuple[Trigger, Level, Matcher]]:
    compiled = []
    for trigger in triggers:
        level = connector_level(trigger.owner, account)
        if level is None:
            continue
        matcher = compile_matcher(trigger.pk, trigger.type, trigger.conditions or {}, level)
        if matcher is not None:
            compiled.append((trigger, level, matcher))
    return compiled


@dataclass
class FireOutcome:
    matched: int = 0
    deliveries: list[int] = field(default_factory=list)
    tasks: int = 0


def fire(account_id: int, communication_ids: Sequence[int], origin: str) -> FireOutcome:
    """Evaluates the account's triggers on these new communications and acts on each match:
    a pending delivery queued, or a task made. Safe to run twice on the same ids."""
    outcome = FireOutcome()
    account = ProviderAccount.objects.select_related("owner").filter(pk=account_id).first()
    if account is None:
        return outcome
    triggers = list(triggers_for(account).select_related("owner"))
    if origin in BACKFILL_ORIGINS:
        triggers = [trigger for trigger in triggers if trigger.include_backfill]
    compiled = compile_triggers(account, triggers)
    if not compiled:
        return outcome
    index = MatcherIndex([matcher for _trigger, _level, matcher in compiled])
    by_id = {trigger.pk: (trigger, level) for trigger, level, _matcher in compiled}
    matches: list[tuple[Trigger, Level, int]] = []
    for facts in load_facts(communication_ids):
        for trigger_id in index.matching(facts):
            trigger, level = by_id[trigger_id]
            matches.append((trigger, level, facts.id))
    outcome.matched = len(matches)
    hooks = [(trigger, pk) for trigger, _level, pk in matches if trigger.action == Trigger.Action.WEBHOOK]
    if hooks:
        WebhookDelivery.objects.bulk_create(
            [WebhookDelivery(trigger=trigger, communication_id=pk) for trigger, pk in hooks], ignore_conflicts=True)
        # Only the never-tried ones: a re-sync finds its earlier deliveries already past pending.
        fresh = WebhookDelivery.objects.filter(
            trigger_id__in={trigger.pk for trigger, _pk in hooks}, communication_id__in={pk for _t, pk in hooks},
            status=WebhookDelivery.Status.PENDING, attempts=0).values_list("pk", flat=True)
        outcome.deliveries = sorted(fresh)
        for delivery_id in outcome.deliveries:
            queue_delivery(delivery_id)
    tasks = [(trigger, level, pk) for trigger, level, pk in matches if trigger.action == Trigger.Action.TASK]
    if tasks:
        outcome.tasks = make_tasks(tasks)
    return outcome


# ------------------------------------------------------------------------------------ tasks

def make_tasks(matches: Sequence[tuple[Trigger, Level, int]]) -> int:
    """One task per (trigger, communication) from the trigger's template; existing ones are kept."""
    communications = Communication.objects.in_bulk({pk for _t, _l, pk in matches})
    senders: dict[int, tuple[str, int | None]] = {}
    for communication_id, address, contact_id in Participant.objects.filter(
            communication_id__in=list(communications), role=Participant.Role.FROM).values_list(
            "communication_id", "address", "contact_id"):
        senders.setdefault(communication_id, (address, contact_id))
    today = timezone.localdate()
    rows = []
    for trigger, level, pk in matches:
        communication = communications.get(pk)
        if communication is None:
            continue
        template = trigger.task_template or {}
        sender, contact_id = senders.get(pk, ("", None))
        values = {"subject": (communication.subject or "") if level >= Level.SUBJECT else "",
                  "sender": sender, "channel": communication.channel, "trigger": trigger.name}
        # string.Template, not str.format: a template cannot reach attributes ("{x.__class__}").
        title = string.Template(str(template.get("title") or trigger.name)).safe_substitute(values).strip()
        description = string.Template(str(template.get("description", ""))).safe_substitute(values)
        days = template.get("due_in_days")
        rows.append(Task(
            owner_id=trigger.owner_id, trigger=trigger, communication=communication,
            conversation_id=communication.conversation_id, contact_id=contact_id,
            title=(title or trigger.name)[:200], description=description,
            priority=template.get("priority") or Task._meta.get_field("priority").default,
            due=today + dt.timedelta(days=int(days)) if days is not None else None,
        ))
    existing = set(Task.objects.filter(trigger_id__in={row.trigger_id for row in rows},
                                       communication_id__in={row.communication_id for row in rows})
                   .values_list("trigger_id", "communication_id"))
    rows = [row for row in rows if (row.trigger_id, row.communication_id) not in existing]
    # The unique (trigger, communication) constraint settles a race with a concurrent run.
    Task.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


# ------------------------------------------------------------------------------------ delivery

def queue_delivery(delivery_id: int, at: dt.datetime | None = None) -> None:
    """Queues an attempt through django-q2: now, or (a retry) at ``at``."""
    if at is None:
        async_task(DELIVER_TASK, delivery_id, task_name=f"webhook delivery {delivery_id}", group="webhooks")
    else:
        schedule(DELIVER_TASK, delivery_id, name=None, next_run=at)


def backoff(attempts: int, retry_after: int | None = None) -> dt.timedelta:
    """Delay before the next attempt after ``attempts`` failed ones: exponential with jitter, capped;
    a receiver's Retry-After (429, 503) is honoured up to the cap."""
    base: float = settings.TRIGGERS_RETRY_BASE_SECONDS
    cap: float = settings.TRIGGERS_RETRY_MAX_SECONDS
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    delay *= random.uniform(0.8, 1.2)  # jitter: many failed deliveries do not all come back at once
    if retry_after is not None:
        delay = max(delay, float(retry_after))
    return dt.timedelta(seconds=min(cap, delay))


# What an attempt reads: the delivery, its trigger and owner (who sees what; the owner in full,
# permissions are asked of it), only the communication fields the payload shows (bodies can be
# large) and its connector's owner and sharing (the account's credentials are never needed).
DELIVERY_FIELDS = ("id", "trigger_id", "communication_id", "event", "attempts", "attempt_log")
TRIGGER_FIELDS = ("id", "owner_id", "enabled", "url", "signing")
ACCOUNT_FIELDS = ("id", "owner_id", "sharing")


class _AttemptLoader:
    """Claims a delivery and loads all an attempt needs: on PostgreSQL in one statement (an
    UPDATE ... RETURNING in a CTE, joined to the rows the payload needs), elsewhere in two (the
    conditional UPDATE, then the joined SELECT). The SQL is built once per connection from
    the models' metadata, and rows become model instances through the fields' own converters,
    as the ORM does, without compiling a select_related query on every attempt (over a
    millisecond of CPU each)."""

    def __init__(self, connection: Any) -> None:
        from django.contrib.auth import get_user_model

        quote, self.connection = connection.ops.quote_name, connection
        self.parts: list[tuple[type, tuple[str, ...], str]] = []  # (model, attnames, alias)
        user_model = get_user_model()
        for model, names, alias in (
                (WebhookDelivery, DELIVERY_FIELDS, "d"), (Trigger, TRIGGER_FIELDS, "t"),
                (user_model, tuple(f.attname for f in user_model._meta.concrete_fields), "u"),
                (Communication, tuple(Communication._meta.get_field(n).attname for n in PAYLOAD_FIELDS), "c"),
                (ProviderAccount, ACCOUNT_FIELDS, "a")):
            ordered = tuple(f.attname for f in model._meta.concrete_fields if f.attname in names)
            self.parts.append((model, ordered, alias))
        self.converters = [
            [converter for field in (model._meta.get_field(_field_name(model, name)) for name in names)
             for converter in [(field.get_col(alias), connection.ops.get_db_converters(field.get_col(alias))
                                + field.get_db_converters(connection))]]
            for model, names, alias in self.parts]
        columns = ", ".join(f"{alias}.{quote(model._meta.get_field(_field_name(model, name)).column)}"
                            for model, names, alias in self.parts for name in names)

        def table(model: type) -> str:
            return quote(model._meta.db_table)

        def col(model: type, name: str) -> str:
            return quote(model._meta.get_field(name).column)

        d, t, u, c, a = WebhookDelivery, Trigger, user_model, Communication, ProviderAccount
        self.select = (
            f"SELECT {columns} FROM {table(d)} d"
            f" INNER JOIN {table(t)} t ON t.{col(t, 'id')} = d.{col(d, 'trigger')}"
            f" INNER JOIN {table(u)} u ON u.{col(u, u._meta.pk.name)} = t.{col(t, 'owner')}"
            f" LEFT OUTER JOIN {table(c)} c ON c.{col(c, 'id')} = d.{col(d, 'communication')}"
            f" LEFT OUTER JOIN {table(a)} a ON a.{col(a, 'id')} = c.{col(c, 'account')}")
        self.claim = (
            f"UPDATE {table(d)} SET {col(d, 'status')} = %s, {col(d, 'claimed_at')} = %s"
            f" WHERE {col(d, 'id')} = %s AND (({col(d, 'status')} IN (%s, %s) AND ({col(d, 'next_attempt_at')} IS NULL"
            f" OR {col(d, 'next_attempt_at')} <= %s)) OR ({col(d, 'status')} = %s AND {col(d, 'claimed_at')} < %s))")
        self.one_statement = connection.vendor == "postgresql"
        if self.one_statement:
            self.claim_and_select = (f"WITH claimed AS ({self.claim} RETURNING {col(d, 'id')}) {self.select}"
                                     f" WHERE d.{col(d, 'id')} IN (SELECT {col(d, 'id')} FROM claimed)")
        self.select_one = f"{self.select} WHERE d.{col(d, 'id')} = %s"
        self.updates: dict[tuple[str, ...], str] = {}

    def __call__(self, delivery_id: int) -> WebhookDelivery | None:
        now = timezone.now()
        stale = now - dt.timedelta(seconds=settings.TRIGGERS_TIMEOUT_SECONDS * 4 + 60)
        adapt = self.connection.ops.adapt_datetimefield_value
        status = WebhookDelivery.Status
        params = [status.SENDING, adapt(now), delivery_id, status.PENDING, status.RETRYING, adapt(now),
                  status.SENDING, adapt(stale)]
        with self.connection.cursor() as cursor:
            if self.one_statement:
                cursor.execute(self.claim_and_select, params)
            else:
                cursor.execute(self.claim, params)
                if cursor.rowcount != 1:
                    return None
                cursor.execute(self.select_one, [delivery_id])
            row = cursor.fetchone()
        return None if row is None else self._instances(row)

    def record(self, delivery_id: int, values: dict[str, Any]) -> None:
        """One UPDATE of the delivery's row with ``values`` (field name: value), each prepared by its
        field as the ORM's update() would (JSON, datetimes)."""
        names = tuple(values)
        sql = self.updates.get(names)
        if sql is None:
            quote, meta = self.connection.ops.quote_name, WebhookDelivery._meta
            assignments = ", ".join(f"{quote(meta.get_field(name).column)} = %s" for name in names)
            sql = self.updates[names] = (f"UPDATE {quote(meta.db_table)} SET {assignments}"
                                         f" WHERE {quote(meta.pk.column)} = %s")
        params = [WebhookDelivery._meta.get_field(name).get_db_prep_save(value, self.connection)
                  for name, value in values.items()]
        with self.connection.cursor() as cursor:
            cursor.execute(sql, [*params, delivery_id])

    def _instances(self, row: tuple[Any, ...]) -> WebhookDelivery:
        alias, position, built = self.connection.alias, 0, []
        for (model, names, _alias), converters in zip(self.parts, self.converters, strict=True):
            values = []
            for expression, field_converters in converters:
                value = row[position]
                position += 1
                for converter in field_converters:
                    value = converter(value, expression, self.connection)
                values.append(value)
            built.append(None if values[0] is None else model.from_db(alias, names, values))
        delivery, trigger, owner, communication, account = built
        Trigger.owner.field.set_cached_value(trigger, owner)
        WebhookDelivery.trigger.field.set_cached_value(delivery, trigger)
        if communication is not None:
            Communication.account.field.set_cached_value(communication, account)
        WebhookDelivery.communication.field.set_cached_value(delivery, communication)
        return delivery


def _field_name(model: type, attname: str) -> str:
    return next(f.name for f in model._meta.concrete_fields if f.attname == attname)


def claim_and_load(delivery_id: int) -> WebhookDelivery | None:
    """Claims an attempt of the delivery and loads it with all the attempt needs (see
    _AttemptLoader); None if it is not due, taken, or gone."""
    return _loader()(delivery_id)


def _loader() -> _AttemptLoader:
    from django.db import connection

    loader = getattr(connection, "_webhook_attempt_loader", None)  # one per connection (thread)
    if loader is None:
        loader = connection._webhook_attempt_loader = _AttemptLoader(connection)
    return loader


def _payload(delivery: WebhookDelivery) -> tuple[bytes | None, str]:
    """(body, "") or (None, why it cannot be sent); one query (the participants) at most."""
    trigger = delivery.trigger
    if delivery.event == payloads.EVENT_TEST:
        return payloads.body(event=delivery.event, trigger_id=trigger.pk, delivery_id=delivery.pk,
                             communication=payloads.sample_communication(), level=Level.EVERYTHING), ""
    communication = delivery.communication if delivery.communication_id else None
    if communication is None:
        return None, "The communication was deleted."
    level = connector_level(trigger.owner, communication.account)
    if level is None:
        return None, "The connector is no longer shared with the trigger's owner."
    participants = list(communication.participants.all())
    data = payloads.communication_data(communication, participants, level)
    return payloads.body(event=delivery.event, trigger_id=trigger.pk, delivery_id=delivery.pk,
                         communication=data, level=level), ""


def _finish(delivery: WebhookDelivery, *, status: str, code: int | None, duration_ms: int | None, error: str,
            next_at: dt.datetime | None) -> None:
    """Records the attempt: one UPDATE of the row claimed."""
    now = timezone.now()
    outcome = {"succeeded": "succeeded", "failed": "failed"}.get(status, "retry")
    entry = {"at": now.isoformat(), "status_code": code, "duration_ms": duration_ms, "outcome": outcome,
             "error": error[:ERROR_LOGGED_CHARS]}
    delivery.attempt_log = [*(delivery.attempt_log or []), entry][-ATTEMPT_LOG_KEPT:]
    delivery.status, delivery.response_code, delivery.duration_ms = status, code, duration_ms
    delivery.error, delivery.next_attempt_at = error, next_at
    if status == WebhookDelivery.Status.SUCCEEDED:
        delivery.delivered_at = now
    delivery.updated_at = now
    values = {"attempts": delivery.attempts, "attempt_log": delivery.attempt_log, "status": status,
              "response_code": code, "duration_ms": duration_ms, "error": error, "next_attempt_at": next_at,
              "updated_at": now}
    if status == WebhookDelivery.Status.SUCCEEDED:
        values["delivered_at"] = now
    _loader().record(delivery.pk, values)


def _truncated(content: bytes) -> str:
    limit: int = settings.TRIGGERS_ERROR_BODY_CHARS
    text = content.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + "…"


def deliver(delivery_id: int) -> str:
    """One attempt of a delivery: claimed, sent, recorded; a retryable failure schedules the next.

    Retryable: network errors, timeouts, 5xx and 429, until TRIGGERS_MAX_ATTEMPTS. Final: 2xx
    (succeeded), any other status (3xx redirects are not followed), a refused target.
    """
    delivery = claim_and_load(delivery_id)
    if delivery is None:
        return "not due, or taken"
    trigger = delivery.trigger
    delivery.attempts += 1
    if not trigger.enabled and delivery.event != payloads.EVENT_TEST:
        _finish(delivery, status=WebhookDelivery.Status.FAILED, code=None, duration_ms=None,
                error="The trigger is disabled.", next_at=None)
        return "trigger disabled"
    content, problem = _payload(delivery)
    if content is None:
        _finish(delivery, status=WebhookDelivery.Status.FAILED, code=None, duration_ms=None, error=problem,
                next_at=None)
        return problem
    headers = payloads.signed_headers(trigger.secret, content, delivery_id=delivery.pk, event=delivery.event)
    retry_after: int | None = None
    try:
        reply = outbound.post(trigger.url, content, headers, timeout=settings.TRIGGERS_TIMEOUT_SECONDS,
                              max_bytes=settings.TRIGGERS_RESPONSE_MAX_BYTES)
    except outbound.TargetRefused as error:
        _finish(delivery, status=WebhookDelivery.Status.FAILED, code=None, duration_ms=None, error=str(error),
                next_at=None)
        logger.warning("Webhook delivery %s of trigger %s refused: %s", delivery.pk, trigger.pk, error)
        return "refused"
    except Exception as error:  # noqa: BLE001 - any network failure (OSError, HTTPException, TLS) is retryable
        code, duration_ms, error_text = None, None, f"{type(error).__name__}: {error}"
        retryable = True
    else:
        code, duration_ms = reply.status, reply.duration_ms
        retry_after = reply.retry_after
        if 200 <= code < 300:
            _finish(delivery, status=WebhookDelivery.Status.SUCCEEDED, code=code, duration_ms=duration_ms, error="",
                    next_at=None)
            return "succeeded"
        error_text = f"HTTP {code}: {_truncated(reply.body)}"
        if 300 <= code < 400:
            error_text = f"HTTP {code}: redirects are not followed (Location: {reply.location[:300]})"
        retryable = code >= 500 or code == 429
    if retryable and delivery.attempts < settings.TRIGGERS_MAX_ATTEMPTS:
        next_at = timezone.now() + backoff(delivery.attempts, retry_after)
        _finish(delivery, status=WebhookDelivery.Status.RETRYING, code=code, duration_ms=duration_ms,
                error=error_text, next_at=next_at)
        queue_delivery(delivery.pk, next_at)
        return f"retrying at {next_at.isoformat()}"
    _finish(delivery, status=WebhookDelivery.Status.FAILED, code=code, duration_ms=duration_ms, error=error_text,
            next_at=None)
    logger.info("Webhook delivery %s of trigger %s failed after %s attempt(s): %s", delivery.pk, trigger.pk,
                delivery.attempts, error_text[:200])
    return "failed"


class NotFinished(Exception):
    """A redelivery of a delivery still pending, sending or waiting to retry."""


def redeliver(delivery: WebhookDelivery) -> WebhookDelivery:
    """Starts a new round of attempts of a finished delivery (same id, same communication)."""
    changed = WebhookDelivery.objects.filter(pk=delivery.pk, status__in=WebhookDelivery.FINAL).update(
        status=WebhookDelivery.Status.PENDING, attempts=0, next_attempt_at=None, error="", updated_at=timezone.now())
    if not changed:
        raise NotFinished(f"Delivery {delivery.pk} is still under way.")
    queue_delivery(delivery.pk)
    delivery.refresh_from_db()
    return delivery


def send_test(trigger: Trigger) -> WebhookDelivery:
    """Queues a sample payload (event trigger.test) to the trigger's URL."""
    delivery = WebhookDelivery.objects.create(trigger=trigger, event=payloads.EVENT_TEST)
    queue_delivery(delivery.pk)
    return delivery


def last_deliveries(trigger_ids: Sequence[int]) -> dict[int, WebhookDelivery]:
    """The latest delivery of each trigger, in one query."""
    latest = WebhookDelivery.objects.filter(trigger_id=OuterRef("trigger_id"), pk__gt=OuterRef("pk"))
    rows = WebhookDelivery.objects.filter(trigger_id__in=trigger_ids).filter(~Exists(latest)).only(
        "pk", "trigger_id", "status", "response_code", "created_at", "updated_at", "attempts")
    return {row.trigger_id: row for row in rows}
