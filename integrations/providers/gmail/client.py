"""GmailClient: every Gmail API call of an account goes through here (google-api-python-client).

What it takes care of, once for the provider, the push code and the connect flow:

- transport: httplib2 with a timeout, authorised by google-auth (AuthorizedHttp) with credentials
  from ``credentials.fresh_credentials`` (refreshed ahead of expiry under the account's lock);
- quota: a per-account token bucket in Gmail quota units (QUOTA_UNITS), at
  settings.GMAIL_QUOTA_UNITS_PER_SECOND, so one mailbox stays under Google's per-user rate;
- errors: 429 and 403 rateLimitExceeded/userRateLimitExceeded are retried after Retry-After (or
  a short backoff) a few times, then raised as RateLimited(retry_after) so the engine reschedules
  the account (it is never abandoned); 5xx, timeouts and dropped connections are retried, then
  raised as TransientError; a 401 refreshes the token once (under the lock) and retries, then
  raises AuthError; 404 raises NotFound (the caller decides: an expired history id, a message
  deleted since it was listed);
- batches: ``get_messages`` fetches many messages in batch requests of at most MAX_BATCH_PARTS
  parts, posted to ``{GMAIL_API_ENDPOINT}/batch/gmail/v1`` (the library's own batch helper
  ignores api_endpoint). A failed part is retried on its own (429, 5xx), a 404 part is skipped
  with its reason recorded, and the parts that succeeded are kept.

Every HTTP round trip (a batch counts once) is reported through ``on_call``, for the SyncRun's
``api_calls``. Syncs make only read-only (gmail.readonly) calls, plus watch/stop of push
notifications, which change nothing in the mailbox. The one change, ``modify_labels``, is
made only for a feature the user turned on (task write-back removes UNREAD) and needs
gmail.modify: a token without it is answered 403 insufficientPermissions, raised as
MissingScope.
"""
from __future__ import annotations

import email.utils
import json
import logging
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import google.auth.exceptions
import google_auth_httplib2
import httplib2
from django.conf import settings
from googleapiclient.discovery import build
from googleapiclient.errors import BatchError, HttpError
from googleapiclient.http import HttpRequest
from googleapiclient.model import JsonModel

from integrations.providers.base import AuthError, PermanentError, RateLimited, TransientError
from integrations.providers.gmail import credentials as gmail_credentials
from integrations.providers.gmail.batch import GmailBatch

if TYPE_CHECKING:
    from integrations.models import ProviderAccount

logger = logging.getLogger(__name__)

# Gmail's quota cost of each call, in units (developers.google.com/workspace/gmail/api/reference/quota).
QUOTA_UNITS = {
    "getProfile": 1,
    "labels.list": 1,
    "history.list": 2,
    "messages.list": 5,
    "messages.get": 5,
    "messages.modify": 5,
    "watch": 100,
    "stop": 50,
}
# Google allows 100 calls per batch and advises against more than 50 (they are rate limited as
# separate calls, and a big batch is a burst). Format=minimal answers are ~200 bytes each, so
# sizing batches go up to the limit; raw ones stay at the advised 50.
MAX_BATCH_PARTS = 100
RAW_BATCH_PARTS = 50
HTTP_TIMEOUT_SECONDS = 60
# Attempts of one call (or of a batch's failed parts) before giving up for this sync.
MAX_ATTEMPTS = 4
BACKOFF_BASE_SECONDS = 0.5
# A Retry-After longer than this is not slept through: the sync ends as rate limited and the
# engine reschedules it (a worker must not sit idle for minutes holding the account's claim).
MAX_INLINE_WAIT_SECONDS = 30.0
RATE_LIMIT_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "concurrentLimitExceeded", "quotaExceeded"}
DAILY_LIMIT_RETRY_SECONDS = 3600.0

sleep = time.sleep  # monkeypatched by tests


class NotFound(PermanentError):
    """The API answered 404 (an expired history id, a message deleted since it was listed)."""


