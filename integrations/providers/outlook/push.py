"""Graph change notifications for Outlook accounts: subscriptions, their renewal, the webhooks.

Subscriptions: one per account, on ``me/messages`` for created and updated messages, with
``notificationUrl`` APP_PUBLIC_URL/webhooks/outlook and ``lifecycleNotificationUrl``
APP_PUBLIC_URL/webhooks/outlook/lifecycle (Graph must reach them over public https; push is on
only with OUTLOOK_PUSH). Each carries a random ``clientState`` that Graph sends back with every
notification: it is kept in the account's encrypted credentials (``client_state``), never in
push_state, never logged. A subscription on messages lasts at most 10,080 minutes (just under 7
days); the hourly push schedule (integrations.tasks.renew_push -> OutlookProvider.renew_push)
renews those lapsing within RENEW_BEFORE and creates missing ones. A notification only queues a
delta (request_sync): the sync reads what changed from the stored cursor, so a lost
notification delays mail, never loses it.

Endpoints (CSRF exempt, server to server, authenticated by the clientState):

- ``POST /webhooks/outlook``: with ``?validationToken=`` (Graph's handshake when a subscription
  is created) the token is echoed as text/plain. Otherwise the body is ``{"value": [notification,
  ...]}``: each notification's clientState is compared in constant time with its subscription's,
  a wrong one is logged (never its value) and ignored; every account with a genuine
  notification gets a delta queued, and the answer is 202 at once (403 when none was genuine).
- ``POST /webhooks/outlook/lifecycle``: the same handshake and check; ``reauthorizationRequired``
  queues a renewal, ``subscriptionRemoved`` queues a new subscription, ``missed`` queues a delta.

Malformed bodies get 400 and anything unexpected 503 (Graph retries): never a 500.
"""
from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import secrets
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django_q.tasks import async_task

from integrations.models import ProviderAccount
from integrations.providers.base import ProviderError
from integrations.providers.outlook.client import GraphClient, NotFound

logger = logging.getLogger(__name__)

SUBSCRIPTION_MINUTES = 10_070  # Graph's maximum for messages is 10,080 (7 days); ten minutes of slack
RENEW_BEFORE = dt.timedelta(days=1)
MAX_BODY_BYTES = 1024 * 1024  # Graph sends at most 1,000 notifications per POST, each well under 1 KB
MAX_VALIDATION_TOKEN = 1024
NOT_PUSHED = (ProviderAccount.Status.REAUTH_REQUIRED, ProviderAccount.Status.DISABLED)
LIFECYCLE_EVENTS = ("reauthorizationRequired", "subscriptionRemoved", "missed")
LIFECYCLE_TASK = "integrations.providers.outlook.push.handle_lifecycle"


# --- subscriptions ----------------------------------------------------------------------------

def notification_urls() -> tuple[str, str]:
    return (settings.APP_PUBLIC_URL + reverse("webhooks:outlook"),
            settings.APP_PUBLIC_URL + reverse("webhooks:outlook-lifecycle"))


def _expiry() -> dt.datetime:
    return timezone.now().replace(microsecond=0) + dt.timedelta(minutes=SUBSCRIPTION_MINUTES)


def _graph_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def subscribe(account: ProviderAccount) -> dt.datetime:
    """Renews the account's subscription, or creates it (a new clientState) when there is none or
    Graph no longer knows it; stores and returns the expiry. Raises the client's ProviderError.
    Writes only push_expires_at, push_state and (under the row lock) the credentials' client_state."""
    state = dict(account.push_state or {})
    expires = _expiry()
    client = GraphClient(account)
    try:
        if state.get("subscription_id"):
            try:
                client.request("PATCH", f"subscriptions/{state['subscription_id']}",
                               json_body={"expirationDateTime": _graph_time(expires)}, what="the subscription")
                _store(account, state, expires)
                logger.info("Outlook subscription of account %s renewed until %s", account.pk, expires.isoformat())
                return expires
            except NotFound:
                pass  # removed at Graph's end: a new one below
        client_state = secrets.token_urlsafe(32)
        notification_url, lifecycle_url = notification_urls()
        _set_client_state(account, client_state)  # first: Graph's first notification may beat our answer
        answer = client.request("POST", "subscriptions", what="a new subscription", json_body={
            "changeType": "created,updated", "resource": "me/messages", "notificationUrl": notification_url,
            "lifecycleNotificationUrl": lifecycle_url, "expirationDateTime": _graph_time(expires),
            "clientState": client_state,
        }).json()
    finally:
        client.close()
    subscription_id = str(answer.get("id") or "")
    if not subscription_id:
        raise ProviderError("Graph created a subscription without telling its id.")
    state = {"subscription_id": subscription_id, "resource": "me/messages", "notification_url": notification_url}
    _store(account, state, expires)
    logger.info("Outlook subscription of account %s created, until %s", account.pk, expires.isoformat())
    return expires


