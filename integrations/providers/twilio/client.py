"""TwilioApi: every Twilio REST call of one account goes through here.

- The real ``twilio.rest.Client``, its Api domain pointed at settings.TWILIO_API_BASE_URL
  (the domain's ``base_url``: the library builds every URL, paging included, from it), so
  tests talk to tests/fakes/twilio.py with the library's own protocol code.
- One transport (TwilioTransport, a TwilioHttpClient) under every library call: a timeout,
  a count of calls, and the error mapping, done on the raw response before the library sees
  it: 401/403 (Twilio error 20003 and friends) -> AuthError(permanent=True) telling the user
  what to fix; 429 -> RateLimited(retry_after); 5xx, timeouts, dropped connections ->
  TransientError; any other 4xx -> PermanentError. Twilio's error text carries no secret;
  nothing here ever logs or raises a credential.
- Paging is one page per call (``messages_page``), resumed from Twilio's own
  ``next_page_uri``: memory is one page, whatever the account's size.
- Media bytes are fetched with plain ``requests`` (the library's transport decodes bodies
  as text), with the account's credentials, streamed and cut at a size limit.

Only GET requests exist here: nothing at Twilio is ever changed.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.rest import Client

from integrations.providers.base import AuthError, PermanentError, ProviderError, RateLimited, TransientError

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 30.0
MAX_PAGE_SIZE = 1000  # Twilio refuses more (error 20007)
MEDIA_CHUNK_BYTES = 64 * 1024

AUTH_HELP = ("Check the account SID and the auth token (or the API key SID and secret) in the Twilio "
             "console, then update the account's credentials.")


def _error_detail(text: str) -> tuple[int | None, str]:
    """Twilio's error code and message from an error body ({"code", "message", ...}), if any."""
    try:
        body = json.loads(text)
    except (TypeError, ValueError):
        return None, ""
    if not isinstance(body, dict):
        return None, ""
    code = body.get("code")
    return (code if isinstance(code, int) else None), str(body.get("message") or body.get("detail") or "")[:300]


def _retry_after(headers: Any) -> float | None:
    try:
        return max(0.0, float((headers or {}).get("Retry-After")))
    except (TypeError, ValueError):
        return None


def check_status(status: int, text: str, headers: Any, doing: str) -> None:
    """Raises the ProviderError for a failed response; returns for 1xx-3xx."""
    if status < 400:
        return
    code, message = _error_detail(text)
    detail = f"{status}{f' (error {code})' if code else ''}{f': {message}' if message else ''}"
    if status in (401, 403) or code == 20003:
        raise AuthError(f"Twilio refused the credentials while {doing} ({detail}). {AUTH_HELP}", permanent=True)
    if status == 429:
        raise RateLimited(f"Twilio asked to slow down while {doing} ({detail}).", retry_after=_retry_after(headers))
    if status >= 500:
        raise TransientError(f"Twilio failed while {doing} ({detail}); it will be retried.")
    raise PermanentError(f"Twilio refused the request while {doing} ({detail}).")


class TwilioTransport(TwilioHttpClient):
    """The library's HTTP client with our timeout, call counting and error mapping."""

    def __init__(self, on_call: Callable[[], None]) -> None:
        super().__init__(timeout=TIMEOUT_SECONDS)
        self.on_call = on_call
        self.doing = "calling the API"

    def request(self, method: str, url: str, params: dict[str, object] | None = None,
                data: dict[str, object] | None = None, headers: dict[str, str] | None = None,
                auth: tuple[str, str] | None = None, timeout: float | None = None,
                allow_redirects: bool = False) -> Response:
        self.on_call()
        try:
            response = super().request(method, url, params=params, data=data, headers=headers, auth=auth,
                                       timeout=timeout, allow_redirects=allow_redirects)
        except requests.RequestException as error:
            # The exception's text names the URL, never the credentials (they travel in a header).
            raise TransientError(f"Could not reach Twilio while {self.doing}: {type(error).__name__}") from None
        check_status(response.status_code, response.text, response.headers, self.doing)
        return response


def client_credentials(credentials: dict[str, Any]) -> tuple[str, str] | None:
    """(username, password) for HTTP basic auth: the API key if stored (least privilege), else the auth token."""
    if credentials.get("api_key_sid") and credentials.get("api_key_secret"):
        return str(credentials["api_key_sid"]), str(credentials["api_key_secret"])
    return None


