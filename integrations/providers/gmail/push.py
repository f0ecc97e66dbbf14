"""Gmail push: users.watch on a Pub/Sub topic, its daily renewal, and the push endpoint.

Watch: ``start_watch`` asks Gmail to publish a notification to settings.GMAIL_PUBSUB_TOPIC at
every change of the mailbox. No labelIds: the delta sync reads the whole history (every
label, archived mail, sent mail, label changes, deletions), so a notification is wanted for
all of it; Google caps notifications at one a second per mailbox, and a notification that
is stale or arrives while a sync is queued costs one query here. A watch lapses after 7 days:
``renew_watches`` (run hourly by the provider-agnostic integrations.tasks.renew_push) renews
every watch lapsing within RENEW_BEFORE, as Google recommends daily, and starts the missing
ones. Push only hurries syncs: every account still syncs on its interval, so a lost
notification or a lapsed watch delays mail, never loses it.

The endpoint ``POST /webhooks/gmail/pubsub`` (a Pub/Sub push subscription with OIDC
authentication): the bearer token is verified with google-auth against
GOOGLE_OIDC_CERTS_URL (cached, so an answer takes milliseconds): signature, expiry,
audience GMAIL_PUBSUB_AUDIENCE, issuer Google, and email GMAIL_PUBSUB_SERVICE_ACCOUNT
(verified). The message's data is ``{"emailAddress", "historyId"}``; every Gmail account of
that address whose stored cursor is older gets a delta queued (integrations.tasks.request_sync).
Answers: 204 done (also for an unknown address, or nothing to do), 401 bad token, 400
malformed body, 503 when the certs cannot be fetched or something unexpected fails (Pub/Sub
retries a non-2xx; never a 500 with a traceback). No token is ever logged.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import google.auth.exceptions
import google.auth.transport
import google.auth.transport.requests
import requests
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from google.oauth2 import id_token

from integrations.models import ProviderAccount
from integrations.providers.base import ProviderError
from integrations.providers.gmail.client import GmailClient

logger = logging.getLogger(__name__)

# A watch lapsing within this is renewed (it lasts 7 days; Google recommends renewing daily).
RENEW_BEFORE = dt.timedelta(days=1)
GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
MAX_BODY_BYTES = 64 * 1024  # a push is a few hundred bytes; anything far bigger is not one
CERTS_TIMEOUT_SECONDS = 10
NOT_WATCHED = (ProviderAccount.Status.REAUTH_REQUIRED, ProviderAccount.Status.DISABLED)


# --- watch ------------------------------------------------------------------------------------

def start_watch(account: ProviderAccount) -> dt.datetime:
    """users.watch of the account's mailbox on GMAIL_PUBSUB_TOPIC; stores and returns the expiry.

    Raises the client's ProviderError (and ValueError when no topic is configured). Writes only
    push_expires_at and push_state, so it is safe while a sync of the account runs.
    """
    topic = settings.GMAIL_PUBSUB_TOPIC
    if not topic:
        raise ValueError("GMAIL_PUBSUB_TOPIC is not set: Gmail push is off.")
    answer = GmailClient(account).watch(topic)
    try:
        expires = dt.datetime.fromtimestamp(int(answer["expiration"]) / 1000, tz=dt.UTC)
    except (KeyError, TypeError, ValueError):
        raise ProviderError("Gmail's answer to users.watch had no readable expiration.") from None
    state = {"topic": topic, "history_id": str(answer.get("historyId") or "")}
    ProviderAccount.objects.filter(pk=account.pk).update(push_expires_at=expires, push_state=state)
    account.push_expires_at, account.push_state = expires, state
    logger.info("Gmail push watch of account %s runs until %s", account.pk, expires.isoformat())
    return expires


def start_watch_safely(account: ProviderAccount) -> bool:
    """start_watch after a connect or an enrollment, when push is configured; never raises.

    A failure is logged and left to the renewal schedule (the account syncs on its interval
    meanwhile): a watch must never fail a connect. Returns whether a watch was started.
    """
    if not settings.GMAIL_PUBSUB_TOPIC:
        return False
    try:
        start_watch(account)
    except Exception as error:  # noqa: BLE001  anything: the connect itself succeeded
        logger.warning("Could not start Gmail push for account %s (%s: %s); the hourly renewal retries",
                       account.pk, type(error).__name__, error if isinstance(error, ProviderError) else "")
        return False
    return True


def renew_watches(now: dt.datetime | None = None) -> int:
    """Renews the watch of every syncable Gmail account lapsing within RENEW_BEFORE, and starts
    the missing ones (and those on another topic); returns how many were (re)started.

    Accounts waiting for re-authentication or disabled are skipped. Without GMAIL_PUBSUB_TOPIC
    it does nothing. One account's failure is logged and does not stop the others.
    """
    topic = settings.GMAIL_PUBSUB_TOPIC
    if not topic:
        return 0
    horizon = (now or timezone.now()) + RENEW_BEFORE
    # Decided in Python over three small columns: JSON key lookups treat a missing key
    # differently on SQLite and PostgreSQL.
    rows = (ProviderAccount.objects.filter(provider="gmail").exclude(status__in=NOT_WATCHED)
            .values_list("pk", "push_expires_at", "push_state"))
    due = [pk for pk, expires, state in rows.iterator()
           if expires is None or expires <= horizon or (state or {}).get("topic") != topic]
    renewed = 0
    for pk in due:
        account = ProviderAccount.objects.filter(pk=pk).exclude(status__in=NOT_WATCHED).first()
        if account is None or not account.credentials:
            continue
        try:
            start_watch(account)
        except (ProviderError, ValueError) as error:
            logger.warning("Could not renew Gmail push for account %s: %s", account.pk, error)
            continue
        renewed += 1
    if renewed:
        logger.info("Renewed %s Gmail push watch(es)", renewed)
    return renewed


# --- the push endpoint ------------------------------------------------------------------------

class Malformed(ValueError):
    """A push body that is not a Gmail notification; the message says what is wrong."""


def parse_notification(body: bytes) -> tuple[str, int]:
    """(emailAddress lower-cased, historyId) of a Pub/Sub push body; Malformed otherwise.

    Pure: ``{"message": {"data": base64(JSON {"emailAddress", "historyId"}), ...}, "subscription"}``.
    The data is decoded tolerantly (standard or URL-safe alphabet, padding optional).
    """
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise Malformed("The body is not JSON.") from None
    message = envelope.get("message") if isinstance(envelope, dict) else None
    data = message.get("data") if isinstance(message, dict) else None
    if not isinstance(data, str) or not data:
        raise Malformed("The body has no message.data.")
    text = data.strip().replace("-", "+").replace("_", "/")
    try:
        decoded = json.loads(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise Malformed("message.data is not base64-encoded JSON.") from None
    if not isinstance(decoded, dict):
        raise Malformed("message.data is not a JSON object.")
    address, history_id = decoded.get("emailAddress"), decoded.get("historyId")
    if not isinstance(address, str) or "@" not in address or len(address) > 320:
        raise Malformed("message.data has no emailAddress.")
    if isinstance(history_id, bool) or not isinstance(history_id, (int, str)) or not str(history_id).isdecimal() \
            or len(str(history_id)) > 20:
        raise Malformed("message.data has no historyId (a whole number).")
    return address.strip().lower(), int(history_id)


class _CachedRequest(google.auth.transport.Request):
    """A google-auth transport that keeps GET answers (the OIDC certs) for their Cache-Control
    max-age (else DEFAULT_TTL), so verifying a push token costs no round trip most of the time."""

    DEFAULT_TTL = 300.0
    MAX_TTL = 6 * 3600.0

    def __init__(self) -> None:
        self._inner = google.auth.transport.requests.Request(session=requests.Session())
        self._cache: dict[str, tuple[float, float, Any]] = {}  # url -> (fetched at, expires at, response)
        self._lock = threading.Lock()

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Mapping[str, str] | None = None,
                 timeout: float | None = None, **kwargs: Any) -> Any:
        if method != "GET":
            return self._inner(url, method=method, body=body, headers=headers, timeout=timeout, **kwargs)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(url)
        if cached is not None and cached[1] > now:
            return cached[2]
        response = self._inner(url, method="GET", headers=headers, timeout=timeout or CERTS_TIMEOUT_SECONDS)
        if response.status == 200:
            with self._lock:
                self._cache[url] = (now, now + self._ttl(response.headers), response)
        return response

    def _ttl(self, headers: Mapping[str, str]) -> float:
        control = next((v for k, v in headers.items() if k.lower() == "cache-control"), "")
        for part in control.split(","):
            name, _, value = part.strip().partition("=")
            if name.lower() == "max-age" and value.isdigit():
                return min(float(value), self.MAX_TTL)
        return self.DEFAULT_TTL

    def age(self, url: str) -> float | None:
        with self._lock:
            cached = self._cache.get(url)
        return None if cached is None else time.monotonic() - cached[0]

    def forget(self, url: str) -> None:
        with self._lock:
            self._cache.pop(url, None)


_certs_request = _CachedRequest()
# A token signed with a key we have not seen may follow Google's key rotation: the certs are
# fetched again, at most this often.
REFETCH_AFTER_SECONDS = 60.0


class BadToken(Exception):
    """The push's bearer token is missing or fails verification (the message names the check, not the token)."""