def _store(account: ProviderAccount, state: dict[str, Any], expires: dt.datetime) -> None:
    ProviderAccount.objects.filter(pk=account.pk).update(push_state=state, push_expires_at=expires)
    account.push_state, account.push_expires_at = state, expires


def _set_client_state(account: ProviderAccount, client_state: str) -> None:
    """Adds client_state to the stored credentials under the row lock, keeping whatever a token
    refresh wrote meanwhile (the same lock auth.access_token takes)."""
    with transaction.atomic():
        locked = ProviderAccount.objects.select_for_update().only("pk", "credentials").get(pk=account.pk)
        locked.credentials = {**(locked.credentials or {}), "client_state": client_state}
        locked.save(update_fields=["credentials", "updated_at"])
    account.credentials = locked.credentials


def subscribe_safely(account: ProviderAccount) -> bool:
    """subscribe() after a connect; never raises (the hourly renewal retries a failure)."""
    try:
        subscribe(account)
    except Exception as error:  # noqa: BLE001  the connect itself succeeded
        logger.warning("Could not subscribe Outlook account %s to change notifications (%s: %s); the hourly "
                       "renewal retries", account.pk, type(error).__name__,
                       error if isinstance(error, ProviderError) else "")
        return False
    return True


def renew_subscriptions(now: dt.datetime | None = None) -> int:
    """Renews (or creates) the subscription of every syncable Outlook account lapsing within
    RENEW_BEFORE; returns how many. Nothing without OUTLOOK_PUSH. One account's failure is logged
    and does not stop the others."""
    if not settings.OUTLOOK_PUSH:
        return 0
    horizon = (now or timezone.now()) + RENEW_BEFORE
    rows = ProviderAccount.objects.filter(provider="outlook").exclude(status__in=NOT_PUSHED).values_list(
        "pk", "push_expires_at", "push_state")
    due = [pk for pk, expires, state in rows.iterator()
           if expires is None or expires <= horizon or not (state or {}).get("subscription_id")]
    renewed = 0
    for pk in due:
        account = ProviderAccount.objects.filter(pk=pk).exclude(status__in=NOT_PUSHED).first()
        if account is None or not account.credentials:
            continue
        try:
            subscribe(account)
        except ProviderError as error:
            logger.warning("Could not renew the Outlook subscription of account %s: %s", account.pk, error)
            continue
        renewed += 1
    return renewed


def handle_lifecycle(account_id: int, event: str) -> str:
    """The queued work of a lifecycle event (see the module docstring). Returns what was done."""
    account = ProviderAccount.objects.filter(pk=account_id, provider="outlook").exclude(status__in=NOT_PUSHED).first()
    if account is None:
        return "no such syncable account"
    if event == "missed":
        return "delta queued" if _queue_delta(account) else "a sync is already due"
    if event == "subscriptionRemoved":
        account.push_state = {}  # gone at Graph's end: a new one, with a new secret
    subscribe(account)
    return f"subscription {account.push_state.get('subscription_id')} until {account.push_expires_at}"


# --- the endpoints ----------------------------------------------------------------------------

class Malformed(ValueError):
    """A body that is not a Graph notification; the message says what is wrong."""


def parse_notifications(body: bytes) -> list[dict[str, str]]:
    """The notifications of a POST body: ``[{"subscriptionId", "clientState", ...}]`` (pure).

    Every item must be an object with a string subscriptionId; clientState may be missing
    (then it can match nothing). Raises Malformed otherwise.
    """
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("The body is not JSON.") from None
    items = envelope.get("value") if isinstance(envelope, dict) else None
    if not isinstance(items, list) or not items:
        raise Malformed("The body has no value list.")
    notifications = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("subscriptionId"), str) \
                or not item["subscriptionId"] or len(item["subscriptionId"]) > 200:
            raise Malformed("A notification has no subscriptionId.")
        client_state = item.get("clientState")
        notifications.append({
            "subscriptionId": item["subscriptionId"],
            "clientState": client_state if isinstance(client_state, str) else "",
            "lifecycleEvent": str(item.get("lifecycleEvent") or ""),
        })
    return notifications


