"""The outbound guard: only http(s), resolved once, non-public addresses refused (IPv4, IPv6,
IPv4-mapped, metadata), the vetted address used, redirects never followed."""
from __future__ import annotations

import pytest

from automation.triggers import outbound, services
from tests.triggers.conftest import store, webhook

pytestmark = pytest.mark.django_db


@pytest.fixture
def strict(settings) -> None:
    settings.TRIGGERS_ALLOW_PRIVATE_TARGETS = False


def post(url: str) -> outbound.Reply:
    return outbound.post(url, b"{}", {"Content-Type": "application/json"}, timeout=1, max_bytes=100)


@pytest.mark.parametrize("url", [
    "http://10.0.0.5/hook",  # private IPv4 literal
    "http://192.168.1.1/hook",
    "http://127.0.0.1:8000/hook",  # loopback
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
    "http://0.0.0.0/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://224.0.0.1/",  # multicast
    "http://240.0.0.1/",  # reserved
    "http://[::1]/hook",  # IPv6 loopback
    "http://[fe80::1]/hook",  # IPv6 link-local
    "http://[fc00::1]/hook",  # IPv6 unique local
    "http://[::ffff:127.0.0.1]/hook",  # IPv4-mapped loopback
    "http://[::ffff:10.0.0.1]/hook",  # IPv4-mapped private
    "http://[::ffff:169.254.169.254]/",  # IPv4-mapped metadata
])
def test_non_public_literals_are_refused(strict, url):
    with pytest.raises(outbound.TargetRefused):
        post(url)
    assert outbound.literal_refusal(url)  # and refused on save, before any lookup


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://example.com/",
                                 "http://user:pw@example.com/"])
def test_only_http_and_https_without_credentials(url):
    with pytest.raises(outbound.TargetRefused):
        outbound.check_url(url)


@pytest.mark.parametrize("answer", [["127.0.0.1"], ["::1"], ["93.184.216.34", "10.1.2.3"], ["::ffff:127.0.0.1"]])
def test_a_name_resolving_to_a_non_public_address_is_refused(strict, monkeypatch, answer):
    lookups: list[str] = []
    monkeypatch.setattr(outbound, "resolve_host", lambda host, port: lookups.append(host) or answer)
    with pytest.raises(outbound.TargetRefused, match="resolves to"):
        post("https://hooks.example.com/x")
    assert lookups == ["hooks.example.com"]


def test_metadata_is_refused_even_when_private_targets_are_allowed(monkeypatch):
    monkeypatch.setattr(outbound, "resolve_host", lambda host, port: ["169.254.169.254"])
    with pytest.raises(outbound.TargetRefused, match="metadata"):
        post("http://metadata.example/")


def test_the_connection_goes_to_the_vetted_address(receiver, monkeypatch):
    """Resolved once; the request reaches that address with the original Host (no second lookup
    for a rebinding answer to slip into)."""
    answers = iter([["127.0.0.1"], ["10.9.9.9"]])
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return next(answers)

    monkeypatch.setattr(outbound, "resolve_host", resolve)
    reply = post(f"http://hooks.example.com:{receiver.port}/in?x=1")
    assert reply.status == 200 and lookups == ["hooks.example.com"]
    assert receiver.requests[0]["headers"]["Host"] == f"hooks.example.com:{receiver.port}"
    assert receiver.requests[0]["path"] == "/in?x=1"


def test_a_public_name_passes_the_guard(strict, monkeypatch):
    monkeypatch.setattr(outbound, "resolve_host", lambda host, port: ["93.184.216.34", "2606:2800:220:1::1"])
    target = outbound.vet("https://hooks.example.com/x")
    assert str(target.address) == "93.184.216.34" and target.port == 443 and target.host == "hooks.example.com"