class MissingScope(PermanentError):
    """The API answered 403 insufficientPermissions: the token lacks the scope the call needs."""


# --- quota ------------------------------------------------------------------------------------

class QuotaBucket:
    """A token bucket in quota units: ``take(units)`` waits until the account may spend them.

    Holds at most one second's worth (``rate``); a call costing more than is left (a batch of 50
    gets is 250 units) is allowed to drive it negative and then waits the debt off, so calls of
    any cost pace out at ``rate`` units per second on average. Thread-safe.
    """

    def __init__(self, rate: float) -> None:
        self.rate = float(rate)
        self.tokens = self.rate
        self.stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self, units: float) -> float:
        """Spends ``units``; returns the seconds slept."""
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate) - units
            self.stamp = now
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            sleep(wait)
        return wait


_buckets: dict[object, QuotaBucket] = {}
_buckets_lock = threading.Lock()


def quota_bucket(key: object) -> QuotaBucket:
    """The bucket of one account (per process: one account syncs on one worker at a time, and
    the webhook/push calls are few), at the current settings.GMAIL_QUOTA_UNITS_PER_SECOND."""
    rate = settings.GMAIL_QUOTA_UNITS_PER_SECOND
    with _buckets_lock:
        bucket = _buckets.get(key)
        if bucket is None:
            bucket = _buckets[key] = QuotaBucket(rate)
        elif bucket.rate != rate:
            bucket.rate = float(rate)
            bucket.tokens = min(bucket.tokens, bucket.rate)
        return bucket


# --- errors -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Failure:
    """What a non-2xx answer means: ``kind`` is rate | transient | auth | not_found | permanent."""

    kind: str
    status: int
    reason: str
    retry_after: float | None = None

    def describe(self) -> str:
        return f"HTTP {self.status}{f' {self.reason}' if self.reason else ''}"


def classify(status: int, headers: Any, content: bytes | str | None) -> Failure:
    """Maps an error answer (whole request or batch part) to what to do about it."""
    reason = _error_reason(content)
    retry_after = _retry_after(headers)
    if status == 429 or (status == 403 and reason in RATE_LIMIT_REASONS):
        return Failure("rate", status, reason or "rateLimitExceeded", retry_after)
    if status == 403 and reason == "dailyLimitExceeded":
        return Failure("daily", status, reason, retry_after or DAILY_LIMIT_RETRY_SECONDS)
    if status >= 500 or status == 408:
        return Failure("transient", status, reason, retry_after)
    if status in (401, 403):
        return Failure("auth", status, reason)
    if status == 404:
        return Failure("not_found", status, reason)
    return Failure("permanent", status, reason)


def _error_reason(content: bytes | str | None) -> str:
    """``error.errors[0].reason`` (else ``error.status``) of a Google error body."""
    if not content:
        return ""
    try:
        body = json.loads(content)
        error = body.get("error", {}) if isinstance(body, dict) else {}
        errors = error.get("errors") or []
        if errors and isinstance(errors[0], dict) and errors[0].get("reason"):
            return str(errors[0]["reason"])[:100]
        return str(error.get("status") or "")[:100]
    except (ValueError, AttributeError, TypeError):
        return ""


def _retry_after(headers: Any) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date), if the answer has one."""
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    value = str(value).strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _raise(failure: Failure, doing: str) -> None:
    """The ProviderError for a failure that retries did not cure."""
    if failure.kind in ("rate", "daily"):
        raise RateLimited(f"Gmail is rate limiting {doing} ({failure.describe()})", retry_after=failure.retry_after)
    if failure.kind == "transient":
        raise TransientError(f"Gmail failed while {doing} ({failure.describe()}); it will be retried.")
    if failure.kind == "auth" and failure.reason == "insufficientPermissions":
        raise MissingScope(f"Gmail's permission for {doing} was not granted ({failure.describe()}).")
    if failure.kind == "auth":
        raise AuthError(f"Reconnect Gmail: Google refused access while {doing} ({failure.describe()}).",
                        permanent=failure.status == 403)
    if failure.kind == "not_found":
        raise NotFound(f"Gmail answered 404 while {doing}")
    raise PermanentError(f"Gmail refused {doing} ({failure.describe()}).")


def _backoff(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): Retry-After, else exponential with jitter."""
    if retry_after is not None:
        return retry_after
    ceiling = BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)
    return random.uniform(ceiling / 2, ceiling)


