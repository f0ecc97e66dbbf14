"""A local fake of Microsoft's identity platform and Graph mail API, over TLS (tests/fakes/graph_tls.py
makes a CA only the tests trust), so the real msal and requests can be pointed at it.

    with FakeGraph() as fake:
        box = fake.add_mailbox("u@example.com")
        message_id = box.add(subject="Hi", sender="carol@acme.com")
        box.move(message_id, "Archive"); box.mark(message_id, is_read=True); box.delete(message_id)

Served: ``/{tenant}/v2.0/.well-known/openid-configuration``, ``/{tenant}/oauth2/v2.0/authorize``
(302 back with code and state, or ``error=access_denied``), ``/{tenant}/oauth2/v2.0/token``
(authorization code with PKCE S256, refresh with rotation, ``invalid_grant`` once revoked), and
under ``/v1.0``: ``/me``, mail folders, ``messages/delta`` (nextLink/deltaLink, ``@removed``,
updated entries carrying only what changed; tokens made invalid with ``expire_deltas`` answer
410 Gone, ``syncStateNotFound`` or ``resyncRequired``), ``messages`` with ``$filter``, a
message's ``internetMessageHeaders``, ``$value`` (MIME), attachments, JSON ``$batch`` and
subscriptions (create with the validation handshake, renew, delete), and ``PATCH`` of a message's
``isRead`` (needs Mail.ReadWrite: 403 ErrorAccessDenied without it; the change shows in the
delta). Tokens carry scopes: the consent page grants what the sign-in asked for, minus what a test
unticks (``untick_on_consent``); a refresh grants what it asks for, which must be among what the
refresh token was granted (else ``invalid_grant``, consent_required). Failures (429 with
Retry-After...) are injected with ``fail``. Delta and listing tokens are stateless (they
encode their position), so a nextLink can be followed again after a failure.

Standalone (benchmarks): ``python -m tests.fakes.graph --synthetic 20000`` prints one JSON line
(url, tenant, client id and secret, CA path, the account's credentials) and serves until killed.
"""
from __future__ import annotations

import argparse
import base64
import bisect
import dataclasses
import datetime as dt
import hashlib
import itertools
import json
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from tests.fakes.graph_tls import TlsFiles, make_tls

Response = tuple[int, dict[str, str], bytes]
TENANT = "fake-tenant"
CLIENT_ID = "00000000-fake-4c1e-8d1e-000000000001"
CLIENT_SECRET = "fake-client-secret-value"
MAX_SUBSCRIPTION_MINUTES = 10_080
READ_SCOPES = ("Mail.Read", "User.Read")
MAIL_READ_WRITE = "Mail.ReadWrite"
OPENID_SCOPES = ("openid", "profile", "offline_access")
_ids = itertools.count(1)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(body).encode()


def graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    return json_response(status, {"error": {"code": code, "message": message, "innerError": {
        "request-id": secrets.token_hex(8), "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")}}}, headers)


def oauth_error(error: str, description: str, status: int = 400) -> Response:
    return json_response(status, {"error": error, "error_description": description, "error_codes": [70000]})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _encode(value: Any) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def _decode(value: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))


def _graph_scopes(scope: str) -> list[str]:
    """The Graph scopes of a space-separated ``scope`` (resource prefix dropped), without the OpenID ones."""
    names = [item.rsplit("/", 1)[-1] for item in scope.split()]
    return [name for name in dict.fromkeys(names) if name and name.lower() not in (*OPENID_SCOPES, "email")]


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the mailbox ---------------------------------------------------------------------------------

@dataclasses.dataclass
class Attachment:
    id: str
    name: str
    content_type: str
    content: bytes
    inline: bool = False


@dataclasses.dataclass
class Message:
    id: str
    folder: str
    folder_seq: int  # when it entered its folder
    fields: dict[str, Any]  # the Graph JSON (without id)
    headers: list[dict[str, str]]  # internetMessageHeaders ([] for items in Sent Items)
    mime_headers: dict[str, str]
    attachments: list[Attachment]
    deleted: bool = False

    def entry(self) -> dict[str, Any]:
        return {"@odata.type": "#microsoft.graph.message", "id": self.id, **self.fields}

    def mime(self) -> bytes:
        head = "".join(f"{name}: {value}\r\n" for name, value in self.mime_headers.items())
        body = self.fields["body"]["content"]
        return (head + "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n").encode()


