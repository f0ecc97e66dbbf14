"""Which IMAP connection security an account may use: SECURITY_CHOICES and insecure_refusal.

Read before any connection is made (by the provider and by add_imap_account), so that
security "none" is refused before a password could cross the network in clear text.
"""
from __future__ import annotations

import ipaddress

from django.conf import settings

SECURITY_CHOICES = ("ssl", "starttls", "none")


def insecure_refusal(host: str, security: str) -> str | None:
    """Why ``host`` may not be used with security "none" (None if it may, or if TLS is used).

    Without TLS the password crosses the network in clear text, and whoever can edit an
    account's host (a staff user) could point it at a server of theirs and collect the
    owner's password. Allowed only with settings.ALLOW_INSECURE_IMAP, or in DEBUG for a
    loopback host (a local test server).
    """
    if security != "none" or settings.ALLOW_INSECURE_IMAP or (settings.DEBUG and _is_loopback(host)):
        return None
    return (f'Security "none" would send the password to {host} in clear text: use ssl or starttls. '
            "Only for a trusted network, an administrator can allow it with ALLOW_INSECURE_IMAP=true.")


def _is_loopback(host: str) -> bool:
    """A literal loopback address or "localhost"; names are not resolved (DNS can change)."""
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