class TwilioApi:
    """The calls the provider, the connect form and the webhooks make, for one Twilio account."""

    def __init__(self, account_sid: str, credentials: dict[str, Any],
                 on_call: Callable[[], None] | None = None) -> None:
        if not account_sid:
            raise PermanentError("This Twilio account has no account SID in its settings: connect it again.")
        api_key = client_credentials(credentials)
        if api_key is None and not credentials.get("auth_token"):
            raise AuthError(f"No Twilio credentials are stored. {AUTH_HELP}", permanent=True)
        self.account_sid = account_sid
        self._auth = api_key or (account_sid, str(credentials["auth_token"]))
        self.calls = 0
        self._on_call = on_call
        self.transport = TwilioTransport(self._count)
        self.client = Client(self._auth[0], self._auth[1], account_sid, http_client=self.transport)
        # Neither an edge nor a region from the environment may rewrite the host we point at.
        self.client.edge = self.client.region = None
        self.client.api.base_url = settings.TWILIO_API_BASE_URL
        self._media_session: requests.Session | None = None

    def _count(self) -> None:
        self.calls += 1
        if self._on_call is not None:
            self._on_call()

    def _doing(self, doing: str) -> None:
        self.transport.doing = doing

    def _account(self) -> Any:
        return self.client.api.v2010.accounts(self.account_sid)

    def incoming_numbers(self) -> list[str]:
        """The account's incoming phone numbers (E.164), all pages."""
        self._doing("listing the incoming phone numbers")
        numbers = self._call(lambda: [number.phone_number for number in
                                      self._account().incoming_phone_numbers.stream(page_size=MAX_PAGE_SIZE)])
        return [str(number) for number in numbers if number]

    def messages_page(self, *, page_uri: str | None = None, to: str | None = None, from_: str | None = None,
                      sent_after: Any = None, sent_before: Any = None,
                      page_size: int = 50) -> tuple[list[dict[str, Any]], str | None]:
        """One page of Messages: (the raw message records, Twilio's next_page_uri or None).

        ``page_uri`` (a next_page_uri from an earlier page) continues a listing; otherwise the
        filters start one. ``sent_after``/``sent_before`` are the inclusive DateSent>/DateSent<
        filters (datetimes; Twilio documents day precision, so callers narrow the result).
        """
        self._doing("listing messages")
        messages = self._account().messages
        if page_uri:
            page = self._call(lambda: messages.get_page(self.client.api.absolute_url(page_uri)))
        else:
            filters = {"to": to, "from_": from_, "date_sent_after": sent_after, "date_sent_before": sent_before}
            page = self._call(lambda: messages.page(page_size=min(page_size, MAX_PAGE_SIZE),
                                                    **{k: v for k, v in filters.items() if v is not None}))
        # The raw records, not MessageInstance: an unreadable date must be seen as such (the
        # instance turns it into None), and it spares one object per message.
        payload = page._payload
        records = payload.get("messages")
        if not isinstance(records, list):
            raise TransientError("Twilio answered a page of messages without its list of messages.")
        return [record for record in records if isinstance(record, dict)], payload.get("next_page_uri") or None

    def media(self, message_sid: str) -> list[dict[str, Any]]:
        """The Media records of one message (content_type, sid, uri), raw."""
        self._doing("listing the media of a message")
        page = self._call(lambda: self._account().messages(message_sid).media.page(page_size=100))
        records = page._payload.get("media_list")
        return [record for record in records or [] if isinstance(record, dict)]

    def media_url(self, record: dict[str, Any]) -> str:
        """Where a Media record's bytes are: its uri without ".json"."""
        uri = str(record.get("uri") or "")
        return self.client.api.absolute_url(uri.removesuffix(".json"))

    def download(self, url: str, limit: int) -> tuple[bytes | None, int | None]:
        """The bytes at ``url`` (fetched with the account's credentials), or (None, size) when
        they exceed ``limit`` (size None when the server did not say). Streamed: at most
        ``limit`` bytes are ever held."""
        if self._media_session is None:
            self._media_session = requests.Session()
        self._count()
        try:
            # requests drops the Authorization header when a redirect leaves the host (Twilio
            # redirects media to signed storage URLs), so the credentials go to Twilio only.
            with self._media_session.get(url, auth=self._auth, stream=True, timeout=TIMEOUT_SECONDS,
                                         allow_redirects=True) as response:
                if response.status_code >= 400:
                    check_status(response.status_code, response.text[:2000], response.headers, "fetching media")
                try:
                    declared = int(response.headers.get("Content-Length", ""))
                except ValueError:
                    declared = None
                if declared is not None and declared > limit:
                    return None, declared
                chunks: list[bytes] = []
                received = 0
                for chunk in response.iter_content(MEDIA_CHUNK_BYTES):
                    received += len(chunk)
                    if received > limit:
                        return None, declared
                    chunks.append(chunk)
                return b"".join(chunks), received
        except requests.RequestException as error:
            raise TransientError(f"Could not fetch media from Twilio: {type(error).__name__}") from None

    def _call(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except ProviderError:
            raise
        except TwilioException as error:
            # A page that is not JSON, or a record the library cannot read.
            raise TransientError(f"Twilio answered something unreadable while {self.transport.doing}: "
                                 f"{type(error).__name__}") from None
        except (ValueError, KeyError) as error:
            raise TransientError(f"Twilio answered something unreadable while {self.transport.doing}: "
                                 f"{type(error).__name__}") from None

    def close(self) -> None:
        for session in (self.transport.session, self._media_session):
            if session is not None:
                session.close()
