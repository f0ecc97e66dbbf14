"""Outbound HTTP for webhooks, guarded against server-side request forgery (SSRF).

The target's host is resolved once (``resolve_host``, the seam tests replace); every address
it resolves to must be public, else the call is refused. The connection then goes to that
vetted address (an IP, with the Host header and TLS SNI/certificate check on the original
name), so a second, different DNS answer (rebinding) is never used. Redirects are not
followed, timeouts are short, and at most ``max_bytes`` of the response are read.

Connections are kept alive and reused (``pool``), but only per vetted (scheme, address, port,
host): every request is vetted afresh, and reuses a connection only to the address just
vetted; a host resolving elsewhere gets a new connection to its new (vetted) address.

TRIGGERS_ALLOW_PRIVATE_TARGETS lets loopback and private networks through (tests, a
receiver on the same LAN); unspecified, multicast and cloud-metadata addresses stay refused.
"""
from __future__ import annotations

import http.client
import ipaddress
import os
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services (AWS, GCP, Azure, Alibaba, Oracle; AWS's IPv6 one): refused even
# when private targets are allowed, since they hand out cloud credentials.
METADATA_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "169.254.169.254/32", "169.254.170.2/32", "100.100.100.200/32", "192.0.0.192/32", "fd00:ec2::254/128",
))
# Not flagged private/reserved by every Python version, yet never a public web server.
NON_PUBLIC_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15", "64:ff9b:1::/48", "2001:db8::/32",
))


class TargetRefused(Exception):
    """The URL may not be called (scheme, address). Final: retrying cannot help."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    address: IPAddress
    path: str  # path and query, as sent in the request line


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    duration_ms: int
    location: str = ""
    retry_after: int | None = None


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (getaddrinfo). Tests replace this function."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def refusal(address: IPAddress, *, allow_private: bool) -> str | None:
    """Why ``address`` may not be called, or None if it may."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or address.sixtofour
        if mapped is not None:  # ::ffff:127.0.0.1 reaches 127.0.0.1: judge what it reaches
            return refusal(mapped, allow_private=allow_private)
        if address.scope_id:
            return "a scoped (link-local) IPv6 address"
    if any(address in network for network in METADATA_NETWORKS):
        return "a cloud metadata address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if allow_private:
        return None
    for flag, label in (("is_loopback", "a loopback"), ("is_link_local", "a link-local"),
                        ("is_private", "a private"), ("is_reserved", "a reserved")):
        if getattr(address, flag):
            return f"{label} address"
    if any(address in network for network in NON_PUBLIC_NETWORKS) or not address.is_global:
        return "a non-public address"
    return None