def verify_push_token(authorization: str | None) -> Mapping[str, Any]:
    """The verified claims of the ``Authorization: Bearer`` OIDC token; BadToken otherwise.

    google.auth.exceptions.TransportError when the certs cannot be fetched (not the sender's fault).
    """
    audience, sender = settings.GMAIL_PUBSUB_AUDIENCE, settings.GMAIL_PUBSUB_SERVICE_ACCOUNT
    if not audience or not sender:
        raise BadToken("Gmail push is not configured (GMAIL_PUBSUB_AUDIENCE and GMAIL_PUBSUB_SERVICE_ACCOUNT).")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise BadToken("no bearer token")
    certs_url = settings.GOOGLE_OIDC_CERTS_URL
    try:
        claims = _verify(token.strip(), audience, certs_url)
    except (ValueError, google.auth.exceptions.GoogleAuthError) as error:
        if isinstance(error, google.auth.exceptions.TransportError):
            raise
        age = _certs_request.age(certs_url)
        if age is None or age < REFETCH_AFTER_SECONDS:
            raise BadToken(_reason(error)) from None
        _certs_request.forget(certs_url)
        try:
            claims = _verify(token.strip(), audience, certs_url)
        except google.auth.exceptions.TransportError:
            raise
        except (ValueError, google.auth.exceptions.GoogleAuthError) as again:
            raise BadToken(_reason(again)) from None
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise BadToken("wrong issuer")
    if claims.get("email") != sender or claims.get("email_verified") is not True:
        raise BadToken("not the push service account")
    return claims


