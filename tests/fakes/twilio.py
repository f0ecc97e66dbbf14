"""A fake of Twilio's REST API (2010-04-01) for the real twilio client, plus webhook signing.

Endpoints (GET only; Twilio is never changed by a sync):

- ``/2010-04-01/Accounts/{sid}.json``: the account;
- ``/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json``: its numbers (``PageSize``);
- ``/2010-04-01/Accounts/{sid}/Messages.json``: ``To``, ``From``, ``DateSent``, ``DateSent>``
  (on or after), ``DateSent<`` (on or before; a bare date means the whole day), ``PageSize``
  (max 1000, else error 20007) and ``Page``/``PageToken``, newest first, with
  ``next_page_uri`` paging. Dates are read as YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ;
- ``/2010-04-01/Accounts/{sid}/Messages/{MessageSid}/Media.json`` and the media bytes at
  ``.../Media/{MediaSid}`` (the uri without .json).

HTTP basic auth with the account SID and auth token or an API key SID and secret; anything
else gets 401 with Twilio's error 20003. ``fail(path_regex, status, times=)`` injects
failures (429 with Retry-After, 5xx). The message store can be changed between syncs
(``add_message``, ``set_status``). ``signed_webhook`` signs form parameters exactly as
Twilio does (twilio.request_validator.RequestValidator.compute_signature).
"""
from __future__ import annotations

import base64
import datetime as dt
import email.utils
import itertools
import json
import re
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from twilio.request_validator import RequestValidator

Response = tuple[int, dict[str, str], bytes]
_counter = itertools.count(1)


def _sid(prefix: str) -> str:
    return f"{prefix}{next(_counter):032x}"


def rfc2822(value: dt.datetime) -> str:
    return email.utils.format_datetime(value.astimezone(dt.UTC), usegmt=True)


