"""The provider interface: what every provider is (class level) and does (per account).

A provider class describes itself with ``key``, ``display_name`` and ``capabilities``;
an instance is bound to one ProviderAccount. The sync engine (integrations.sync) is the
only caller: providers never touch the database themselves, they return Batches.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from conversations.messages import ParsedMessage

if TYPE_CHECKING:
    from integrations.models import ProviderAccount
    from integrations.providers.connect import ConnectMethod

Cursor = dict[str, Any]
PageToken = dict[str, Any]


class Capability(StrEnum):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"  # the provider can notify us (webhooks)
    OAUTH = "oauth"  # credentials come from an OAuth flow
    FLAGS = "flags"  # reports read/starred changes of stored messages
    DELETIONS = "deletions"  # reports messages removed at the provider
    FOLDER_LABELS = "folder_labels"  # one message may sit in several folders: labels are merged
    DATE_RANGE = "date_range"  # implements fetch_range(): historical syncs of a date range
    MARK_READ = "mark_read"  # implements mark_read(): the one change a feature may ask of the provider


# --- errors: one family, classified once ---------------------------------------------------

class ProviderError(Exception):
    """Base of every provider failure. ``permanent`` says whether retrying can help."""

    permanent: bool = False

    def __init__(self, message: str, *, permanent: bool | None = None) -> None:
        super().__init__(message)
        if permanent is not None:
            self.permanent = permanent


class AuthError(ProviderError):
    """Login or token refresh failed. Permanent (bad password, revoked token) needs the user."""


class RateLimited(ProviderError):
    """The provider asked us to slow down. Never permanent: back off and resume."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, permanent=False)
        self.retry_after = retry_after


class CursorExpired(ProviderError):
    """The delta cursor is no longer valid (Gmail 404, Graph 410, IMAP UIDVALIDITY change)."""


class TransientError(ProviderError):
    """A network hiccup, a timeout, a 5xx: retry later with backoff."""


class PermanentError(ProviderError):
    """Retrying will not help (a folder that does not exist, a bad configuration)."""

    permanent = True


# --- data ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MessageUpdate:
    """A change to a stored message's state, addressed by its provider reference."""

    ref: str
    is_read: bool | None = None
    is_starred: bool | None = None
    # The message's whole label set, replacing the stored one (providers that report it whole).
    labels: tuple[str, ...] | None = None


@dataclass(frozen=True)
class RefRange:
    """The refs ``f"{prefix}{n}"`` for every n in ``first..last``, e.g. IMAP UIDs "INBOX:7:" 3..9.

    Ranges come from the provider (an IMAP VANISHED response) and may be huge; they are
    resolved against the refs actually stored, never expanded whole.
    """

    prefix: str
    first: int
    last: int


@dataclass
class Batch:
    """One page of work.

    ``next_page_token`` is not None while there is more to fetch: backfill pages are
    resumed from it, and a delta is called again with ``new_cursor`` until it is None.
    ``new_cursor`` is the delta cursor this batch advances to (for a backfill, the
    cursor to use once the backfill completes). ``deleted_refs`` / ``deleted_ids`` name
    messages gone at the provider, by provider reference or provider message id;
    ``deleted_ref_ranges`` names them by ranges of numbered refs (see RefRange); ``updates`` change the state of stored messages. ``progress`` is (done, total) in provider units, if known.
    """

    messages: list[ParsedMessage] = field(default_factory=list)
    next_page_token: PageToken | None = None
    new_cursor: Cursor | None = None
    deleted_ids: list[str] = field(default_factory=list)
    deleted_refs: list[str] = field(default_factory=list)
    deleted_ref_ranges: list[RefRange] = field(default_factory=list)
    updates: list[MessageUpdate] = field(default_factory=list)
    progress: tuple[int, int] | None = None


@dataclass(frozen=True)
class BackfillWindow:
    """How far back an initial sync reaches (None: everything)."""

    since: dt.datetime | None = None


class MessageProvider:
    """Base class of every provider. Subclasses set the class attributes and implement the methods.

    Contract:
    - ``authenticate()`` logs in or refreshes tokens. It raises AuthError(permanent=True)
      for credentials only the user can fix, with a message telling them what to do.
      Refreshed tokens are written to ``self.account.credentials``; the engine saves them.
    - ``fetch_initial(window, page_token)`` returns one backfill page, newest first. The
      first call gets ``page_token=None``; later calls get the previous ``next_page_token``
      (possibly in a later run, after a crash). Every page carries the ``new_cursor`` to
      switch to when the backfill is complete.
    - ``fetch_since(cursor)`` returns what changed since ``cursor``. It raises
      CursorExpired when the cursor is no longer valid; the engine then runs one full resync.
    - The engine calls ``fetch_initial`` for the next page from a worker thread while it
      stores the current one (never two calls at once). Providers never touch the database.
    - ``fetch_range(since, until, page_token)`` (only with Capability.DATE_RANGE) returns one
      page of the messages received in [since, until), newest first, for a historical sync.
      Paging works as in ``fetch_initial``; the token may be resumed in a later run. It never
      reads or moves the delta cursor: the engine ignores ``Batch.new_cursor`` and
      ``progress`` of its pages. A provider that can only select by day documents how it
      narrows that to [since, until). CursorExpired means the page token no longer holds
      (an IMAP UIDVALIDITY change); the engine then starts that range over, from page one.
    - They never change anything on the provider while syncing (no flags set, nothing moved
      or deleted); ``mark_read`` is the single exception, called only by a feature that asks.
    - They raise only ProviderError subclasses; anything else is a bug and is recorded as one.
    - ``api_calls`` counts requests made, for the SyncRun.
    - ``close()`` releases connections; it is always called, also after errors.

    Describing, not binding: ``connect`` says how a user connects an account of the provider
    (integrations.providers.connect: credentials, OAuth or upload; None: it cannot be
    connected), and is all the connectors API and the Connections page read.
    """

    key: ClassVar[str]
    display_name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    connect: ClassVar[ConnectMethod | None] = None
    page_size: ClassVar[int] = 200

    def __init__(self, account: ProviderAccount) -> None:
        self.account = account
        self.api_calls = 0

    @classmethod
    def renew_push(cls) -> int:
        """Renews (or starts) the push subscriptions of this provider's accounts that lapse soon;
        returns how many. Called hourly by integrations.tasks.renew_push for every provider with
        Capability.PUSH. The default renews nothing; an account without push syncs on its interval.
        """
        return 0

    @classmethod
    def missing_grant(cls, account: ProviderAccount, capability: Capability) -> str | None:
        """What the user must do before this provider can do ``capability`` for ``account``
        (e.g. sign in again and allow a wider scope); None when nothing stands in the way.

        Read from the stored credentials only, never over the network: the settings pages ask it
        for every account. Without the capability at all, says so. A provider whose grants are
        per-scope (OAuth) overrides it; the default needs nothing more than the capability.
        """
        if capability not in cls.capabilities:
            return f"{cls.display_name} accounts cannot do this ({capability})."
        return None

    def authenticate(self) -> None:
        raise NotImplementedError

    def fetch_initial(self, window: BackfillWindow, page_token: PageToken | None) -> Batch:
        raise NotImplementedError

    def fetch_since(self, cursor: Cursor) -> Batch:
        raise NotImplementedError

    def fetch_range(self, since: dt.datetime, until: dt.datetime, page_token: PageToken | None) -> Batch:
        """One page of [since, until) (aware UTC datetimes), newest first; see the contract above."""
        raise NotImplementedError(f"{self.key} does not fetch date ranges (no Capability.DATE_RANGE)")

    def mark_read(self, refs: list[str]) -> None:
        """Marks the messages at ``refs`` (their stored MessageRefs) read at the provider.

        The one write a provider does, and only when a feature the user turned on asks for it
        (task write-back); syncs never call it. Only with Capability.MARK_READ. Raises a
        ProviderError saying what went wrong, e.g. when a ref no longer names the message.
        """
        raise NotImplementedError(f"{self.key} cannot mark messages read (no Capability.MARK_READ)")

    def close(self) -> None:
        """Releases connections. The default has nothing to release."""

    def __enter__(self) -> MessageProvider:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