def _verify(token: str, audience: str, certs_url: str) -> Mapping[str, Any]:
    return id_token.verify_token(token, _certs_request, audience=audience, certs_url=certs_url,
                                 clock_skew_in_seconds=10)


def _reason(error: Exception) -> str:
    # google-auth's messages name the failed check (expired, audience, signature) and may quote
    # claims, never the token; cut short anyway.
    return f"{type(error).__name__}: {str(error)[:160]}"


@csrf_exempt  # a server-to-server POST authenticated by its OIDC token, not a browser form
@require_POST
def pubsub(request: HttpRequest) -> HttpResponse:
    """POST /webhooks/gmail/pubsub: see the module docstring for what it answers."""
    try:
        return _pubsub(request)
    except Exception:  # never a 500: Pub/Sub retries a 503, and the traceback stays in the log
        logger.exception("The Gmail push endpoint failed")
        return HttpResponse(status=503)


def _pubsub(request: HttpRequest) -> HttpResponse:
    try:
        verify_push_token(request.headers.get("Authorization"))
    except BadToken as refused:
        logger.warning("Refused a Gmail push: %s", refused)
        return HttpResponse(status=401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    except google.auth.exceptions.TransportError:
        logger.error("Could not fetch Google's OIDC certs from GOOGLE_OIDC_CERTS_URL to verify a Gmail push")
        return HttpResponse(status=503)
    length = request.headers.get("Content-Length", "")
    if length.isdecimal() and int(length) > MAX_BODY_BYTES:
        return HttpResponse("Not a Gmail notification: too big.", status=400, content_type="text/plain")
    try:
        address, history_id = parse_notification(request.body)
    except Malformed as error:
        logger.warning("Refused a malformed Gmail push: %s", error)
        return HttpResponse(f"Not a Gmail notification: {error}", status=400, content_type="text/plain")
    queued = notify(address, history_id)
    if queued is None:
        logger.info("A Gmail push for %s, which no account here syncs; ignored", address)
    return HttpResponse(status=204)


def notify(address: str, history_id: int) -> int | None:
    """Queues a delta of every Gmail account of ``address`` whose stored history id is older
    than ``history_id``; returns how many were queued (None: no account has that address).

    An account that is not syncable, or has a sync queued or running, is left alone: the run
    in progress (or its next scheduled sync) reads the history from the stored cursor anyway.
    """
    from integrations.tasks import NotSyncable, SyncInProgress, request_sync  # tasks imports the providers

    accounts = list(ProviderAccount.objects.filter(provider="gmail", config__email=address)
                    .only("pk", "status", "sync_cursor", "display_name", "external_address", "owner_id"))
    if not accounts:
        return None
    queued = 0
    for account in accounts:
        if account.status in NOT_WATCHED:
            continue
        stored = str((account.sync_cursor or {}).get("history_id") or "")
        if stored.isdecimal() and history_id <= int(stored):
            logger.debug("Dropped a stale Gmail push for account %s (%s <= %s)", account.pk, history_id, stored)
            continue
        try:
            request_sync(account, kind="delta")
        except (NotSyncable, SyncInProgress):
            continue
        queued += 1
    return queued