def _validation(request: HttpRequest) -> HttpResponse | None:
    """Graph's handshake: the validationToken echoed as text/plain (None: not a handshake)."""
    token = request.GET.get("validationToken")
    if token is None:
        return None
    if not token or len(token) > MAX_VALIDATION_TOKEN:
        return HttpResponse("Bad validationToken.", status=400, content_type="text/plain")
    return HttpResponse(token, status=200, content_type="text/plain; charset=utf-8")


def _authentic(notifications: list[dict[str, str]]) -> list[tuple[ProviderAccount, dict[str, str]]]:
    """The (account, notification) pairs whose clientState matches their subscription's."""
    by_subscription: dict[str, ProviderAccount] = {}
    for subscription_id in {item["subscriptionId"] for item in notifications}:
        account = ProviderAccount.objects.filter(provider="outlook", push_state__subscription_id=subscription_id).first()
        if account is not None:
            by_subscription[subscription_id] = account
    genuine = []
    for item in notifications:
        account = by_subscription.get(item["subscriptionId"])
        expected = str((account.credentials or {}).get("client_state") or "") if account is not None else ""
        # Compared even without an account (against a dummy): timing says nothing about which ids exist.
        matches = hmac.compare_digest(item["clientState"].encode(), (expected or secrets.token_urlsafe(32)).encode())
        if account is None or not expected or not matches:
            logger.warning("Refused an Outlook notification for subscription %s: %s", item["subscriptionId"][:80],
                           "unknown subscription" if account is None else "wrong clientState")
            continue
        genuine.append((account, item))
    return genuine


def _queue_delta(account: ProviderAccount) -> bool:
    from integrations.tasks import NotSyncable, SyncInProgress, request_sync  # tasks imports the providers

    try:
        request_sync(account, kind="delta")
    except (NotSyncable, SyncInProgress):
        return False
    return True


def _guarded(view: Any) -> Any:
    """POST only, CSRF exempt, size-capped, handshake first, and never a 500."""

    @csrf_exempt  # a server-to-server POST authenticated by its clientState, not a browser form
    @require_POST
    def wrapper(request: HttpRequest) -> HttpResponse:
        try:
            validation = _validation(request)
            if validation is not None:
                return validation
            length = request.headers.get("Content-Length", "")
            if length.isdecimal() and int(length) > MAX_BODY_BYTES:
                return HttpResponse("Not a Graph notification: too big.", status=400, content_type="text/plain")
            try:
                notifications = parse_notifications(request.body)
            except Malformed as error:
                logger.warning("Refused a malformed Outlook notification: %s", error)
                return HttpResponse(f"Not a Graph notification: {error}", status=400, content_type="text/plain")
            return view(notifications)
        except Exception:  # Graph retries a 503; the traceback stays in the log
            logger.exception("The Outlook webhook %s failed", request.path)
            return HttpResponse(status=503)

    return wrapper


@_guarded
def notifications(items: list[dict[str, str]]) -> HttpResponse:
    """POST /webhooks/outlook: queue a delta of each account notified (module docstring)."""
    genuine = _authentic(items)
    if not genuine:
        return HttpResponse("No notification had a valid clientState.", status=403, content_type="text/plain")
    for account in {account.pk: account for account, _item in genuine}.values():
        if account.status not in NOT_PUSHED:
            _queue_delta(account)
    return HttpResponse(status=202)


@_guarded
def lifecycle(items: list[dict[str, str]]) -> HttpResponse:
    """POST /webhooks/outlook/lifecycle: queue what each event asks for (module docstring)."""
    genuine = _authentic(items)
    if not genuine:
        return HttpResponse("No notification had a valid clientState.", status=403, content_type="text/plain")
    for account, item in genuine:
        event = item["lifecycleEvent"]
        if event not in LIFECYCLE_EVENTS:
            logger.info("Ignored Outlook lifecycle event %r of account %s", event[:40], account.pk)
            continue
        if event == "missed":
            _queue_delta(account)
        else:
            async_task(LIFECYCLE_TASK, account.pk, event, task_name=f"outlook {event} of account {account.pk}",
                       group="push")
    return HttpResponse(status=202)