class Mailbox:
    """One user's mail: messages in folders, and a log of what changed in each folder."""

    def __init__(self, email: str, lock: threading.RLock) -> None:
        self.email = email
        self.user_id = f"{secrets.token_hex(4)}-user-{next(_ids)}"
        self.lock = lock
        self.seq = 0
        self.messages: dict[str, Message] = {}
        self.order: dict[str, tuple[list[int], list[str]]] = {}  # folder -> (folder_seqs, ids), ascending
        self.log: dict[str, tuple[list[int], list[str]]] = {}  # folder -> (seqs, ids) of changes
        self.epoch = 0  # bumped by expire_deltas: older delta tokens are refused
        self.expiry_mode = "gone"
        self.folders = {"inbox": "Inbox", "sentitems": "SentItems", "archive": "Archive"}

    def _tick(self) -> int:
        self.seq += 1
        return self.seq

    def _log(self, folder: str, message_id: str, seq: int) -> None:
        seqs, ids = self.log.setdefault(folder.lower(), ([], []))
        seqs.append(seq)
        ids.append(message_id)

    def _enter(self, message: Message, folder: str) -> None:
        seq = self._tick()
        message.folder, message.folder_seq = folder, seq
        seqs, ids = self.order.setdefault(folder.lower(), ([], []))
        seqs.append(seq)
        ids.append(message.id)
        self._log(folder, message.id, seq)

    def add(self, *, subject: str = "", sender: str = "carol@acme.com", to: str | None = None, body: str = "",
            html: bool = False, folder: str = "Inbox", received: dt.datetime | None = None,
            internet_message_id: str = "", in_reply_to: str = "", references: str = "",
            conversation_id: str = "", is_read: bool = False, flagged: bool = False,
            attachments: list[tuple[str, str, bytes]] | None = None, is_draft: bool = False,
            reply: bool | None = None, sent_date: str | None = None) -> str:
        """Adds a message; returns its immutable id."""
        with self.lock:
            number = next(_ids)
            message_id = f"AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0AimmutableFake{number:08d}"
            received = received or dt.datetime.now(dt.UTC)
            rfc_id = internet_message_id or f"<outlook-{number}-{secrets.token_hex(3)}@example.com>"
            is_reply = bool(in_reply_to or references) if reply is None else reply
            index = secrets.token_bytes(27 if is_reply else 22)
            to = to if to is not None else (self.email if folder.lower() != "sentitems" else "dave@example.org")
            mime = {"From": sender, "To": to, "Subject": subject or f"Message {number}",
                    "Date": received.strftime("%a, %d %b %Y %H:%M:%S +0000"), "Message-ID": rfc_id}
            if in_reply_to:
                mime["In-Reply-To"] = in_reply_to
            if references:
                mime["References"] = references
            fields = {
                "conversationId": conversation_id or f"AAQkConversation{number:06d}",
                "conversationIndex": base64.b64encode(index).decode(),
                "internetMessageId": rfc_id, "subject": subject or f"Message {number}",
                "from": {"emailAddress": {"name": sender.split("@")[0].title(), "address": sender}},
                "toRecipients": [{"emailAddress": {"name": "", "address": address.strip()}}
                                 for address in to.split(",") if address.strip()],
                "ccRecipients": [], "bccRecipients": [],
                "body": {"contentType": "html" if html else "text", "content": body or f"Body number {number}"},
                "receivedDateTime": _iso(received), "sentDateTime": sent_date or _iso(received),
                "hasAttachments": bool(attachments), "isRead": is_read, "isDraft": is_draft,
                "flag": {"flagStatus": "flagged" if flagged else "notFlagged"},
            }
            # Items in Sent Items were never transmitted to this mailbox: Graph has no headers for them.
            headers = [] if folder.lower() == "sentitems" else [{"name": k, "value": v} for k, v in mime.items()]
            message = Message(message_id, folder, 0, fields, headers, mime, [
                Attachment(f"ATT{next(_ids):06d}", name, content_type, content)
                for name, content_type, content in attachments or ()])
            self.messages[message_id] = message
            self._enter(message, folder)
            return message_id

    def move(self, message_id: str, folder: str) -> None:
        """Moves a message (its immutable id stays): removed from one folder's delta, created in the other's."""
        with self.lock:
            message = self.messages[message_id]
            self._log(message.folder, message_id, self._tick())
            self._enter(message, folder)

    def delete(self, message_id: str) -> None:
        with self.lock:
            message = self.messages[message_id]
            message.deleted = True
            self._log(message.folder, message_id, self._tick())

    def mark(self, message_id: str, *, is_read: bool | None = None, flagged: bool | None = None) -> None:
        with self.lock:
            message = self.messages[message_id]
            if is_read is not None:
                message.fields["isRead"] = is_read
            if flagged is not None:
                message.fields["flag"] = {"flagStatus": "flagged" if flagged else "notFlagged"}
            self._log(message.folder, message_id, self._tick())

    def expire_deltas(self, mode: str = "gone") -> None:
        """Every delta and skip token handed out so far is refused: ``mode`` "gone" (410),
        "syncStateNotFound" or "resyncRequired" (400 with that code)."""
        with self.lock:
            self.epoch += 1
            self.expiry_mode = mode

    def live(self, folder: str) -> list[Message]:
        return [m for m in self.messages.values() if m.folder.lower() == folder.lower() and not m.deleted]

    def snapshot(self) -> Any:
        return sorted((m.id, m.folder, m.deleted, json.dumps(m.fields, sort_keys=True)) for m in self.messages.values())

    # --- what the API reads

    def in_folder(self, message: Message, folder: str) -> bool:
        return not message.deleted and message.folder.lower() == folder.lower()

    def initial_page(self, folder: str, upto: int, after: int, size: int) -> tuple[list[Message], int | None]:
        """Messages in ``folder`` that entered it in (after, upto], ascending; the last seq if more follow."""
        seqs, ids = self.order.get(folder.lower(), ([], []))
        start = bisect.bisect_right(seqs, after)
        page, last = [], after
        for position in range(start, len(seqs)):
            if seqs[position] > upto:
                return page, None
            message = self.messages[ids[position]]
            last = seqs[position]
            if message.folder_seq == seqs[position] and self.in_folder(message, folder):
                page.append(message)
                if len(page) >= size:
                    more = position + 1 < len(seqs) and seqs[position + 1] <= upto
                    return page, last if more else None
        return page, None

    def changes(self, folder: str, since: int, upto: int) -> list[str]:
        """Ids touched in ``folder`` in (since, upto], each once, in order of their last change."""
        seqs, ids = self.log.get(folder.lower(), ([], []))
        touched: dict[str, None] = {}
        for position in range(bisect.bisect_right(seqs, since), bisect.bisect_right(seqs, upto)):
            touched.pop(ids[position], None)
            touched[ids[position]] = None
        return list(touched)


