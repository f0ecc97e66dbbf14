"""Fixtures of the trigger tests: a loopback webhook receiver, recorded queueing, stored messages."""
from __future__ import annotations

import importlib.util
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from automation.models import Trigger
from conversations.ingest import store_batch
from conversations.models import Communication
from tests.factories import message

DOCS = Path(__file__).resolve().parents[2] / "docs"


def load_verify_snippet() -> Any:
    """The README's verification snippet, docs/verify_webhook.py, imported from its file."""
    spec = importlib.util.spec_from_file_location("verify_webhook", DOCS / "verify_webhook.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module.verify_webhook


@dataclass
class Receiver:
    """A tiny HTTP server on loopback: answers from ``script`` (then ``default``) and records each request."""

    url: str
    port: int
    script: list[tuple[int, bytes, dict[str, str]]] = field(default_factory=list)
    default: tuple[int, bytes, dict[str, str]] = (200, b"ok", {})
    requests: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0  # TCP connections accepted

    def answer(self, *responses: tuple[int, bytes] | tuple[int, bytes, dict[str, str]]) -> None:
        self.script.extend((r[0], r[1], r[2] if len(r) > 2 else {}) for r in responses)

    def json(self, index: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[index]["body"])


def _start(protocol: str = "HTTP/1.0") -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = protocol  # HTTP/1.1: keep-alive

        def setup(self) -> None:
            super().setup()
            with lock:
                holder["r"].connections += 1

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers.get("Content-Length", 0))
            body = self.rfile.read(length)
            receiver = holder["r"]
            with lock:
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, content, headers = receiver.script.pop(0) if receiver.script else receiver.default
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    holder["r"] = Receiver(url=f"http://127.0.0.1:{port}/hook", port=port)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["r"]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _start()


@pytest.fixture
def second_receiver() -> Iterator[Receiver]:
    yield from _start()


@pytest.fixture
def keepalive_receiver() -> Iterator[Receiver]:
    """A receiver that keeps connections alive (HTTP/1.1), as most real ones do."""
    yield from _start("HTTP/1.1")


@pytest.fixture(autouse=True)
def _empty_pool() -> Iterator[None]:
    """Each test starts and ends with no kept-alive connection."""
    from automation.triggers import outbound

    outbound.pool.clear()
    yield
    outbound.pool.clear()


@pytest.fixture(autouse=True)
def _trigger_settings(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # users made fast
    # The receiver is on loopback; retries come at once (the tests run the attempts themselves).
    settings.TRIGGERS_ALLOW_PRIVATE_TARGETS = True
    settings.TRIGGERS_RETRY_BASE_SECONDS = 0
    settings.TRIGGERS_RETRY_MAX_SECONDS = 0
    settings.TRIGGERS_TIMEOUT_SECONDS = 2
    settings.TRIGGERS_MAX_ATTEMPTS = 3


@pytest.fixture
def queued(monkeypatch) -> list[tuple[int, Any]]:
    """Records the deliveries queued (no qcluster in tests): (delivery id, when or None)."""
    calls: list[tuple[int, Any]] = []
    monkeypatch.setattr("automation.triggers.services.queue_delivery",
                        lambda delivery_id, at=None: calls.append((delivery_id, at)))
    monkeypatch.setattr("automation.receivers.async_task", lambda *args, **kwargs: calls.append(args))
    return calls


@pytest.fixture
def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def store(account, **fields: Any) -> Communication:
    """Stores one message (tests.factories.message fields) and returns it."""
    parsed = message(**fields)
    store_batch(account, [parsed])
    return Communication.objects.get(account=account, provider_message_id=parsed.provider_message_id)


def webhook(owner, url: str, **fields: Any) -> Trigger:
    secret = fields.pop("secret", "whsec_test_secret_0123456789")
    trigger = Trigger(owner=owner, name=fields.pop("name", "hook"), url=url, **fields)
    trigger.set_secret(secret)
    trigger.save()
    return trigger