def _query_items(params: dict[str, Any]) -> list[tuple[str, str]]:
    """Query parameters in the API's spelling: camelCase names as given, lists repeated."""
    items = []
    for name, value in params.items():
        for one in value if isinstance(value, (list, tuple)) else [value]:
            items.append((name, str(one)))
    return items


_JSON_MODEL = JsonModel(data_wrapper=False)

TRANSPORT_ERRORS = (httplib2.HttpLib2Error, OSError, google.auth.exceptions.TransportError, BatchError)


# --- the client -------------------------------------------------------------------------------

@dataclass
class Fetched:
    """What a batch fetch got: messages by id, and the ids skipped with why (e.g. deleted since listed)."""

    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


class GmailClient:
    """The Gmail API of one account. Not thread-safe: one caller at a time (the engine never
    overlaps calls of one provider)."""

    def __init__(self, account: ProviderAccount, on_call: Callable[[], None] | None = None) -> None:
        self.account = account
        self.on_call = on_call or (lambda: None)
        self.endpoint = settings.GMAIL_API_ENDPOINT.rstrip("/")
        self._credentials: Any = None
        self._service: Any = None
        self._http: Any = None
        self._users: Any = None
        # An account being connected (not saved yet) makes a call or two: a bucket of its own.
        self._bucket = quota_bucket(account.pk) if account.pk is not None else QuotaBucket(
            settings.GMAIL_QUOTA_UNITS_PER_SECOND)

    # --- plumbing

    def authenticate(self) -> None:
        """Makes sure a valid access token is at hand (refreshing it if needed)."""
        self._fresh()

    def _fresh(self, *, force: bool = False) -> None:
        """Keeps the token valid for REFRESH_MARGIN, so google-auth never refreshes on its own
        (outside the lock, unpersisted); with ``force``, replaces a token the API rejected."""
        if self._credentials is not None and not force and not gmail_credentials.expiring(self.account.credentials):
            return
        fresh = gmail_credentials.fresh_credentials(self.account, force=force)
        if self._credentials is None or type(fresh) is not type(self._credentials):
            self._credentials, self._service = fresh, None
        else:  # in place: the transport and the requests already built hold this object
            self._credentials.token, self._credentials.expiry = fresh.token, fresh.expiry

    def service(self) -> Any:
        """The googleapiclient Resource for Gmail v1 (packaged discovery document, no network)."""
        self._fresh()
        if self._service is None:
            self._http = google_auth_httplib2.AuthorizedHttp(
                self._credentials, http=httplib2.Http(timeout=HTTP_TIMEOUT_SECONDS),
                # A 401 comes back to us: we refresh under the lock (see _fresh), not the library.
                refresh_status_codes=(),
            )
            self._service = build(
                "gmail", "v1", http=self._http, client_options={"api_endpoint": self.endpoint},
                static_discovery=True, cache_discovery=False,
            )
            self._users = None
        return self._service

    def users(self) -> Any:
        """The ``users`` resource, built once per service (each build of it creates every method
        from the discovery document: ~20 ms)."""
        service = self.service()
        if self._users is None:
            self._users = service.users()
        return self._users

    def _get_request(self, message_id: str, fmt: str, params: dict[str, Any]) -> HttpRequest:
        """A messages.get request for a batch part, made directly: the discovery method's
        argument checks and URI templating cost more per part than the part's whole answer."""
        query = urllib.parse.urlencode([("format", fmt), *_query_items(params), ("alt", "json")])
        uri = f"{self.endpoint}/gmail/v1/users/me/messages/{urllib.parse.quote(message_id, safe='')}?{query}"
        return HttpRequest(self._http, _JSON_MODEL.response, uri, method="GET",
                           headers={"accept": "application/json"}, methodId="gmail.users.messages.get")

    def execute(self, make: Callable[[], HttpRequest], method: str, doing: str) -> dict[str, Any]:
        """Runs one API call with retries; ``make`` builds the request anew for each attempt.

        Raises RateLimited, TransientError, AuthError, NotFound or PermanentError (see module doc).
        """
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            self._fresh()
            self._bucket.take(QUOTA_UNITS[method])
            self.on_call()
            try:
                return make().execute(num_retries=0)
            except HttpError as error:
                failure = classify(error.resp.status, error.resp, error.content)
            except TRANSPORT_ERRORS as error:
                failure = Failure("transient", 0, type(error).__name__)
            if failure.kind == "auth" and failure.status == 401 and not refreshed:
                refreshed = True
                self._fresh(force=True)
                continue
            self._wait_or_raise(failure, attempt, doing)

    def _wait_or_raise(self, failure: Failure, attempt: int, doing: str) -> None:
        """Sleeps before the next attempt of a retryable failure, else raises its ProviderError."""
        retryable = failure.kind in ("rate", "transient")
        delay = _backoff(attempt, failure.retry_after)
        if not retryable or attempt >= MAX_ATTEMPTS or delay > MAX_INLINE_WAIT_SECONDS:
            _raise(failure, doing)
        logger.info("Gmail %s while %s; retry %s in %.1f s", failure.describe(), doing, attempt, delay)
        sleep(delay)

    # --- calls

    def profile(self) -> dict[str, Any]:
        """users.getProfile: emailAddress, messagesTotal, threadsTotal, historyId."""
        return self.execute(lambda: self.users().getProfile(userId="me"), "getProfile", "reading the profile")

    def labels(self) -> list[dict[str, Any]]:
        """users.labels.list: [{id, name, type}]."""
        answer = self.execute(lambda: self.users().labels().list(userId="me"), "labels.list", "listing labels")
        return list(answer.get("labels", []))

    def list_messages(self, *, q: str, page_token: str | None, max_results: int) -> dict[str, Any]:
        """users.messages.list, newest first: {messages: [{id, threadId}], nextPageToken, resultSizeEstimate}."""
        params: dict[str, Any] = {"userId": "me", "q": q, "maxResults": max_results}
        if page_token:
            params["pageToken"] = page_token
        return self.execute(lambda: self.users().messages().list(**params), "messages.list", "listing messages")

    def history(self, *, start_history_id: str, page_token: str | None, history_types: Sequence[str],
                max_results: int = 500) -> dict[str, Any]:
        """users.history.list; raises NotFound when ``start_history_id`` is too old."""
        params: dict[str, Any] = {"userId": "me", "startHistoryId": start_history_id,
                                  "historyTypes": list(history_types), "maxResults": max_results}
        if page_token:
            params["pageToken"] = page_token
        return self.execute(lambda: self.users().history().list(**params), "history.list", "reading the history")

    def get_message(self, message_id: str, fmt: str, **params: Any) -> dict[str, Any]:
        """users.messages.get of one message (raises NotFound when it is gone)."""
        return self.execute(lambda: self.users().messages().get(userId="me", id=message_id, format=fmt, **params),
                            "messages.get", "fetching a message")

    def watch(self, topic: str, label_ids: Sequence[str] = (), label_filter_behavior: str = "include") -> dict[str, Any]:
        """users.watch: push notifications of changes to ``topic``; returns {historyId, expiration}."""
        body: dict[str, Any] = {"topicName": topic}
        if label_ids:
            body["labelIds"] = list(label_ids)
            body["labelFilterBehavior"] = label_filter_behavior
        return self.execute(lambda: self.users().watch(userId="me", body=body), "watch", "starting push notifications")

    def stop(self) -> None:
        """users.stop: no more push notifications for this mailbox."""
        self.execute(lambda: self.users().stop(userId="me"), "stop", "stopping push notifications")

    def modify_labels(self, message_id: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> dict[str, Any]:
        """users.messages.modify: adds and removes label ids of one message (needs gmail.modify).
        Raises NotFound when the message is gone, MissingScope without gmail.modify."""
        body = {"addLabelIds": list(add), "removeLabelIds": list(remove)}
        return self.execute(lambda: self.users().messages().modify(userId="me", id=message_id, body=body),
                            "messages.modify", "changing a message's labels")

    def get_messages(self, ids: Sequence[str], fmt: str, *, parts: int = RAW_BATCH_PARTS,
                     **params: Any) -> Fetched:
        """users.messages.get of every id, ``parts`` per batch request (at most MAX_BATCH_PARTS).

        A part answered 429/5xx (or 403 rate limited) is retried in a later batch of its own
        failed parts (after Retry-After or a backoff); after MAX_ATTEMPTS the call raises
        RateLimited/TransientError. A 404 part lands in ``skipped`` (deleted since it was
        listed) and so does any other refused part, with its reason. The rest is kept.
        """
        parts = max(1, min(parts, MAX_BATCH_PARTS))
        fetched = Fetched()
        for start in range(0, len(ids), parts):
            self._batch(list(ids[start:start + parts]), fmt, params, fetched)
        return fetched

    def _batch(self, ids: list[str], fmt: str, params: dict[str, Any], fetched: Fetched) -> None:
        pending = list(dict.fromkeys(ids))
        attempt = 0
        while pending:
            attempt += 1
            failed: dict[str, Failure] = {}

            def collect(request_id: str, response: Any, exception: Exception | None,
                        failed: dict[str, Failure] = failed) -> None:
                message_id = request_id
                if exception is None:
                    fetched.messages[message_id] = response
                    return
                if isinstance(exception, HttpError):
                    failure = classify(exception.resp.status, exception.resp, exception.content)
                else:
                    failure = Failure("transient", 0, type(exception).__name__)
                if failure.kind == "not_found":
                    fetched.skipped[message_id] = "deleted since it was listed (HTTP 404)"
                elif failure.kind in ("rate", "transient", "auth", "daily"):
                    failed[message_id] = failure
                else:
                    fetched.skipped[message_id] = f"Gmail refused to return it ({failure.describe()})"

            self._fresh()
            batch = GmailBatch(refresh=self._refresh_for_batch, callback=collect,
                           batch_uri=f"{self.endpoint}/batch/gmail/v1")
            for message_id in pending:
                batch.add(self._get_request(message_id, fmt, params), request_id=message_id)
            self._bucket.take(QUOTA_UNITS["messages.get"] * len(pending))
            self.on_call()
            try:
                batch.execute()
            except HttpError as error:  # the batch request itself failed: all of it again
                whole = classify(error.resp.status, error.resp, error.content)
                failed = {message_id: whole for message_id in pending}
            except TRANSPORT_ERRORS as error:
                failed = {message_id: Failure("transient", 0, type(error).__name__) for message_id in pending}
            if batch.refresh_error is not None:
                raise batch.refresh_error  # the token cannot be refreshed (revoked): that is the error
            if batch.redone:
                self.on_call()  # the library resent the parts answered 401 with the new token
            if not failed:
                return
            # The worst failure decides: a revoked token beats a rate limit beats a 5xx.
            failure = max(failed.values(), key=lambda f: ("transient", "rate", "daily", "auth").index(f.kind))
            if failure.kind == "auth" and failure.status == 401 and not batch.redone and attempt == 1:
                self._fresh(force=True)  # the whole batch request was refused: new token, once
                pending = list(failed)
                continue
            self._wait_or_raise(failure, attempt, f"fetching {len(failed)} messages in a batch")
            pending = list(failed)

    def _refresh_for_batch(self) -> None:
        self._fresh(force=True)