# --- the server ------------------------------------------------------------------------------------

@dataclasses.dataclass
class _FailRule:
    method: str
    pattern: re.Pattern[str]
    status: int
    times: int
    headers: dict[str, str]
    code: str


class FakeGraph:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, directory: Path | None = None) -> None:
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="fake-graph-")
        self.tls: TlsFiles = make_tls(directory or Path(self._tmp.name))
        self.lock = threading.RLock()
        self.server = _Server((host, port), _Handler)
        self.server.fake = self
        self.server.socket = self.tls.server_context().wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://{host}:{self.server.server_address[1]}"
        self.thread: threading.Thread | None = None
        # Called with (url, validation token) when a subscription is created; returns what the
        # endpoint answered (its body). None: the handshake is skipped.
        self.validator: Callable[[str, str], tuple[int, str]] | None = None
        self.reset()

    # --- lifecycle

    def start(self) -> Self:
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-graph", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def settings(self) -> dict[str, str]:
        return {"MS_AUTHORITY_HOST": self.url, "MS_TENANT": TENANT, "MS_CLIENT_ID": CLIENT_ID,
                "MS_CLIENT_SECRET": CLIENT_SECRET, "GRAPH_API_BASE_URL": self.url + "/v1.0"}

    def reset(self) -> None:
        with self.lock:
            self.mailboxes: dict[str, Mailbox] = {}
            self.access: dict[str, tuple[str, float, frozenset[str]]] = {}  # token -> (email, expires at, scopes)
            self.refresh: dict[str, tuple[str, tuple[str, ...]]] = {}  # token -> (email, scopes granted)
            self.codes: dict[str, dict[str, str]] = {}
            self.subscriptions: dict[str, dict[str, Any]] = {}
            self.rules: list[_FailRule] = []
            self.requests: list[tuple[str, str, dict[str, str]]] = []  # (method, path, headers)
            self.consent_email: str | None = None
            self.denied = False
            self.unticked: frozenset[str] = frozenset()  # lower-case scopes the consent page will not grant
            self.counts: dict[str, int] = {"graph": 0, "attachments": 0, "token": 0}
            self.validator = None

    # --- test controls

    def add_mailbox(self, email: str) -> Mailbox:
        with self.lock:
            box = self.mailboxes[email] = Mailbox(email, self.lock)
            return box

    def mailbox(self, email: str) -> Mailbox:
        return self.mailboxes[email]

    def consent_as(self, email: str) -> None:
        self.consent_email, self.denied = email, False
        if email not in self.mailboxes:
            self.add_mailbox(email)

    def deny_consent(self) -> None:
        self.denied = True

    def untick_on_consent(self, *scopes: str) -> None:
        """The user will untick these scopes on the consent page: the code grants the others."""
        self.unticked = frozenset(scope.lower() for scope in scopes)

    def revoke(self, email: str) -> None:
        """The user withdrew consent: refresh and access tokens stop working."""
        with self.lock:
            self.refresh = {token: value for token, value in self.refresh.items() if value[0] != email}
            self.access = {token: value for token, value in self.access.items() if value[0] != email}

    def expire_access_tokens(self, email: str) -> None:
        with self.lock:
            self.access = {token: value for token, value in self.access.items() if value[0] != email}

    def fail(self, method: str, path_regex: str, status: int, *, times: int = 1,
             headers: dict[str, str] | None = None, code: str = "") -> None:
        """The next ``times`` requests matching answer ``status`` (Graph's error envelope)."""
        default = {429: "TooManyRequests", 503: "ServiceUnavailable", 504: "GatewayTimeout", 410: "Gone"}
        self.rules.append(_FailRule(method, re.compile(path_regex), status, times, headers or {},
                                    code or default.get(status, "ErrorInternalServerError")))

    def graph_requests(self, pattern: str = "") -> list[tuple[str, str, dict[str, str]]]:
        return [r for r in self.requests if "/v1.0/" in r[1] and re.search(pattern, r[1])]

    def issue_tokens(self, email: str, *, expires_in: int = 3600, scopes: tuple[str, ...] | list[str] = READ_SCOPES,
                     access_scopes: tuple[str, ...] | list[str] | None = None) -> dict[str, Any]:
        """Tokens as the token endpoint gives them (msal's cache is made from such an answer):
        a refresh token granted ``scopes`` and an access token of ``access_scopes`` (default: all
        of them; a subset when a refresh asked for less)."""
        with self.lock:
            box = self.mailboxes.get(email) or self.add_mailbox(email)
            access, refresh = "eyJ0eXAi.fake-at-" + secrets.token_urlsafe(24), "0.fake-rt-" + secrets.token_urlsafe(24)
            carried = list(scopes if access_scopes is None else access_scopes)
            self.access[access] = (email, time.time() + expires_in, frozenset(scope.lower() for scope in carried))
            self.refresh[refresh] = (email, tuple(scopes))
            return {"token_type": "Bearer", "scope": " ".join([*carried, *OPENID_SCOPES]), "expires_in": expires_in,
                    "ext_expires_in": expires_in, "access_token": access, "refresh_token": refresh,
                    "id_token": self._id_token(box, nonce=None),
                    "client_info": b64url(json.dumps({"uid": box.user_id, "utid": TENANT}).encode())}

    def _id_token(self, box: Mailbox, nonce: str | None) -> str:
        now = int(time.time())
        claims = {"iss": f"{self.url}/{TENANT}/v2.0", "aud": CLIENT_ID, "sub": box.user_id, "oid": box.user_id,
                  "tid": TENANT, "iat": now, "nbf": now, "exp": now + 3600, "preferred_username": box.email,
                  "name": box.email.split("@")[0].title(), "ver": "2.0"}
        if nonce:
            claims["nonce"] = nonce
        header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        return f"{header}.{b64url(json.dumps(claims).encode())}."

    def notification(self, subscription_id: str, client_state: str | None = None, **extra: Any) -> bytes:
        """A change notification body as Graph posts it."""
        subscription = self.subscriptions.get(subscription_id, {})
        return json.dumps({"value": [{
            "subscriptionId": subscription_id,
            "clientState": subscription.get("clientState") if client_state is None else client_state,
            "changeType": "created", "resource": "Users/x/Messages/y", "tenantId": TENANT,
            "subscriptionExpirationDateTime": subscription.get("expirationDateTime"),
            "resourceData": {"@odata.type": "#Microsoft.Graph.Message", "id": "y"}, **extra}]}).encode()

    def lifecycle(self, subscription_id: str, event: str, client_state: str | None = None) -> bytes:
        return self.notification(subscription_id, client_state, lifecycleEvent=event)

    # --- dispatch

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        with self.lock:
            self.requests.append((method, target, headers))
        split = urllib.parse.urlsplit(target)
        path, query = split.path, dict(urllib.parse.parse_qsl(split.query, keep_blank_values=True))
        for rule in self.rules:
            if rule.times > 0 and rule.method == method and rule.pattern.search(target):
                rule.times -= 1
                return graph_error(rule.status, rule.code, "Injected failure.", rule.headers)
        if path == "/_stats":
            return json_response(200, self.counts)
        if path.startswith("/v1.0/"):
            return self._graph(method, path[len("/v1.0"):], query, headers, body)
        if path == f"/{TENANT}/v2.0/.well-known/openid-configuration":
            base = f"{self.url}/{TENANT}"
            return json_response(200, {
                "issuer": f"{base}/v2.0", "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token", "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_types_supported": ["code"], "scopes_supported": ["openid", "profile", "offline_access"],
            })
        if path == f"/{TENANT}/oauth2/v2.0/authorize" and method == "GET":
            return self._authorize(query)
        if path == f"/{TENANT}/oauth2/v2.0/token" and method == "POST":
            self.counts["token"] += 1
            return self._token(dict(urllib.parse.parse_qsl(body.decode())))
        return graph_error(404, "ResourceNotFound", f"No route {method} {path}")

    # --- identity platform

    def _authorize(self, query: dict[str, str]) -> Response:
        redirect = query.get("redirect_uri", "")
        if query.get("client_id") != CLIENT_ID or not redirect:
            return oauth_error("unauthorized_client", "AADSTS700016: unknown application")
        if self.denied:
            params = {"error": "access_denied", "error_description": "AADSTS65004: User declined to consent.",
                      "state": query.get("state", "")}
            return 302, {"Location": redirect + "?" + urllib.parse.urlencode(params)}, b""
        if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
            return oauth_error("invalid_request", "AADSTS50148: PKCE S256 required")
        code = "0.fake-code-" + secrets.token_urlsafe(24)
        granted = [scope for scope in _graph_scopes(query.get("scope", "")) if scope.lower() not in self.unticked]
        self.codes[code] = {"email": self.consent_email or "", "challenge": query["code_challenge"],
                            "redirect_uri": redirect, "nonce": query.get("nonce", ""), "scopes": granted}
        params = {"code": code, "state": query.get("state", ""), "session_state": secrets.token_hex(8)}
        return 302, {"Location": redirect + "?" + urllib.parse.urlencode(params)}, b""

    def _token(self, form: dict[str, str]) -> Response:
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return oauth_error("invalid_client", "AADSTS7000215: Invalid client secret provided.", 401)
        grant = form.get("grant_type")
        if grant == "authorization_code":
            record = self.codes.pop(form.get("code", ""), None)
            if record is None:
                return oauth_error("invalid_grant", "AADSTS70008: The provided authorization code has expired or "
                                                    "was already redeemed.")
            verifier = form.get("code_verifier", "")
            if b64url(hashlib.sha256(verifier.encode()).digest()) != record["challenge"]:
                return oauth_error("invalid_grant", "AADSTS501481: The Code_Verifier does not match the "
                                                    "code_challenge.")
            if form.get("redirect_uri") != record["redirect_uri"]:
                return oauth_error("invalid_grant", "AADSTS50148: redirect_uri mismatch.")
            tokens = self.issue_tokens(record["email"], scopes=record["scopes"])
            box = self.mailboxes[record["email"]]
            tokens["id_token"] = self._id_token(box, record["nonce"] or None)
            return json_response(200, tokens)
        if grant == "refresh_token":
            token = form.get("refresh_token", "")
            found = self.refresh.pop(token, None)  # rotated: one use (pop: atomic against a racing refresh)
            if found is None:
                return oauth_error("invalid_grant", "AADSTS700082: The refresh token has expired or was revoked.")
            email, granted = found
            asked = _graph_scopes(form.get("scope", "")) or list(granted)
            if {scope.lower() for scope in asked} - {scope.lower() for scope in granted}:
                self.refresh[token] = found  # refused: the token stays usable for what it was granted
                answer = oauth_error("invalid_grant", "AADSTS65001: The user or administrator has not consented "
                                                      "to use the application.")
                return json_response(400, {**json.loads(answer[2]), "suberror": "consent_required"})
            return json_response(200, self.issue_tokens(email, scopes=granted, access_scopes=asked))
        return oauth_error("unsupported_grant_type", "AADSTS70003: unsupported grant")

    # --- Graph

    def _graph(self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes) -> Response:
        auth = headers.get("authorization", "")
        owner = self.access.get(auth[7:]) if auth.lower().startswith("bearer ") else None
        if owner is None or owner[1] < time.time():
            return graph_error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.")
        box = self.mailboxes[owner[0]]
        if path == "/$batch" and method == "POST":
            self.counts["graph"] += 1
            return self._batch(box, headers, body)
        self.counts["attachments" if "/attachments/" in path and path.endswith("/$value") else "graph"] += 1
        return self.route(box, method, path, query, headers, body, scopes=owner[2])

    def route(self, box: Mailbox, method: str, path: str, query: dict[str, str], headers: dict[str, str],
              body: bytes, *, scopes: frozenset[str] = frozenset()) -> Response:
        """One Graph call of ``box``; ``scopes``: those the access token carries (lower case)."""
        immutable = 'idtype="immutableid"' in headers.get("prefer", "").lower()
        parts = [urllib.parse.unquote(part) for part in path.strip("/").split("/")]
        if parts == ["me"]:
            return json_response(200, {"id": box.user_id, "mail": box.email, "userPrincipalName": box.email,
                                       "displayName": box.email.split("@")[0].title()})
        if parts[:2] == ["me", "mailFolders"] and len(parts) == 3:
            if parts[2].lower() not in box.folders:
                return graph_error(404, "ErrorInvalidIdMalformed", "Id is malformed.")
            return json_response(200, {"id": parts[2], "displayName": box.folders[parts[2].lower()],
                                       "totalItemCount": len(box.live(parts[2]))})
        if parts[:2] == ["me", "mailFolders"] and parts[3:] == ["messages", "delta"]:
            if parts[2].lower() not in box.folders:
                return graph_error(404, "ErrorInvalidIdMalformed", "Id is malformed.")
            if not immutable:
                return graph_error(400, "FakeNeedsImmutableIds", "This fake only serves immutable ids.")
            return self._delta(box, parts[2], query, headers)
        if parts[:2] == ["me", "mailFolders"] and parts[3:] == ["messages"]:
            return self._list(box, parts[2], query)
        if method == "PATCH" and (parts[:2] == ["me", "messages"] and len(parts) == 3
                                  or parts[0] == "users" and parts[2:3] == ["messages"] and len(parts) == 4):
            return self._patch(box, parts[-1], scopes, body)
        if parts[:2] == ["me", "messages"] and len(parts) >= 3:
            message = box.messages.get(parts[2])
            if message is None or message.deleted:
                return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
            rest = parts[3:]
            if rest == []:
                if query.get("$select") == "internetMessageHeaders":
                    return json_response(200, {"id": message.id, "internetMessageHeaders": message.headers})
                return json_response(200, message.entry())
            if rest == ["$value"]:
                return 200, {"Content-Type": "message/rfc822"}, message.mime()
            if rest == ["attachments"]:
                return json_response(200, {"value": [
                    {"@odata.type": "#microsoft.graph.fileAttachment", "id": a.id, "name": a.name,
                     "contentType": a.content_type, "size": len(a.content), "isInline": a.inline}
                    for a in message.attachments]})
            if len(rest) == 3 and rest[0] == "attachments" and rest[2] == "$value":
                found = next((a for a in message.attachments if a.id == rest[1]), None)
                if found is None:
                    return graph_error(404, "ErrorItemNotFound", "No such attachment.")
                return 200, {"Content-Type": found.content_type}, found.content
        if parts[0] == "subscriptions":
            return self._subscriptions(method, parts[1:], body)
        return graph_error(400, "BadRequest", f"Unsupported {method} {path}")

    def _patch(self, box: Mailbox, message_id: str, scopes: frozenset[str], body: bytes) -> Response:
        """PATCH of a message: Mail.ReadWrite is needed (a Mail.Read token is denied, as by Graph);
        only ``isRead`` is supported, and the change is logged for the delta like any other."""
        if MAIL_READ_WRITE.lower() not in scopes:
            return graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        message = box.messages.get(message_id)
        if message is None or message.deleted:
            return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        try:
            changes = json.loads(body or b"{}")
        except ValueError:
            return graph_error(400, "BadRequest", "Invalid JSON.")
        if not isinstance(changes, dict) or set(changes) - {"isRead"} or not isinstance(changes.get("isRead"), bool):
            return graph_error(400, "FakeUnsupported", "This fake only changes isRead.")
        box.mark(message_id, is_read=changes["isRead"])
        return json_response(200, message.entry())

    def _delta(self, box: Mailbox, folder: str, query: dict[str, str], headers: dict[str, str]) -> Response:
        size = 10
        match = re.search(r"odata\.maxpagesize=(\d+)", headers.get("prefer", ""))
        if match:
            size = max(1, min(1000, int(match.group(1))))
        token = query.get("$skiptoken") or query.get("$deltatoken")
        link = f"{self.url}/v1.0/me/mailFolders/{folder}/messages/delta"
        if token:
            try:
                state = _decode(token)
            except ValueError:
                return graph_error(400, "InvalidSyncStateData", "The sync state is not valid.")
            if state.get("epoch") != box.epoch or state.get("folder") != folder.lower():
                if box.expiry_mode == "gone":
                    return graph_error(410, "SyncStateNotFound", "The sync state was reset.",
                                       {"Location": link + "?$deltatoken="})
                return graph_error(400, box.expiry_mode, "The sync state was reset.")
        else:
            state = {"folder": folder.lower(), "epoch": box.epoch, "mode": "initial", "upto": box.seq, "after": 0,
                     "since": None}
            if "$filter" in query:
                match = re.search(r"receivedDateTime ge (\S+)", query["$filter"])
                state["since"] = match.group(1) if match else None
        if "$deltatoken" in query:  # a new round: the changes since the last one
            state = {**state, "mode": "changes", "since_seq": state["upto"], "upto": box.seq, "offset": 0}
        values: list[dict[str, Any]] = []
        more = False
        if state["mode"] == "initial":
            page, last = box.initial_page(folder, state["upto"], state["after"], size)
            values = [m.entry() for m in page if not state.get("since") or m.fields["receivedDateTime"] >= state["since"]]
            if last is not None:
                state, more = {**state, "after": last}, True
        else:
            touched = box.changes(folder, state["since_seq"], state["upto"])
            chunk = touched[state["offset"]:state["offset"] + size]
            for message_id in chunk:
                message = box.messages[message_id]
                if box.in_folder(message, folder):
                    if message.folder_seq > state["since_seq"]:
                        values.append(message.entry())
                    else:  # an update: the id and (at least) what changed
                        values.append({"@odata.type": "#microsoft.graph.message", "id": message.id,
                                       "isRead": message.fields["isRead"], "flag": message.fields["flag"]})
                else:
                    values.append({"@odata.type": "#microsoft.graph.message", "id": message_id,
                                   "@removed": {"reason": "deleted"}})
            if state["offset"] + size < len(touched):
                state, more = {**state, "offset": state["offset"] + size}, True
        answer: dict[str, Any] = {"@odata.context": f"{self.url}/v1.0/$metadata#Collection(message)", "value": values}
        if more:
            answer["@odata.nextLink"] = f"{link}?$skiptoken={_encode(state)}"
        else:
            final = {"folder": folder.lower(), "epoch": box.epoch, "upto": state["upto"]}
            answer["@odata.deltaLink"] = f"{link}?$deltatoken={_encode(final)}"
        return json_response(200, answer)

    def _list(self, box: Mailbox, folder: str, query: dict[str, str]) -> Response:
        bounds = re.findall(r"receivedDateTime (ge|lt) (\S+)", query.get("$filter", ""))
        found = box.live(folder)
        for operator, value in bounds:
            found = [m for m in found if (m.fields["receivedDateTime"] >= value if operator == "ge"
                                          else m.fields["receivedDateTime"] < value)]
        found.sort(key=lambda m: (m.fields["receivedDateTime"], m.folder_seq), reverse=True)
        top, skip = int(query.get("$top") or 10), int(query.get("$skip") or 0)
        answer: dict[str, Any] = {"value": [m.entry() for m in found[skip:skip + top]]}
        if skip + top < len(found):
            params = {**query, "$skip": str(skip + top)}
            answer["@odata.nextLink"] = (f"{self.url}/v1.0/me/mailFolders/{folder}/messages?"
                                         + urllib.parse.urlencode(params))
        return json_response(200, answer)

    def _batch(self, box: Mailbox, headers: dict[str, str], body: bytes) -> Response:
        try:
            requests_ = json.loads(body)["requests"]
        except (ValueError, KeyError, TypeError):
            return graph_error(400, "BadRequest", "Invalid batch payload.")
        if len(requests_) > 20:
            return graph_error(400, "BadRequest", "The batch exceeds 20 requests.")
        responses = []
        for inner in requests_:
            inner_headers = {**{k.lower(): v for k, v in (inner.get("headers") or {}).items()},
                             "authorization": headers.get("authorization", "")}
            split = urllib.parse.urlsplit(inner["url"])
            target = "/v1.0" + split.path + (f"?{split.query}" if split.query else "")
            status, answer_headers, payload = self.handle(inner.get("method", "GET"), target, inner_headers, b"")
            self.counts["graph"] -= 1  # counted once, as the batch
            part: dict[str, Any] = {"id": inner["id"], "status": status, "headers": answer_headers}
            if payload:
                part["body"] = json.loads(payload) if answer_headers.get("Content-Type") == "application/json" \
                    else base64.b64encode(payload).decode()
            responses.append(part)
        return json_response(200, {"responses": responses})

    def _subscriptions(self, method: str, rest: list[str], body: bytes) -> Response:
        data = json.loads(body) if body else {}
        if method == "POST" and not rest:
            expires = dt.datetime.fromisoformat(data["expirationDateTime"])
            if expires > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=MAX_SUBSCRIPTION_MINUTES):
                return graph_error(400, "ExtensionError", "Subscription expiration can only be 10070 minutes "
                                                          "in the future.")
            if not data.get("notificationUrl", "").startswith("https://") or len(data.get("clientState", "")) > 128:
                return graph_error(400, "ValidationError", "The notification URL must be https.")
            if self.validator is not None:
                for url in (data["notificationUrl"], data.get("lifecycleNotificationUrl")):
                    if not url:
                        continue
                    token = "Validation: Testing client application reachability " + secrets.token_hex(6)
                    status, echoed = self.validator(url, token)
                    if status != 200 or echoed != token:
                        return graph_error(400, "ValidationError", "Subscription validation request failed.")
            subscription = {**data, "id": f"sub-{secrets.token_hex(8)}"}
            self.subscriptions[subscription["id"]] = subscription
            return json_response(201, {k: v for k, v in subscription.items() if k != "clientState"})
        subscription = self.subscriptions.get(rest[0]) if rest else None
        if subscription is None:
            return graph_error(404, "ResourceNotFound", "The object was not found.")
        if method == "PATCH":
            subscription["expirationDateTime"] = data.get("expirationDateTime")
            return json_response(200, {k: v for k, v in subscription.items() if k != "clientState"})
        if method == "DELETE":
            del self.subscriptions[rest[0]]
            return 204, {}, b""
        return graph_error(405, "MethodNotAllowed", method)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeGraph


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK wait

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        try:
            status, answer_headers, payload = self.server.fake.handle(self.command, self.path, headers, body)
        except Exception as error:  # noqa: BLE001  a fake bug surfaces as a 500, not a hung client
            status, answer_headers, payload = graph_error(500, "FakeBug", repr(error))
        self.send_response(status)
        for name, value in answer_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload:
            self.wfile.write(payload)

    do_GET = do_POST = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


