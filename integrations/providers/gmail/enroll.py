"""Enrolling Workspace mailboxes through a service account with domain-wide delegation.

A Workspace admin grants a service account's client id the gmail.readonly scope for the whole
domain; with its key, ``enroll`` creates or updates one Gmail account per mailbox, whose
credentials impersonate that mailbox (kind "service_account" in the package's storage
contract). Each mailbox is verified with one users.getProfile call before anything of it is
saved; a mailbox the delegation does not cover (another domain, a user that does not exist) is
refused and reported, and the others are enrolled all the same.

Which mailboxes: the users listed, or, for a domain, the owner's Gmail accounts already
connected in that domain (re-enrolled: e.g. moving them from personal OAuth to the service
account, or to a new key). Listing every user of a domain would take Google's Admin SDK
Directory API with a second, admin-delegated scope; it is not used, so new mailboxes are
always named.

The key is a secret: it is stored only inside the encrypted credentials, and never appears in
a log line, an exception message, a command's output or an admin page. Errors about it say
what is wrong with it, never what it contains.
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from integrations.accounts import same_account
from integrations.models import ProviderAccount
from integrations.providers.base import ProviderError
from integrations.providers.gmail.client import GmailClient
from integrations.providers.gmail.connect import save_account
from integrations.providers.gmail.push import start_watch_safely

logger = logging.getLogger(__name__)

KEY_FIELDS = ("type", "client_email", "private_key")
MAX_KEY_BYTES = 64 * 1024
ADDRESS = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")


class BadKey(ValueError):
    """The service account key is unusable; the message says why, never what the key holds."""


class BadAddresses(ValueError):
    """The mailboxes named are unusable (the message names them)."""


@dataclass
class Enrolled:
    """What happened to one mailbox: ``account`` saved (``created`` or updated), or ``error``."""

    address: str
    account: ProviderAccount | None = None
    created: bool = False
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.account is not None

    def describe(self) -> str:
        if self.account is None:
            return f"refused {self.address}: {self.error}"
        return f"{'enrolled' if self.created else 'updated'} {self.address} (account {self.account.pk})"


def load_key(data: str | bytes) -> dict[str, Any]:
    """The service account key (the JSON key file Google Cloud gives), checked for its shape."""
    if len(data) > MAX_KEY_BYTES:
        raise BadKey("The service account key is too big to be a key file.")
    try:
        key = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise BadKey("The service account key is not JSON: give the key file Google Cloud created.") from None
    if not isinstance(key, dict):
        raise BadKey("The service account key is not a JSON object: give the key file Google Cloud created.")
    missing = [name for name in KEY_FIELDS if not isinstance(key.get(name), str) or not key[name]]
    if missing:
        raise BadKey(f"The service account key lacks {', '.join(missing)}: give the JSON key file of a service "
                     "account (not an OAuth client).")
    if key["type"] != "service_account":
        raise BadKey("The key is not a service account key (its type is not service_account).")
    return key


def parse_addresses(text: str, domain: str | None = None) -> list[str]:
    """Addresses separated by commas, semicolons or white space, lower-cased, each once.

    With ``domain``, a bare user name gets ``@domain`` and an address of another domain is refused.
    """
    addresses: list[str] = []
    bad: list[str] = []
    for item in re.split(r"[\s,;]+", text or ""):
        if not item:
            continue
        address = item.lower()
        if domain and "@" not in address:
            address = f"{address}@{domain.lower()}"
        if not ADDRESS.match(address) or (domain and address.rpartition("@")[2] != domain.lower()):
            bad.append(item[:100])
        elif address not in addresses:
            addresses.append(address)
    if bad:
        raise BadAddresses(f"Not {'addresses of ' + domain if domain else 'email addresses'}: {', '.join(bad)}.")
    if not addresses:
        raise BadAddresses("No mailbox was named.")
    return addresses


def domain_mailboxes(owner: Any, domain: str) -> list[str]:
    """The addresses of ``owner``'s Gmail accounts in ``domain`` (what ``--domain`` re-enrolls)."""
    suffix = "@" + domain.strip().lower().lstrip("@")
    addresses = ProviderAccount.objects.filter(owner=owner, provider="gmail").values_list("config__email", flat=True)
    return sorted({str(a).lower() for a in addresses if isinstance(a, str) and a.lower().endswith(suffix)})


def enroll(key: dict[str, Any], owner: Any, addresses: Iterable[str]) -> list[Enrolled]:
    """Creates or updates ``owner``'s Gmail account of each address, impersonated with ``key``.

    Each mailbox costs one token grant and one users.getProfile before it is saved; a refused
    one is reported in its Enrolled and changes nothing. Push is started for the saved ones
    when configured (push.start_watch_safely); their first sync comes with the next scheduler
    tick (save_credentials makes them due at once).
    """
    results = []
    for address in addresses:
        stored = {"kind": "service_account", "service_account_info": key, "subject": address}
        unsaved = ProviderAccount(owner=owner, provider="gmail", credentials=stored)
        try:
            profile = GmailClient(unsaved).profile()
        except ProviderError as error:
            results.append(Enrolled(address, error=str(error)))
            logger.info("Gmail enrollment of %s refused: %s", address, error)
            continue
        # An alias impersonates its user: the account is the mailbox's primary address.
        actual = str(profile.get("emailAddress") or address).strip().lower()
        existing = same_account(owner, "gmail", {"email": actual})
        account = save_account(owner, actual, {**unsaved.credentials, "subject": actual}, account=existing)
        start_watch_safely(account)
        results.append(Enrolled(actual, account=account, created=existing is None))
        logger.info("Gmail mailbox %s enrolled by domain-wide delegation (account %s)", actual, account.pk)
    return results
