"""A local fake of an OpenAI-compatible chat-completions endpoint (POST /v1/chat/completions),
for the LLM suggestion engine's tests. The real ``openai`` client talks to it.

``FakeChat.mode`` decides the answer: "valid" (``FakeChat.answer`` as JSON content), "invalid"
(content that is not JSON), "slow" (waits ``delay`` seconds before answering), "error" (HTTP 500).
Every request body is kept in ``requests``.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeChat:
    def __init__(self) -> None:
        self.mode = "valid"
        self.delay = 2.0
        self.answer: dict[str, Any] = {"action": True, "title": "Review the Q4 proposal", "description": "Bob asks.",
                                       "priority": "high", "due": "2026-03-06", "confidence": 0.93,
                                       "reasoning": "Direct request with a deadline."}
        self.requests: list[dict[str, Any]] = []
        self.url = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if not self.path.endswith("/chat/completions"):
                    self._send(404, {"error": {"message": "no such route"}})
                    return
                fake.requests.append(json.loads(body or b"{}"))
                if fake.mode == "slow":
                    time.sleep(fake.delay)
                if fake.mode == "error":
                    self._send(500, {"error": {"message": "boom", "type": "server_error"}})
                    return
                content = "Sure! Here you go: {action: yes" if fake.mode == "invalid" else json.dumps(fake.answer)
                self._send(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                    "model": "fake-model",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })

            def _send(self, status: int, data: dict[str, Any]) -> None:
                payload = json.dumps(data).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

        return Handler


@contextmanager
def running() -> Iterator[FakeChat]:
    """A FakeChat serving on a free loopback port; ``fake.url`` is its base URL (…/v1)."""
    fake = FakeChat()
    server = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
