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