def fill_synthetic(box: Mailbox, count: int, *, reply_every: int = 10, attachment_every: int = 0) -> None:
    """``count`` messages over the last days: 90 % in Inbox, every ``reply_every``-th a reply."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for number in range(count):
        reply = reply_every and number % reply_every == 1
        box.add(subject=f"{'RE: ' if reply else ''}Synthetic {number // 3}", sender=f"person{number % 500}@acme.com",
                body=f"<p>Hello, synthetic message {number}.</p><p>Regards</p>", html=number % 2 == 0,
                folder="SentItems" if number % 10 == 9 else "Inbox",
                received=now - dt.timedelta(minutes=count - number),
                in_reply_to=f"<synthetic-{number - 1}@acme.com>" if reply else "",
                references=f"<synthetic-{number - 1}@acme.com>" if reply else "",
                internet_message_id=f"<synthetic-{number}@acme.com>",
                attachments=[("a.txt", "text/plain", b"x" * 100)] if attachment_every and
                number % attachment_every == 0 else None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a fake Microsoft Graph until killed.")
    parser.add_argument("--email", default="bench@contoso.example")
    parser.add_argument("--synthetic", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    fake = FakeGraph(port=args.port).start()
    box = fake.add_mailbox(args.email)
    fill_synthetic(box, args.synthetic)
    tokens = fake.issue_tokens(args.email, expires_in=24 * 3600)
    print(json.dumps({"url": fake.url, "ca_path": str(fake.tls.ca_path), "email": args.email, "tokens": tokens,
                      "settings": fake.settings()}), flush=True)
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
