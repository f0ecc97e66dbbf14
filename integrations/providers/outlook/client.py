"""GraphClient: every Microsoft Graph call of an account goes through here (requests).

What it takes care of, once for the provider, the push code and the connect flow:

- auth: ``Authorization: Bearer`` from ``auth.access_token`` (msal's cache, refreshed under the
  account's lock); a 401 gets one forced refresh and one retry;
- Graph's per-mailbox limits (learn.microsoft.com/graph/throttling-limits): at most
  MAX_CONCURRENT requests in flight per mailbox in this process (a semaphore shared by the
  sync, the webhooks and the renewal schedule), and a per-account budget of
  OUTLOOK_REQUESTS_PER_10_MINUTES (a token bucket: a burst of the whole budget, then its rate);
- throttling: 429, 503 and 504 wait out ``Retry-After`` (or a short backoff) up to
  MAX_ATTEMPTS times, waits up to MAX_INLINE_WAIT_SECONDS; then RateLimited(retry_after), and
  the engine resumes the account later from its saved position;
- errors: other 5xx, timeouts and dropped connections are retried, then TransientError; 410
  and the sync-state codes raise CursorExpired; 404 NotFound; 403 Forbidden (an AuthError: a
  permission not granted); other 4xx PermanentError. Messages carry Graph's error code, never a token;
- ``$batch``: JSON batches of at most MAX_BATCH_REQUESTS; throttled parts are retried on their
  own after their Retry-After.

Every HTTP round trip (a batch counts once) is reported through ``on_call``. Only GETs of
mail exist here, plus the subscription calls of push (which change nothing in the mailbox) and
the provider's ``mark_read`` (a PATCH of isRead, through ``request``: the one mailbox change).
"""
from __future__ import annotations

import logging
import random
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import requests
from django.conf import settings

from integrations.providers.base import (
    AuthError,
    CursorExpired,
    PermanentError,
    ProviderError,
    RateLimited,
    TransientError,
)
from integrations.providers.outlook import auth

if TYPE_CHECKING:
    from integrations.models import ProviderAccount

logger = logging.getLogger(__name__)

MAX_CONCURRENT = 4  # Graph: 4 concurrent requests per app per mailbox
MAX_BATCH_REQUESTS = 20  # Graph: 20 requests per JSON batch
HTTP_TIMEOUT_SECONDS = 60
MAX_ATTEMPTS = 4
BACKOFF_BASE_SECONDS = 0.5
# A Retry-After longer than this is not slept through: the sync ends as rate limited and the
# engine reschedules it (a worker must not sit idle for minutes holding the account's claim).
MAX_INLINE_WAIT_SECONDS = 30.0
THROTTLED = frozenset({429, 503, 504})
# Error codes meaning the delta token is dead (any status): a full resync is needed.
SYNC_STATE_CODES = frozenset({"syncStateNotFound", "resyncRequired", "InvalidSyncStateData",
                              "SyncStateNotFound", "ResyncRequired", "syncStateInvalid"})
IMMUTABLE_IDS = 'IdType="ImmutableId"'

sleep = time.sleep  # monkeypatched by tests


class NotFound(PermanentError):
    """Graph answered 404 (a message deleted since it was listed, an unknown subscription)."""


class Forbidden(AuthError):
    """Graph answered 403: the token lacks a permission (e.g. Mail.ReadWrite was withdrawn).
    Permanent: only the user, by reconnecting and allowing it, can change that."""


# --- the per-mailbox limits -----------------------------------------------------------------

class Budget:
    """A token bucket of requests: holds at most ``capacity``, refills ``capacity`` per ``window``."""

    def __init__(self, capacity: int, window: float) -> None:
        self.capacity = float(capacity)
        self.rate = capacity / window
        self.tokens = float(capacity)
        self.stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Spends one request; returns the seconds to wait first (0: go now)."""
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate) - 1
            self.stamp = now
            return -self.tokens / self.rate if self.tokens < 0 else 0.0

    def give_back(self) -> None:
        with self._lock:
            self.tokens = min(self.capacity, self.tokens + 1)


_limits: dict[object, tuple[threading.BoundedSemaphore, Budget]] = {}
_limits_lock = threading.Lock()


def mailbox_limits(key: object) -> tuple[threading.BoundedSemaphore, Budget]:
    """The concurrency semaphore and request budget of one mailbox, per process."""
    capacity = settings.OUTLOOK_REQUESTS_PER_10_MINUTES
    with _limits_lock:
        limits = _limits.get(key)
        if limits is None or limits[1].capacity != capacity:
            limits = _limits[key] = (threading.BoundedSemaphore(MAX_CONCURRENT), Budget(capacity, 600.0))
        return limits


# --- errors ---------------------------------------------------------------------------------

def error_code(response: requests.Response) -> str:
    """Graph's ``error.code`` of an error answer ("" if none)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code") or "")[:80] if isinstance(error, dict) else ""