def check_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an acceptable URL, without resolving it; TargetRefused otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise TargetRefused(f"Not a valid URL: {error}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetRefused("Only http and https URLs can be called.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise TargetRefused("The URL has no host.")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("Credentials in the URL are not allowed; the signature authenticates the call.")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return scheme, host, port or (443 if scheme == "https" else 80), path


def literal_refusal(url: str) -> str | None:
    """Why a URL is refused before any DNS lookup (scheme, an IP literal host), or None: used on save."""
    try:
        _scheme, host, _port, _path = check_url(url)
    except TargetRefused as error:
        return str(error)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    reason = refusal(address, allow_private=settings.TRIGGERS_ALLOW_PRIVATE_TARGETS)
    return f"{host} is {reason}." if reason else None


def vet(url: str) -> Target:
    """Resolves the URL's host once and checks every address; TargetRefused if any is refused."""
    scheme, host, port, path = check_url(url)
    allow_private: bool = settings.TRIGGERS_ALLOW_PRIVATE_TARGETS
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a) for a in resolve_host(host, port)]
        except (OSError, UnicodeError, ValueError) as error:
            raise ConnectionError(f"Cannot resolve {host}: {error}") from None
    if not addresses:
        raise ConnectionError(f"{host} resolves to no address")
    # Any refused address refuses the host: a mixed answer is how rebinding attacks start.
    for address in addresses:
        reason = refusal(address, allow_private=allow_private)
        if reason is not None:
            raise TargetRefused(f"{host} resolves to {address}, {reason}; refused.")
    return Target(scheme, host, port, addresses[0], path)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a fixed IP, with SNI and certificate verification on the original host name."""

    def __init__(self, address: str, port: int, server_hostname: str, timeout: float) -> None:
        super().__init__(address, port, timeout=timeout, context=ssl.create_default_context())
        self._server_hostname = server_hostname

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self._server_hostname)


class _Pool:
    """Idle keep-alive connections of this process, per vetted (scheme, address, port, host).

    The key is the address the guard vetted for this very request: a connection is only ever
    reused to the address it was opened to, and a host that now resolves elsewhere (vetted
    again on every request) gets a connection of its own. Few and short-lived: at most
    POOL_PER_KEY idle connections per key, POOL_KEYS keys, POOL_IDLE_SECONDS idle.
    A forked child (django-q2 workers) starts empty rather than share its parent's sockets.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: OrderedDict[tuple[str, str, int, str], list[tuple[float, http.client.HTTPConnection]]] = (
            OrderedDict())
        self._pid = os.getpid()

    def take(self, key: tuple[str, str, int, str]) -> http.client.HTTPConnection | None:
        now = time.monotonic()
        with self._lock:
            if self._pid != os.getpid():
                self._idle, self._pid = OrderedDict(), os.getpid()  # a fork: never the parent's sockets
            stack = self._idle.get(key)
            while stack:
                since, connection = stack.pop()
                if now - since <= POOL_IDLE_SECONDS and not _dropped(connection):
                    return connection
                connection.close()
        return None

    def give(self, key: tuple[str, str, int, str], connection: http.client.HTTPConnection) -> None:
        evicted: list[http.client.HTTPConnection] = []
        with self._lock:
            if self._pid != os.getpid():
                self._idle, self._pid = OrderedDict(), os.getpid()
            stack = self._idle.setdefault(key, [])
            self._idle.move_to_end(key)
            stack.append((time.monotonic(), connection))
            while len(stack) > POOL_PER_KEY:
                evicted.append(stack.pop(0)[1])
            while len(self._idle) > POOL_KEYS:
                _key, old = self._idle.popitem(last=False)
                evicted.extend(c for _t, c in old)
        for old_connection in evicted:
            old_connection.close()

    def clear(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, OrderedDict()
        for stack in idle.values():
            for _since, connection in stack:
                connection.close()


POOL_PER_KEY = 8
POOL_KEYS = 64
POOL_IDLE_SECONDS = 30.0
pool = _Pool()


def _dropped(connection: http.client.HTTPConnection) -> bool:
    """True if an idle connection cannot carry a request: gone, or readable (the server closed it,
    or sent something unasked), which an idle HTTP/1.1 connection never legitimately is."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        readable, _w, _x = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _open(target: Target, timeout: float) -> http.client.HTTPConnection:
    address = str(target.address)
    if target.scheme == "https":
        return _PinnedHTTPSConnection(address, target.port, target.host, timeout)
    return http.client.HTTPConnection(address, target.port, timeout=timeout)


class _NotSent(Exception):
    """The request failed before it was completely written: the server cannot have acted on it."""


def _send(connection: http.client.HTTPConnection, target: Target, body: bytes, headers: dict[str, str],
          timeout: float) -> None:
    default_port = 443 if target.scheme == "https" else 80
    host_header = target.host if ":" not in target.host else f"[{target.host}]"
    if target.port != default_port:
        host_header = f"{host_header}:{target.port}"
    connection.timeout = timeout
    if connection.sock is not None:
        connection.sock.settimeout(timeout)
    try:
        connection.putrequest("POST", target.path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host_header)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            connection.putheader(name, value)
        connection.endheaders(body)
    except (OSError, http.client.HTTPException) as error:
        raise _NotSent(error) from error


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float, max_bytes: int) -> Reply:
    """POSTs ``body`` to the vetted address of ``url``. Raises TargetRefused (final) or
    OSError/http.client.HTTPException (network trouble: retryable).

    The host is vetted on every call; the connection is a kept-alive one to that same vetted
    address if the pool has one, else a new one. A kept-alive connection that breaks before the
    request is fully written (the server closed it meanwhile) is replaced once by a fresh one;
    a failure after that is the caller's to retry, as the server may have acted on the request.
    """
    target = vet(url)
    key = (target.scheme, str(target.address), target.port, target.host)
    connection = pool.take(key)
    reused = connection is not None
    if connection is None:
        connection = _open(target, timeout)
    started = time.monotonic()
    keep = False
    try:
        try:
            _send(connection, target, body, headers, timeout)
        except _NotSent as failure:
            connection.close()
            if not reused:
                raise failure.__cause__ from None  # type: ignore[misc]
            connection = _open(target, timeout)
            started = time.monotonic()
            try:
                _send(connection, target, body, headers, timeout)
            except _NotSent as again:
                raise again.__cause__ from None  # type: ignore[misc]
        response = connection.getresponse()
        content = response.read(max_bytes)  # the rest is never read: a huge answer costs nothing
        retry_after = (response.getheader("Retry-After") or "").strip()
        # Kept only when the whole answer was read and neither side asked to close.
        keep = response.isclosed() and not response.will_close and connection.sock is not None
        return Reply(response.status, content, int((time.monotonic() - started) * 1000),
                     response.getheader("Location", "") or "", int(retry_after) if retry_after.isdigit() else None)
    finally:
        if keep:
            pool.give(key, connection)
        else:
            connection.close()