def test_a_redirect_to_a_private_address_is_not_followed(account, user, receiver, second_receiver, queued):
    receiver.answer((302, b"", {"Location": f"http://127.0.0.1:{second_receiver.port}/internal"}))
    trigger = webhook(user, receiver.url)
    communication = store(account)
    services.fire(account.pk, [communication.pk], "delta")
    delivery = trigger.deliveries.get()
    assert services.deliver(delivery.pk) == "failed"
    delivery.refresh_from_db()
    assert delivery.response_code == 302 and "redirects are not followed" in delivery.error
    assert second_receiver.requests == []


def test_a_refused_target_fails_the_delivery_at_once(strict, account, user, queued):
    trigger = webhook(user, "http://10.0.0.5/hook")
    communication = store(account)
    services.fire(account.pk, [communication.pk], "delta")
    delivery = trigger.deliveries.get()
    assert services.deliver(delivery.pk) == "refused"
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "private" in delivery.error and delivery.attempts == 1


def test_response_bodies_are_read_up_to_the_cap(receiver):
    receiver.default = (200, b"y" * 100_000, {})
    assert len(post(receiver.url).body) == 100


# ------------------------------------------------------------------------------------ kept-alive connections

def test_connections_are_kept_alive_per_vetted_address(keepalive_receiver, monkeypatch):
    lookups: list[str] = []
    monkeypatch.setattr(outbound, "resolve_host", lambda host, port: lookups.append(host) or ["127.0.0.1"])
    for _ in range(3):
        assert post(f"http://hooks.example.com:{keepalive_receiver.port}/in").status == 200
    assert keepalive_receiver.connections == 1 and len(keepalive_receiver.requests) == 3
    assert lookups == ["hooks.example.com"] * 3  # vetted on every request, connection or not


def test_a_kept_connection_is_never_used_once_the_host_resolves_elsewhere(keepalive_receiver, monkeypatch):
    answers = iter([["127.0.0.1"], ["169.254.169.254"], ["127.0.0.2"]])
    monkeypatch.setattr(outbound, "resolve_host", lambda host, port: next(answers))
    url = f"http://hooks.example.com:{keepalive_receiver.port}/in"
    assert post(url).status == 200
    with pytest.raises(outbound.TargetRefused, match="metadata"):  # re-vetted: the idle connection is no pass
        post(url)
    with pytest.raises(OSError):  # nothing listens on 127.0.0.2: a new connection there, not the old one
        post(url)
    assert len(keepalive_receiver.requests) == 1


def test_a_connection_closed_while_idle_is_replaced(keepalive_receiver):
    assert post(keepalive_receiver.url).status == 200
    [[(_since, connection)]] = outbound.pool._idle.values()
    connection.sock.shutdown(__import__("socket").SHUT_RDWR)  # as if the server had closed it
    assert post(keepalive_receiver.url).status == 200
    assert keepalive_receiver.connections == 2 and len(keepalive_receiver.requests) == 2


class _BrokenSocket:
    def sendall(self, data: bytes) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    def settimeout(self, timeout: float) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_request_that_never_left_a_broken_kept_connection_is_sent_once_on_a_fresh_one(keepalive_receiver,
                                                                                        monkeypatch):
    assert post(keepalive_receiver.url).status == 200
    [[(_since, connection)]] = outbound.pool._idle.values()
    connection.sock.close()
    connection.sock = _BrokenSocket()
    monkeypatch.setattr(outbound, "_dropped", lambda connection: False)  # the check missed it
    assert post(keepalive_receiver.url).status == 200
    assert len(keepalive_receiver.requests) == 2


def test_a_fresh_connection_that_fails_is_not_retried(monkeypatch):
    opened: list[object] = []
    real_open = outbound._open
    monkeypatch.setattr(outbound, "_open", lambda target, timeout: opened.append(target) or real_open(target, timeout))
    with pytest.raises(OSError):
        post("http://127.0.0.1:9/closed")  # the discard port: refused
    assert len(opened) == 1


def test_an_answer_not_read_to_its_end_closes_the_connection(keepalive_receiver):
    keepalive_receiver.default = (200, b"y" * 100_000, {})
    assert len(post(keepalive_receiver.url).body) == 100
    assert not outbound.pool._idle.get(("http", "127.0.0.1", keepalive_receiver.port, "127.0.0.1"))