def twilio_error(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> Response:
    body = {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


@dataclass
class FakeMedia:
    sid: str
    content_type: str
    content: bytes


@dataclass
class FakeMessage:
    sid: str
    account_sid: str
    from_: str
    to: str
    body: str
    direction: str
    status: str
    sent_at: dt.datetime | None  # what the filters see
    date_sent_text: str | None = None  # overrides the serialized date_sent (a malformed one)
    media: list[FakeMedia] = field(default_factory=list)

    def record(self, base: str) -> dict[str, Any]:
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{self.sid}.json"
        date_sent = self.date_sent_text if self.date_sent_text is not None else (
            rfc2822(self.sent_at) if self.sent_at else None)
        created = rfc2822(self.sent_at or dt.datetime.now(dt.UTC))
        return {
            "sid": self.sid, "account_sid": self.account_sid, "from": self.from_, "to": self.to, "body": self.body,
            "num_media": str(len(self.media)), "num_segments": "1", "status": self.status,
            "direction": self.direction, "date_sent": date_sent, "date_created": created, "date_updated": created,
            "error_code": None, "error_message": None, "messaging_service_sid": None, "price": None,
            "api_version": "2010-04-01", "uri": uri,
            "subresource_uris": {"media": uri.replace(".json", "/Media.json")},
        }


@dataclass
class FakeAccount:
    sid: str
    auth_token: str
    numbers: list[str] = field(default_factory=list)
    api_keys: dict[str, str] = field(default_factory=dict)
    messages: dict[str, FakeMessage] = field(default_factory=dict)


@dataclass
class _FailRule:
    pattern: re.Pattern[str]
    status: int
    times: int
    retry_after: str | None


class FakeTwilio:
    """The fake server. ``start()`` it once; ``reset()`` empties it between tests."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()
        self.accounts: dict[str, FakeAccount] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path with query)
        self._failures: list[_FailRule] = []

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> Self:
        server = ThreadingHTTPServer((self._host, self._port), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def settings(self) -> dict[str, str]:
        return {"TWILIO_API_BASE_URL": self.base_url}

    def reset(self) -> None:
        with self._lock:
            self.accounts.clear()
            self.requests.clear()
            self._failures.clear()

    # --- state ---------------------------------------------------------------------------

    def add_account(self, numbers: list[str], *, sid: str | None = None, auth_token: str | None = None) -> FakeAccount:
        account = FakeAccount(sid=sid or _sid("AC"), auth_token=auth_token or secrets.token_hex(16),
                              numbers=list(numbers))
        with self._lock:
            self.accounts[account.sid] = account
        return account

    def add_api_key(self, account: FakeAccount) -> tuple[str, str]:
        key, secret = _sid("SK"), secrets.token_hex(16)
        account.api_keys[key] = secret
        return key, secret

    def add_message(self, account: FakeAccount, *, from_: str, to: str, body: str = "", direction: str = "inbound",
                    status: str | None = None, sent_at: dt.datetime | None = None,
                    media: list[tuple[str, bytes]] = (), date_sent_text: str | None = None,
                    sid: str | None = None) -> FakeMessage:
        message = FakeMessage(
            sid=sid or _sid("SM" if not media else "MM"), account_sid=account.sid, from_=from_, to=to, body=body,
            direction=direction, status=status or ("received" if direction == "inbound" else "sent"),
            sent_at=sent_at if sent_at is not None else dt.datetime.now(dt.UTC).replace(microsecond=0),
            date_sent_text=date_sent_text,
            media=[FakeMedia(_sid("ME"), content_type, content) for content_type, content in media],
        )
        with self._lock:
            account.messages[message.sid] = message
        return message

    def set_status(self, account: FakeAccount, sid: str, status: str) -> None:
        account.messages[sid].status = status

    def fail(self, path_regex: str, status: int, *, times: int = 1, retry_after: str | None = None) -> None:
        """The next ``times`` requests whose path matches answer ``status`` (429 with Retry-After)."""
        self._failures.append(_FailRule(re.compile(path_regex), status, times, retry_after))

    def calls(self, path_regex: str) -> list[str]:
        return [target for _method, target in self.requests if re.search(path_regex, target)]

    # --- webhooks --------------------------------------------------------------------------

    @staticmethod
    def signed_webhook(auth_token: str, url: str, params: dict[str, str]) -> dict[str, str]:
        """The X-Twilio-Signature Twilio would send for a form POST of ``params`` to ``url``."""
        return {"X-Twilio-Signature": RequestValidator(auth_token).compute_signature(url, params)}

    # --- HTTP ----------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Any) -> Response:
        with self._lock:
            self.requests.append((method, target))
        parsed = urllib.parse.urlsplit(target)
        for rule in self._failures:
            if rule.times > 0 and rule.pattern.search(parsed.path):
                rule.times -= 1
                extra = {"Retry-After": rule.retry_after} if rule.retry_after else {}
                return twilio_error(rule.status, 20429 if rule.status == 429 else 20500, "Injected failure", extra)
        if method != "GET":
            return twilio_error(405, 20004, "Method not allowed")
        match = re.fullmatch(r"/2010-04-01/Accounts/(AC[0-9a-f]{32})(/.*)?", parsed.path)
        if not match:
            return twilio_error(404, 20404, "The requested resource was not found")
        account = self.accounts.get(match.group(1))
        if account is None or not self._authorized(account, headers.get("Authorization") or ""):
            return twilio_error(401, 20003, "Authenticate")
        rest = match.group(2) or ""
        params = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
        if rest == ".json":
            return self._json({"sid": account.sid, "friendly_name": "Fake account", "status": "active",
                               "type": "Full", "uri": f"/2010-04-01/Accounts/{account.sid}.json"})
        if rest == "/IncomingPhoneNumbers.json":
            records = [{"sid": f"PN{index:032x}", "phone_number": number, "friendly_name": number}
                       for index, number in enumerate(account.numbers)]
            return self._page(parsed.path, params, "incoming_phone_numbers", records)
        if rest == "/Messages.json":
            return self._messages(account, parsed.path, params)
        media = re.fullmatch(r"/Messages/(\w+)/Media(?:\.json|/(\w+?)(\.json)?)", rest)
        if media:
            message = account.messages.get(media.group(1))
            if message is None:
                return twilio_error(404, 20404, "The requested resource was not found")
            if media.group(2) is None:
                records = [{"sid": m.sid, "account_sid": account.sid, "parent_sid": message.sid,
                            "content_type": m.content_type,
                            "uri": f"/2010-04-01/Accounts/{account.sid}/Messages/{message.sid}/Media/{m.sid}.json"}
                           for m in message.media]
                return self._page(parsed.path, params, "media_list", records)
            item = next((m for m in message.media if m.sid == media.group(2)), None)
            if item is None:
                return twilio_error(404, 20404, "The requested resource was not found")
            return 200, {"Content-Type": item.content_type}, item.content
        return twilio_error(404, 20404, "The requested resource was not found")

    @staticmethod
    def _authorized(account: FakeAccount, header: str) -> bool:
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        if user == account.sid:
            return secrets.compare_digest(password, account.auth_token)
        return user in account.api_keys and secrets.compare_digest(password, account.api_keys[user])

    @staticmethod
    def _json(body: dict[str, Any]) -> Response:
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def _page(self, path: str, params: dict[str, str], key: str, records: list[dict[str, Any]]) -> Response:
        try:
            size = int(params.get("PageSize", "50"))
            page = int(params.get("Page", "0"))
        except ValueError:
            return twilio_error(400, 20001, "Invalid paging parameter")
        if not 1 <= size <= 1000:
            return twilio_error(400, 20007, "PageSize must be between 1 and 1000")
        chunk = records[page * size:(page + 1) * size]
        query = {k: v for k, v in params.items() if k not in ("Page", "PageToken")}
        next_uri = None
        if (page + 1) * size < len(records):
            next_uri = f"{path}?{urllib.parse.urlencode({**query, 'Page': page + 1, 'PageToken': f'PA{page + 1}'})}"
        return self._json({key: chunk, "next_page_uri": next_uri, "page": page, "page_size": size,
                           "start": page * size, "end": page * size + len(chunk) - 1,
                           "uri": f"{path}?{urllib.parse.urlencode(params)}", "first_page_uri": path,
                           "previous_page_uri": None})

    def _messages(self, account: FakeAccount, path: str, params: dict[str, str]) -> Response:
        try:
            after = _filter_date(params.get("DateSent>"), end=False)
            before = _filter_date(params.get("DateSent<"), end=True)
            on = params.get("DateSent")
        except ValueError:
            return twilio_error(400, 20001, "Invalid DateSent")
        with self._lock:
            found = list(account.messages.values())
        selected = []
        for message in found:
            if "To" in params and params["To"] not in message.to.split(","):
                continue
            if "From" in params and params["From"] != message.from_:
                continue
            when = message.sent_at
            if when is None and (after or before or on):
                continue
            if after is not None and when < after or before is not None and when > before:
                continue
            if on and when.date().isoformat() != on[:10]:
                continue
            selected.append(message)
        selected.sort(key=lambda m: (m.sent_at or dt.datetime.max.replace(tzinfo=dt.UTC), m.sid), reverse=True)
        return self._page(path, params, "messages", [m.record(self.base_url) for m in selected])


def _filter_date(value: str | None, *, end: bool) -> dt.datetime | None:
    """A DateSent bound: YYYY-MM-DD (the whole day: its end for an upper bound) or a full UTC time."""
    if not value:
        return None
    if len(value) == 10:
        day = dt.datetime.fromisoformat(value).replace(tzinfo=dt.UTC)
        return day + dt.timedelta(days=1, microseconds=-1) if end else day
    return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
        self._answer("GET")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self._answer("POST")

    def _answer(self, method: str) -> None:
        fake: FakeTwilio = self.server.fake  # type: ignore[attr-defined]
        try:
            status, headers, body = fake.handle(method, self.path, self.headers)
        except Exception as error:  # a bug in the fake: say so instead of hanging the client
            status, headers, body = twilio_error(500, 20500, f"fake error: {error!r}")
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass
