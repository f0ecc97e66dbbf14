"""A local fake of Google's Gmail API v1 and OAuth endpoints, served over real HTTP so the real
client libraries (googleapiclient, google-auth, google-auth-oauthlib) can be pointed at it.

    with FakeGmail() as fake:
        box = fake.add_mailbox("u@example.com")
        box.add(b"From: a@b\\r\\n\\r\\nhi")
        tokens = fake.issue_tokens("u@example.com")

Standalone (benchmarks):  python -m tests.fakes.gmail --email bench@example.com --synthetic 20000
"""

from __future__ import annotations

import argparse
import http
import json
import re
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from tests.fakes.google_mailbox import (
    HISTORY_TYPES,
    BadQuery,
    HistoryExpired,
    Mailbox,
    Message,
    Query,
    parse_query,
)
from tests.fakes.google_oauth import (
    GMAIL_READONLY,
    GMAIL_SCOPES,
    METADATA_SCOPE,
    MODIFY_SCOPES,
    AccessToken,
    OAuthState,
    Response,
    json_response,
)
from tests.fakes.google_synthetic import synthetic_message

__all__ = ["FakeGmail", "Mailbox"]

MAX_BATCH_PARTS = 100
_API_PREFIX = re.compile(r"^/gmail/v1/users/(?P<user>[^/]+)/(?P<rest>.*)$")
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
_REASON_MESSAGES = {"rateLimitExceeded": "Rate Limit Exceeded", "userRateLimitExceeded": "User Rate Limit Exceeded",
                    "backendError": "Backend Error", "quotaExceeded": "Quota Exceeded"}


def google_error(status: int, message: str, reason: str, *, domain: str = "global",
                 headers: dict[str, str] | None = None, **extra: str) -> Response:
    """The JSON error envelope Google APIs answer with."""
    detail = {"message": message, "domain": domain, "reason": reason, **extra}
    body = {"error": {"code": status, "message": message, "errors": [detail],
                      "status": _STATUS_NAMES.get(status, "UNKNOWN")}}
    return json_response(status, body, headers)


def _unauthenticated() -> Response:
    return google_error(
        401, "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or "
        "other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        "authError", location="Authorization", locationType="header",
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'})


def _not_found() -> Response:
    return google_error(404, "Requested entity was not found.", "notFound")


def _bad_request(message: str) -> Response:
    return google_error(400, message, "invalidArgument")


@dataclass
class _FailRule:
    method: str
    pattern: re.Pattern[str]
    status: int
    remaining: int
    reason: str
    retry_after: int | None


class _Headers:
    """Case-insensitive header lookup over a plain mapping (batch parts) or http.client headers."""

    def __init__(self, items: Mapping[str, str]) -> None:
        self._items = {k.lower(): v for k, v in items.items()}

    def get(self, name: str) -> str | None:
        return self._items.get(name.lower())


class FakeGmail:
    """A Gmail API v1 + Google OAuth server on 127.0.0.1 (see module docstring)."""

    client_id = "fake-client-id"
    client_secret = "fake-client-secret"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host, self._port = host, port
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        self._mailboxes: dict[str, Mailbox] = {}
        self._oauth = OAuthState("", self.client_id, self.client_secret,
                                 mailbox_exists=lambda e: e.lower() in self._mailboxes, ensure_mailbox=self._ensure)
        self._failures: list[_FailRule] = []
        self.requests: list[tuple[str, str]] = []
        self.batch_parts = 0

    # --- lifecycle

    def start(self) -> FakeGmail:
        server = ThreadingHTTPServer((self._host, self._port), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self.url = f"http://{self._host}:{server.server_address[1]}"
        self._oauth.base_url = self.url
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="fake-gmail", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def settings(self) -> dict[str, str]:
        """Django settings that point the real libraries at this server."""
        return {
            "GMAIL_API_ENDPOINT": self.url, "GOOGLE_TOKEN_URI": self.url + "/token",
            "GOOGLE_AUTH_URI": self.url + "/o/oauth2/auth", "GOOGLE_OIDC_CERTS_URL": self.url + "/oauth2/v1/certs",
            "GOOGLE_CLIENT_ID": self.client_id, "GOOGLE_CLIENT_SECRET": self.client_secret,
        }

    def reset(self) -> None:
        """Forget mailboxes, tokens, codes, consent, failures and the request log."""
        with self._lock:
            self._mailboxes.clear()
            self._oauth.reset()
            self._failures.clear()
            self.requests.clear()
            self.batch_parts = 0

    # --- users and tokens

    def add_mailbox(self, email: str) -> Mailbox:
        with self._lock:
            if email.lower() in self._mailboxes:
                raise ValueError(f"mailbox {email} exists")
            box = Mailbox(email, self._lock, first_history_id=1000 * (len(self._mailboxes) + 1) + 7)
            self._mailboxes[email.lower()] = box
            return box

    def mailbox(self, email: str) -> Mailbox:
        return self._mailboxes[email.lower()]

    def _ensure(self, email: str) -> Mailbox:
        with self._lock:
            return self._mailboxes.get(email.lower()) or self.add_mailbox(email)

    def issue_tokens(self, email: str, *, expires_in: int = 3600,
                     scopes: tuple[str, ...] | list[str] = (GMAIL_READONLY,)) -> dict[str, Any]:
        """Tokens as if `email` had consented (creates the mailbox if needed)."""
        with self._lock:
            self._ensure(email)
            return self._oauth.issue_tokens(email, expires_in, scopes)

    def revoke(self, email: str) -> None:
        """The user revoked access: refresh -> 400 invalid_grant, access -> 401."""
        with self._lock:
            self._oauth.revoke(email)

    def expire_access_tokens(self, email: str) -> None:
        with self._lock:
            self._oauth.expire_access_tokens(email)

    def create_service_account(self, client_email: str, *, domains: list[str]) -> dict[str, Any]:
        """A service-account key file (dict) with domain-wide delegation over `domains`."""
        with self._lock:
            return self._oauth.create_service_account(client_email, domains)

    def consent_as(self, email: str) -> None:
        """The consent page will approve as `email` (mailbox created if needed)."""
        with self._lock:
            self._ensure(email)
            self._oauth.consent_email, self._oauth.consent_denied = email, False

    def untick_on_consent(self, *scopes: str) -> None:
        """The user will untick these scopes on the consent page: the code grants the others."""
        with self._lock:
            self._oauth.consent_unticked = frozenset(scopes)

    def deny_consent(self) -> None:
        with self._lock:
            self._oauth.consent_denied = True

    @property
    def token_endpoint_failure(self) -> int | None:
        return self._oauth.token_endpoint_failure

    @token_endpoint_failure.setter
    def token_endpoint_failure(self, status: int | None) -> None:
        self._oauth.token_endpoint_failure = status

    def sign_id_token(self, audience: str, *, email: str = "push@fake-project.iam.gserviceaccount.com",
                      issuer: str = "https://accounts.google.com", expires_in: int = 3600,
                      untrusted_key: bool = False) -> str:
        """An OIDC token like a Pub/Sub push subscription sends, verifiable against /oauth2/v1/certs."""
        return self._oauth.sign_id_token(audience, email=email, issuer=issuer, expires_in=expires_in,
                                         untrusted_key=untrusted_key)

    def fail(self, method: str, path_regex: str, status: int, *, times: int = 1,
             reason: str = "rateLimitExceeded", retry_after: int | None = None) -> None:
        """The next `times` requests (or batch parts) whose path matches answer `status` with a
        Google error body carrying `reason`."""
        with self._lock:
            self._failures.append(_FailRule(method.upper(), re.compile(path_regex), status, times, reason,
                                            retry_after))

    # --- request handling

    def _injected_failure(self, method: str, path: str) -> Response | None:
        with self._lock:
            for rule in self._failures:
                if rule.remaining > 0 and rule.method in (method, "*") and rule.pattern.search(path):
                    rule.remaining -= 1
                    headers = {"Retry-After": str(rule.retry_after)} if rule.retry_after is not None else None
                    domain = "usageLimits" if "Limit" in rule.reason or "quota" in rule.reason.lower() else "global"
                    message = _REASON_MESSAGES.get(rule.reason, http.HTTPStatus(rule.status).phrase)
                    return google_error(rule.status, message, rule.reason, domain=domain, headers=headers)
        return None

    def _handle_http(self, method: str, target: str, headers: _Headers, body: bytes) -> Response:
        path = urllib.parse.urlsplit(target).path
        self.requests.append((method, path))
        if method == "POST" and path in ("/batch", "/batch/gmail/v1"):
            failure = self._injected_failure(method, path)
            return failure or self._batch(headers, body)
        return self._dispatch(method, target, headers, body)

    def _dispatch(self, method: str, target: str, headers: _Headers, body: bytes) -> Response:
        split = urllib.parse.urlsplit(target)
        path = split.path
        failure = self._injected_failure(method, path)
        if failure is not None:
            return failure
        params = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        if path == "/oauth2/v1/certs" and method == "GET":
            return self._oauth.certs()
        if path == "/o/oauth2/auth" and method == "GET":
            with self._lock:
                return self._oauth.authorize({k: v[-1] for k, v in params.items()})
        if path == "/token" and method == "POST":
            form = {k: v[-1] for k, v in urllib.parse.parse_qs(body.decode(), keep_blank_values=True).items()}
            with self._lock:
                return self._oauth.token(form, headers.get("Authorization"))
        match = _API_PREFIX.match(path)
        if match is None:
            return _not_found()
        response = self._api(method, urllib.parse.unquote(match["user"]), match["rest"], params, headers, body)
        if response[0] == 200 and params.get("fields"):
            try:
                mask = _parse_fields(params["fields"][-1])
            except ValueError:
                return _bad_request("Invalid field selection")
            return json_response(200, _apply_fields(json.loads(response[2]), mask))
        return response

    def _api(self, method: str, user: str, rest: str, params: dict[str, list[str]], headers: _Headers,
             body: bytes) -> Response:
        """Mimics gmail.googleapis.com/gmail/v1/users/{userId}/..."""
        with self._lock:
            token = self._oauth.check_bearer(headers.get("Authorization"))
            if token is None:
                return _unauthenticated()
            if user != "me" and user.lower() != token.email.lower():
                return google_error(403, f"Delegation denied for {token.email}", "forbidden")
            box = self._mailboxes.get(token.email.lower())
            if box is None:
                return _unauthenticated()
            if token.scopes.isdisjoint(GMAIL_SCOPES):
                return google_error(403, "Request had insufficient authentication scopes.", "insufficientPermissions")
            one = {k: v[-1] for k, v in params.items()}
            if method == "GET" and rest == "profile":
                return json_response(200, box.profile())
            if method == "GET" and rest == "labels":
                return json_response(200, {"labels": box.labels_json()})
            if method == "GET" and rest == "messages":
                return self._list_messages(box, token, params, one)
            if method == "GET" and rest == "history":
                return self._list_history(box, params, one)
            if method == "POST" and rest == "watch":
                return self._watch(box, body)
            if method == "POST" and rest == "stop":
                box.stop_calls += 1
                return 204, {}, b""
            modify_match = re.fullmatch(r"messages/([^/]+)/modify", rest)
            if method == "POST" and modify_match:
                return self._modify(box, token, modify_match[1], body)
            msg_match = re.fullmatch(r"messages/([^/]+)", rest)
            if method == "GET" and msg_match:
                msg = box.get(msg_match[1])
                if msg is None:
                    return _not_found()
        if method == "GET" and msg_match:
            # Outside the lock: a lazy message may be generated and encoded here.
            return self._get_message(msg, token, params, one)
        return _not_found()

    @staticmethod
    def _int_param(one: dict[str, str], name: str, default: int, maximum: int) -> int:
        value = int(one.get(name) or default)
        if value < 1:
            raise ValueError(name)
        return min(value, maximum)

    def _list_messages(self, box: Mailbox, token: AccessToken, params: dict[str, list[str]],
                       one: dict[str, str]) -> Response:
        """users.messages.list: newest first, labelIds must all match, SPAM/TRASH hidden by default."""
        try:
            max_results = self._int_param(one, "maxResults", 100, 500)
        except ValueError:
            return _bad_request("Invalid maxResults")
        q = one.get("q", "")
        if q and _metadata_only(token):
            return google_error(403, "Metadata scope does not support 'q' parameter", "forbidden")
        try:
            query = parse_query(q, box.label_for_name) if q else Query()
            query.required = query.required | frozenset(params.get("labelIds", []))
            query.anywhere = query.anywhere or one.get("includeSpamTrash", "false").lower() == "true"
            return json_response(200, box.list_messages(query, max_results, one.get("pageToken") or None))
        except BadQuery as exc:
            return _bad_request(str(exc))

    def _list_history(self, box: Mailbox, params: dict[str, list[str]], one: dict[str, str]) -> Response:
        """users.history.list: records after startHistoryId, ascending; 404 once expired."""
        start = one.get("startHistoryId")
        if not start:
            return google_error(400, "Missing required parameter: startHistoryId", "required")
        types = frozenset(params.get("historyTypes", []))
        if not start.isdigit() or not types <= HISTORY_TYPES:
            return _bad_request("Invalid value")
        try:
            max_results = self._int_param(one, "maxResults", 100, 500)
            page = one.get("pageToken") or None
            if page is not None and not page.isdigit():
                return _bad_request("Invalid pageToken")
            return json_response(200, box.list_history(int(start), types, one.get("labelId"), max_results, page))
        except ValueError:
            return _bad_request("Invalid maxResults")
        except HistoryExpired:
            return _not_found()

    def _watch(self, box: Mailbox, body: bytes) -> Response:
        """users.watch: records the request; answers historyId and a 7-day expiration."""
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return _bad_request("Invalid JSON payload received.")
        topic = request.get("topicName", "") if isinstance(request, dict) else ""
        if not re.fullmatch(r"projects/[^/]+/topics/[^/]+", topic):
            return _bad_request("Invalid topicName does not match projects/SOME_ANY_PROJECT_ID/topics/SOME_ANY_TOPIC")
        box.watch_requests.append(request)
        expiration = int((time.time() + 7 * 86400) * 1000)
        return json_response(200, {"historyId": str(box.history_id), "expiration": str(expiration)})

    def _modify(self, box: Mailbox, token: AccessToken, message_id: str, body: bytes) -> Response:
        """users.messages.modify: needs gmail.modify (or full access); answers the message's
        id, threadId and labelIds; the label change is recorded in the history."""
        if token.scopes.isdisjoint(MODIFY_SCOPES):
            return google_error(403, "Request had insufficient authentication scopes.", "insufficientPermissions")
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return _bad_request("Invalid JSON payload received.")
        if not isinstance(request, dict):
            return _bad_request("Invalid JSON payload received.")
        add, remove = list(request.get("addLabelIds") or []), list(request.get("removeLabelIds") or [])
        if not add and not remove:
            return _bad_request("No label add or removes specified")
        msg = box.get(message_id)
        if msg is None:
            return _not_found()
        try:
            box.label(message_id, add=add, remove=remove)
        except ValueError:
            return _bad_request("Invalid label: " + ", ".join(add))
        box.modify_requests.append((message_id, add, remove))
        return json_response(200, {"id": msg.id, "threadId": msg.thread_id, "labelIds": list(msg.labels)})

    def _get_message(self, msg: Message, token: AccessToken, params: dict[str, list[str]],
                     one: dict[str, str]) -> Response:
        """users.messages.get in format minimal | metadata | full | raw."""
        fmt = one.get("format", "full").lower()
        if fmt not in ("minimal", "metadata", "full", "raw"):
            return _bad_request(f"Invalid value at 'format' ({fmt})")
        if fmt in ("raw", "full") and _metadata_only(token):
            return google_error(403, f"Metadata scope doesn't allow format {fmt.upper()}", "forbidden")
        # A lazy message is generated once per request, whatever the format needs it for.
        raw = msg.raw_bytes() if msg.raw is None and (fmt == "raw" or msg.meta is None) else None
        meta = msg.get_meta(raw)
        result: dict[str, Any] = {"id": msg.id, "threadId": msg.thread_id}
        if msg.labels:
            result["labelIds"] = list(msg.labels)
        result.update(snippet=meta.snippet, sizeEstimate=msg.size, historyId=str(msg.history_id),
                      internalDate=str(msg.internal_ms))
        if fmt in ("metadata", "full"):
            wanted = {h.lower() for h in params.get("metadataHeaders", [])}
            headers = [{"name": n, "value": v} for n, v in meta.headers if not wanted or n.lower() in wanted]
            result["payload"] = {"partId": "", "mimeType": meta.mime_type, "filename": "", "headers": headers}
            if fmt == "full":
                result["payload"]["body"] = {"size": msg.size}
        if fmt != "raw":
            return json_response(200, result)
        # Spliced in by hand: json.dumps over a 27 MB base64 string would double the cost.
        head = json.dumps(result).encode()[:-1]
        return 200, {"Content-Type": "application/json; charset=UTF-8"}, b"".join(
            (head, b', "raw": "', msg.raw_b64(raw), b'"}'))

    def _batch(self, headers: _Headers, body: bytes) -> Response:
        """Mimics POST /batch/gmail/v1 (and the discovery doc's /batch): multipart/mixed of
        application/http parts, answered part by part with echoed Content-IDs."""
        ctype = headers.get("Content-Type") or ""
        boundary_match = re.search(r'boundary="?([^";]+)"?', ctype)
        if not ctype.lower().startswith("multipart/mixed") or boundary_match is None:
            return _bad_request("Batch requests must be multipart/mixed")
        delimiter = b"--" + boundary_match[1].encode()
        chunks = body.split(delimiter)[1:]
        parts = [c for c in chunks if not c.startswith(b"--")]
        if len(parts) > MAX_BATCH_PARTS:
            return _bad_request(f"A batch request cannot contain more than {MAX_BATCH_PARTS} calls")
        with self._lock:
            self.batch_parts += len(parts)
        out_boundary = "batch_" + uuid.uuid4().hex
        out: list[bytes] = []
        for part in parts:
            part_headers, inner = _split_head(part.lstrip(b"\r\n"))
            content_id = part_headers.get("Content-ID") or ""
            request_line, inner_headers, inner_body = _parse_inner_request(inner)
            method, target = request_line[0], request_line[1]
            if not any(k.lower() == "authorization" for k in inner_headers) and headers.get("Authorization"):
                inner_headers["Authorization"] = headers.get("Authorization") or ""
            if urllib.parse.urlsplit(target).path.startswith("/batch"):
                status, resp_headers, resp_body = _bad_request("Nested batch requests are not allowed")
            else:
                status, resp_headers, resp_body = self._dispatch(method, target, _Headers(inner_headers), inner_body)
            echoed = f"<response-{content_id[1:]}" if content_id.startswith("<") else content_id
            lines = [f"--{out_boundary}", "Content-Type: application/http", f"Content-ID: {echoed}", "",
                     f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}"]
            lines += [f"{k}: {v}" for k, v in resp_headers.items()]
            lines += [f"Content-Length: {len(resp_body)}", "", ""]
            out.append("\r\n".join(lines).encode())
            out.append(resp_body + b"\r\n")
        out.append(f"--{out_boundary}--\r\n".encode())
        return 200, {"Content-Type": f"multipart/mixed; boundary={out_boundary}"}, b"".join(out)


FieldMask = dict[str, "FieldMask | None"]


def _parse_fields(spec: str) -> FieldMask:
    """Google's partial-response syntax: `a,b/c,d(e,f)`."""
    mask: FieldMask = {}
    depth, start, items = 0, 0, []
    for i, ch in enumerate(spec + ","):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if depth < 0:
            raise ValueError(spec)
        if ch == "," and depth == 0:
            items.append(spec[start:i].strip())
            start = i + 1
    if depth:
        raise ValueError(spec)
    for item in filter(None, items):
        sub = None
        if "(" in item:
            if not item.endswith(")"):
                raise ValueError(spec)
            item, sub = item[: item.index("(")], _parse_fields(item[item.index("(") + 1: -1])
        node = mask
        names = item.split("/")
        for name in names[:-1]:
            child = node.get(name)
            if child is None:
                child = node[name] = {}
            node = child
        node[names[-1]] = sub
    return mask


def _apply_fields(value: Any, mask: FieldMask | None) -> Any:
    if mask is None:
        return value
    if isinstance(value, list):
        return [_apply_fields(v, mask) for v in value]
    if isinstance(value, dict):
        return {k: _apply_fields(value[k], sub) for k, sub in mask.items() if k in value}
    return value


def _metadata_only(token: AccessToken) -> bool:
    return METADATA_SCOPE in token.scopes and len(token.scopes & GMAIL_SCOPES) == 1


def _split_head(data: bytes) -> tuple[dict[str, str], bytes]:
    """Split a header block from its body; tolerates the bare-LF line ends googleapiclient sends."""
    match = re.search(rb"\r?\n\r?\n", data)
    head, rest = (data[: match.start()], data[match.end():]) if match else (data, b"")
    headers: dict[str, str] = {}
    for line in re.split(rb"\r?\n", head):
        name, sep, value = line.decode("latin-1").partition(":")
        if sep:
            headers[name.strip()] = value.strip()
    return headers, rest


def _parse_inner_request(data: bytes) -> tuple[list[str], dict[str, str], bytes]:
    first, _, rest = data.partition(b"\n")
    request_line = first.decode("latin-1").strip().split(" ")
    headers, body = _split_head(rest) if not rest.startswith((b"\r\n", b"\n")) else ({}, rest.lstrip(b"\r\n"))
    length = next((v for k, v in headers.items() if k.lower() == "content-length"), None)
    body = body[: int(length)] if length else body.rstrip(b"\r\n")
    return request_line, headers, body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: httplib2 and requests reuse connections
    # Headers and body go out in two writes: with Nagle's algorithm each answer would wait
    # ~40 ms for the client's delayed ACK (Google's servers do not).
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fake: FakeGmail = self.server.fake  # type: ignore[attr-defined]
        try:
            status, headers, payload = fake._handle_http(self.command, self.path, _Headers(dict(self.headers)), body)
        except Exception as exc:  # noqa: BLE001 - a fake bug must surface as a 500, not a hung client
            status, headers, payload = google_error(500, f"fake error: {exc!r}", "backendError")
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


def fill_synthetic(box: Mailbox, count: int, *, big_every: int = 0, big_bytes: int = 0,
                   now: datetime | None = None) -> None:
    """Fill `box` with `count` lazily generated deterministic messages (oldest first)."""
    now = now or datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    thread_ids: dict[int, str] = {}
    for i in range(count):
        syn = synthetic_message(i, owner=box.email, total=count, now=now, big_every=big_every, big_bytes=big_bytes)
        msg_id = box.add_lazy(syn.size, syn.make, labels=syn.labels, internal_date=syn.internal_date,
                              thread_id=thread_ids.get(syn.thread_group))
        if syn.first_in_thread:
            thread_ids[syn.thread_group] = msg_id


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Gmail API until killed.")
    parser.add_argument("--email", required=True)
    parser.add_argument("--synthetic", type=int, default=0, help="number of synthetic messages")
    parser.add_argument("--big-every", type=int, default=0, help="every Nth message gets a big attachment")
    parser.add_argument("--big-bytes", type=int, default=0, help="size of that attachment")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    fake = FakeGmail(port=args.port).start()
    box = fake.add_mailbox(args.email)
    fill_synthetic(box, args.synthetic, big_every=args.big_every, big_bytes=args.big_bytes)
    tokens = fake.issue_tokens(args.email, expires_in=24 * 3600)
    print(json.dumps({"url": fake.url, "access_token": tokens["access_token"],
                      "refresh_token": tokens["refresh_token"], "email": args.email}), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
