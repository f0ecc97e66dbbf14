"""GmailBatch: the batch request of the Gmail client (googleapiclient's BatchHttpRequest, leaner).

Kept from the library: ``add``/``execute``, the resending of parts answered 401, callbacks and
the JSON post-processing of each part. Replaced:

- the refresh before resending 401 parts goes through the client's ``refresh`` (fresh_credentials:
  under the account's lock, persisted) instead of the library's in-place, unpersisted refresh;
- the multipart/mixed wire format is written and read directly (``_execute``). The library builds
  and parses it with the email package, header folding and all, which cost 1 ms per part (more
  than parsing the messages) and held a batch's answer about six times over. Here the answer is
  split by index and each part's body copied once.

The format (developers.google.com/workspace/gmail/api/guides/batch): each part is
``Content-Type: application/http`` with a ``Content-ID``, holding one request (path only); each
answer part echoes ``Content-ID: <response-...>`` and holds a whole HTTP response.
"""
from __future__ import annotations

import re
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httplib2
from googleapiclient import _auth
from googleapiclient.errors import BatchError, HttpError
from googleapiclient.http import BatchHttpRequest, HttpRequest

from integrations.providers.base import ProviderError


class GmailBatch(BatchHttpRequest):
    """A batch request; see the module docstring. ``redone``: parts answered 401 were resent;
    ``refresh_error``: the refresh before that failed (the caller raises it)."""

    def __init__(self, *, refresh: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._refresh = refresh
        self.redone = False
        self.refresh_error: ProviderError | None = None

    def _refresh_and_apply_credentials(self, request: HttpRequest, http: Any) -> None:
        if not self.redone:
            self.redone = True
            try:
                self._refresh()
            except ProviderError as error:
                # The library resends the parts anyway (they come back 401 again); the caller
                # raises this error once the batch returns.
                self.refresh_error = error
        # The parts' transport holds the shared credentials object, refreshed in place: the
        # resent parts are serialised with the new token.

    def _execute(self, http: Any, order: list[str], requests: dict[str, HttpRequest]) -> None:
        boundary = f"batch_{uuid.uuid4().hex}"
        body = "".join(
            f"--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n"
            f"Content-ID: {self._id_to_header(request_id)}\r\n\r\n{_serialize(requests[request_id])}\r\n"
            for request_id in order
        ) + f"--{boundary}--\r\n"
        resp, content = http.request(self._batch_uri, method="POST", body=body,
                                     headers={"content-type": f'multipart/mixed; boundary="{boundary}"'})
        if resp.status >= 300:
            raise HttpError(resp, content, uri=self._batch_uri)
        for content_id, part_resp, part_content in _split_batch(resp.get("content-type", ""), content):
            self._responses[self._header_to_id(content_id)] = (part_resp, part_content)
        missing = [request_id for request_id in order if request_id not in self._responses]
        if missing:
            raise BatchError(f"The batch answer lacks {len(missing)} of its {len(order)} parts", resp=resp)


def _serialize(request: HttpRequest) -> str:
    """One request of a batch in application/http form (request line, headers, body)."""
    parsed = urllib.parse.urlsplit(request.uri)
    target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    headers = dict(request.headers)
    credentials = _auth.get_credentials_from_http(request.http) if request.http is not None else None
    if credentials is not None:
        _auth.apply_credentials(credentials, headers)
    lines = [f"{request.method} {target} HTTP/1.1", f"Host: {parsed.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items() if name.lower() not in ("host", "content-length")]
    if request.body is not None:
        body = request.body.decode() if isinstance(request.body, bytes) else request.body
        return "\r\n".join([*lines, f"Content-Length: {len(body.encode())}", "", body])
    return "\r\n".join([*lines, "", ""])


def _split_batch(content_type: str, content: bytes) -> Iterator[tuple[str, httplib2.Response, bytes]]:
    """(Content-ID, response, body) of each part of a multipart/mixed batch answer."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if match is None:
        raise BatchError("The batch answer is not multipart/mixed")
    delimiter = b"--" + match.group(1).encode()
    position = content.find(delimiter)
    while position >= 0:
        start = position + len(delimiter)
        if content.startswith(b"--", start):
            return
        end = content.find(delimiter, start)
        if end < 0:
            raise BatchError("The batch answer is cut short")
        outer_end, outer = _headers_at(content, start, end)
        status_end = content.find(b"\n", outer_end, end)
        status_line = content[outer_end:status_end].decode("latin-1").strip()
        inner_end, inner = _headers_at(content, status_end + 1, end)
        _version, status, reason = (status_line.split(" ", 2) + ["", ""])[:3]
        response = httplib2.Response({**inner, "status": status})
        response.reason = reason
        body_end = end - 2 if content[end - 2:end] == b"\r\n" else end - 1 if content[end - 1:end] == b"\n" else end
        yield outer.get("content-id", ""), response, content[inner_end:body_end]
        position = end


def _headers_at(content: bytes, start: int, limit: int) -> tuple[int, dict[str, str]]:
    """The header block starting at ``start`` (leading blank lines skipped): where its body
    starts, and its headers, names lower-cased."""
    while content.startswith(b"\r\n", start) or content.startswith(b"\n", start):
        start += 2 if content.startswith(b"\r\n", start) else 1
    headers: dict[str, str] = {}
    while start < limit:
        line_end = content.find(b"\n", start, limit)
        if line_end < 0:
            line_end = limit
        line = content[start:line_end].rstrip(b"\r")
        start = line_end + 1
        if not line:
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return start, headers