def retry_after(headers: Any) -> float | None:
    value = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


def classify(status: int, code: str, what: str, headers: Any = None) -> ProviderError:
    """The ProviderError of a final (non-retried) error answer to ``what``."""
    if status == 410 or code in SYNC_STATE_CODES:
        return CursorExpired(f"Graph reset the delta of {what} ({status} {code or 'Gone'})")
    if status in THROTTLED:
        return RateLimited(f"Graph throttled {what} ({status} {code})".rstrip(), retry_after=retry_after(headers))
    if status == 401:
        return AuthError(f"Graph refused the access token for {what} ({code or 'InvalidAuthenticationToken'}).")
    if status == 403:
        return Forbidden(f"Reconnect Outlook: Graph denied {what} ({code or 'Forbidden'}); the mailbox permission "
                         "(Mail.Read) may have been withdrawn.", permanent=True)
    if status == 404:
        return NotFound(f"Graph found no {what} ({code or 'NotFound'})")
    if status >= 500:
        return TransientError(f"Graph failed on {what} ({status} {code}); it will be retried.")
    return PermanentError(f"Graph refused {what} ({status} {code or 'BadRequest'})")


class GraphClient:
    """The Graph API of one account. ``on_call`` is called once per HTTP round trip."""

    def __init__(self, account: ProviderAccount, *, on_call: Callable[[], None] | None = None,
                 session: requests.Session | None = None) -> None:
        self.account = account
        self.base = settings.GRAPH_API_BASE_URL
        self.session = session or requests.Session()
        self.on_call = on_call or (lambda: None)
        self.semaphore, self.budget = mailbox_limits(account.pk or id(account))
        self._token: str | None = None

    def close(self) -> None:
        self.session.close()

    def url(self, path: str) -> str:
        return path if path.startswith(("https://", "http://")) else f"{self.base}/{path.lstrip('/')}"

    def authenticate(self) -> None:
        self._token = auth.access_token(self.account)

    # --- plain requests ------------------------------------------------------------------------

    def get(self, path: str, *, params: dict[str, str] | None = None, prefer: Iterable[str] = (),
            what: str = "the request") -> dict[str, Any]:
        response = self.request("GET", path, params=params, prefer=prefer, what=what)
        try:
            body = response.json()
        except ValueError:
            raise TransientError(f"Graph answered {what} with something that is not JSON.") from None
        if not isinstance(body, dict):
            raise TransientError(f"Graph answered {what} with unexpected JSON.")
        return body

    def request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                json_body: Any = None, prefer: Iterable[str] = (), what: str = "the request",
                stream: bool = False) -> requests.Response:
        """One call with the retries described in the module docstring; returns a 2xx response."""
        headers = {"Accept": "application/json"}
        prefer = list(prefer)
        if prefer:
            headers["Prefer"] = ", ".join(prefer)
        refreshed = False
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if self._token is None:
                self._token = auth.access_token(self.account)
            headers["Authorization"] = f"Bearer {self._token}"
            try:
                response = self._send(method, self.url(path), params=params, json=json_body, headers=headers,
                                      stream=stream)
            except (requests.ConnectionError, requests.Timeout) as error:
                if attempt == MAX_ATTEMPTS:
                    raise TransientError(f"Graph could not be reached for {what} ({type(error).__name__}); "
                                         "it will be retried.") from None
                self._wait(attempt, None)
                continue
            except requests.RequestException as error:
                raise TransientError(f"Graph request for {what} failed ({type(error).__name__}).") from None
            if response.status_code < 400:
                return response
            code = error_code(response) if not stream else ""
            response.close()
            if response.status_code == 401 and not refreshed:
                refreshed = True
                self._token = auth.access_token(self.account, force=True)
                continue
            retryable = response.status_code in THROTTLED or response.status_code >= 500
            if not retryable or response.status_code == 410 or code in SYNC_STATE_CODES:
                raise classify(response.status_code, code, what, response.headers)
            delay = retry_after(response.headers)
            if attempt == MAX_ATTEMPTS or (delay or 0) > MAX_INLINE_WAIT_SECONDS:
                raise classify(response.status_code, code, what, response.headers)
            logger.info("Graph answered %s to %s of account %s (attempt %s); retrying", response.status_code,
                        what, self.account.pk, attempt)
            self._wait(attempt, delay)
        raise TransientError(f"Graph kept failing {what}.")  # not reached

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        wait = self.budget.take()
        if wait > MAX_INLINE_WAIT_SECONDS:
            self.budget.give_back()
            raise RateLimited("This mailbox used its Graph request budget "
                              f"(OUTLOOK_REQUESTS_PER_10_MINUTES={settings.OUTLOOK_REQUESTS_PER_10_MINUTES}).",
                              retry_after=wait)
        if wait > 0:
            sleep(wait)
        with self.semaphore:
            self.on_call()
            return self.session.request(method, url, timeout=HTTP_TIMEOUT_SECONDS, **kwargs)

    @staticmethod
    def _wait(attempt: int, delay: float | None) -> None:
        if delay is None:
            delay = BACKOFF_BASE_SECONDS * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
        sleep(delay)

    # --- $batch --------------------------------------------------------------------------------

    def batch(self, paths: list[str], *, prefer: Iterable[str] = (), what: str = "a batch"
              ) -> dict[str, dict[str, Any] | ProviderError]:
        """GETs ``paths`` (relative to the API base) through JSON ``$batch``, MAX_BATCH_REQUESTS per
        call. Returns path -> its JSON body, or the ProviderError of that part (a 404: NotFound).

        Throttled or failed parts (429, 5xx) are sent again in a later batch after their
        Retry-After, up to MAX_ATTEMPTS; parts still failing then raise their error for the whole
        call (RateLimited, TransientError): the caller's page is retried from its saved position.
        """
        results: dict[str, dict[str, Any] | ProviderError] = {}
        pending = list(dict.fromkeys(paths))
        prefer = list(prefer)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if not pending:
                break
            retry: list[str] = []
            delay = 0.0
            for start in range(0, len(pending), MAX_BATCH_REQUESTS):
                chunk = pending[start:start + MAX_BATCH_REQUESTS]
                requests_ = [{"id": str(index), "method": "GET", "url": "/" + path.lstrip("/"),
                              **({"headers": {"Prefer": ", ".join(prefer)}} if prefer else {})}
                             for index, path in enumerate(chunk)]
                answer = self.request("POST", "$batch", json_body={"requests": requests_}, what=what).json()
                by_id = {str(part.get("id")): part for part in answer.get("responses", []) if isinstance(part, dict)}
                for index, path in enumerate(chunk):
                    part = by_id.get(str(index))
                    status = int(part.get("status") or 0) if part else 0
                    body = part.get("body") if part else None
                    if 200 <= status < 300 and isinstance(body, dict):
                        results[path] = body
                        continue
                    code = str(((body or {}).get("error") or {}).get("code") or "") if isinstance(body, dict) else ""
                    if status in THROTTLED or status >= 500 or status == 0:
                        retry.append(path)
                        delay = max(delay, retry_after((part or {}).get("headers")) or 0.0)
                        results[path] = classify(status or 503, code, what, (part or {}).get("headers"))
                    else:
                        results[path] = classify(status, code, what)
            pending = retry
            if pending and attempt < MAX_ATTEMPTS:
                if delay > MAX_INLINE_WAIT_SECONDS:
                    break
                self._wait(attempt, delay or None)
        for path in pending:
            error = results[path]
            if isinstance(error, ProviderError):
                raise error
        return results

    # --- MIME -----------------------------------------------------------------------------------

    def mime_headers(self, message_id: str, *, max_bytes: int = 256 * 1024) -> bytes:
        """The header block of a message's MIME (``$value``), read as a stream and cut at the
        blank line: the body (attachments and all) is never downloaded whole."""
        path = f"me/messages/{urllib.parse.quote(message_id, safe='')}/$value"
        response = self.request("GET", path, what="a message's MIME", stream=True)
        data = bytearray()
        try:
            for chunk in response.iter_content(16 * 1024):
                data += chunk
                end = _header_end(data)
                if end >= 0 or len(data) >= max_bytes:
                    return bytes(data[:end if end >= 0 else max_bytes])
        finally:
            response.close()
        return bytes(data)

    def content(self, path: str, *, max_bytes: int, what: str = "an attachment") -> bytes | None:
        """The bytes at ``path`` (a ``$value``), or None when they are over ``max_bytes``."""
        response = self.request("GET", path, what=what, stream=True)
        data = bytearray()
        try:
            for chunk in response.iter_content(64 * 1024):
                data += chunk
                if len(data) > max_bytes:
                    return None
        finally:
            response.close()
        return bytes(data)


def _header_end(data: bytearray) -> int:
    ends = [found for found in (data.find(b"\r\n\r\n"), data.find(b"\n\n")) if found >= 0]
    return min(ends) if ends else -1
