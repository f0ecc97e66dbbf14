"""The google-auth credentials of a Gmail account, refreshed ahead of expiry under a per-account lock.

Both kinds of ``ProviderAccount.credentials`` (see the package docstring) are supported:
``"oauth"`` (a user's refresh token, exchanged at settings.GOOGLE_TOKEN_URI with the app's
client id and secret) and ``"service_account"`` (a Workspace service account impersonating
``subject`` through domain-wide delegation; google-auth signs the JWT-bearer grant). No OAuth or
JWT code is written here: google-auth does all of it.

Why a lock: a sync worker, the push webhook and a web request may all hold the same account and
find its access token about to expire. Refreshing is serialised by ``SELECT ... FOR UPDATE`` on
the account row, and whoever gets the lock second re-reads the stored token and uses the one the
first refreshed instead of refreshing again (a token endpoint that rotates or rate-limits
refreshes would otherwise see a stampede).
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

import google.auth.credentials
import google.auth.exceptions
import google.oauth2.credentials
import google.oauth2.service_account
import google_auth_httplib2
import httplib2
from django.conf import settings
from django.db import transaction

from integrations.providers.base import AuthError, PermanentError, TransientError
from integrations.providers.gmail.connect import GMAIL_READONLY

if TYPE_CHECKING:
    from integrations.models import ProviderAccount

logger = logging.getLogger(__name__)

# A token expiring within this is refreshed before use (google-auth itself would refresh 3 min
# 45 s ahead, without our lock: refreshing earlier keeps it from ever doing so).
REFRESH_MARGIN = dt.timedelta(minutes=5)
TOKEN_TIMEOUT_SECONDS = 30
# OAuth error codes of the token endpoint that only the user (or a Workspace admin) can fix.
PERMANENT_ERRORS = {"invalid_grant", "unauthorized_client", "invalid_client", "access_denied", "invalid_scope"}

RECONNECT_MESSAGE = "Reconnect Gmail: access was revoked or expired."


def fresh_credentials(account: ProviderAccount, *, force: bool = False) -> google.auth.credentials.Credentials:
    """Credentials of ``account`` whose access token is valid for at least REFRESH_MARGIN.

    Refreshes (and persists, encrypted, only ``credentials`` and ``updated_at``) when the stored
    token expires within REFRESH_MARGIN, or with ``force`` (the API answered 401 to the token
    held in ``account.credentials``). The refresh runs under a row lock of the account, and the
    expiry is checked again once the lock is held: a token refreshed meanwhile by another worker
    is used as it is. ``account.credentials`` is updated in memory too.

    Raises AuthError(permanent=True) when the grant is gone (revoked, expired, delegation
    withdrawn) with a message saying what to do, TransientError when the token endpoint cannot be
    reached or answers with a retryable error, PermanentError for unusable stored credentials.
    """
    stored = account.credentials or {}
    if not force and not expiring(stored):
        return build_credentials(stored)
    if account.pk is None:  # being connected, not saved yet: nothing to lock or persist
        account.credentials = _refreshed(stored)
        return build_credentials(account.credentials)
    from integrations.models import ProviderAccount

    with transaction.atomic():
        locked = ProviderAccount.objects.select_for_update().get(pk=account.pk)
        current = locked.credentials or {}
        # Someone refreshed while we waited for the lock (or before we asked): their token is
        # good unless it is the very one that was just rejected or it expires soon too.
        changed = current.get("access_token") != stored.get("access_token")
        if (changed or not force) and current.get("access_token") and not expiring(current):
            account.credentials = current
            return build_credentials(current)
        refreshed = _refreshed(current)
        locked.credentials = refreshed
        locked.save(update_fields=["credentials", "updated_at"])
    account.credentials = refreshed
    logger.info("Refreshed the Gmail access token of account %s", account.pk)
    return build_credentials(refreshed)


def build_credentials(stored: dict[str, Any]) -> google.auth.credentials.Credentials:
    """The google-auth credentials for a stored ``credentials`` dict, holding its cached access token."""
    kind = stored.get("kind", "oauth")
    token, expiry = stored.get("access_token") or None, _naive_utc(stored.get("expiry"))
    if kind == "oauth":
        if not stored.get("refresh_token") and not token:
            raise AuthError(RECONNECT_MESSAGE + " (no token is stored)", permanent=True)
        return google.oauth2.credentials.Credentials(
            token=token,
            refresh_token=stored.get("refresh_token"),
            token_uri=settings.GOOGLE_TOKEN_URI,
            client_id=settings.GOOGLE_CLIENT_ID,
            client_secret=settings.GOOGLE_CLIENT_SECRET,
            scopes=stored.get("scopes") or [GMAIL_READONLY],
            expiry=expiry,
        )
    if kind == "service_account":
        info = stored.get("service_account_info")
        if not isinstance(info, dict) or not stored.get("subject"):
            raise PermanentError("The stored Gmail service account key or delegated mailbox is missing: enroll "
                                 "the mailbox again.")
        try:
            credentials = google.oauth2.service_account.Credentials.from_service_account_info(
                # The key file names Google's token endpoint; the configured one wins (tests, emulators).
                {**info, "token_uri": settings.GOOGLE_TOKEN_URI},
                scopes=[GMAIL_READONLY],
                subject=stored["subject"],
            )
        except (ValueError, KeyError) as error:  # a malformed key: say which field, never the key itself
            raise PermanentError(f"The stored Gmail service account key is unusable ({type(error).__name__}): "
                                 "enroll the mailbox again with a valid key file.") from None
        credentials.token, credentials.expiry = token, expiry
        return credentials
    raise PermanentError(f"Unknown kind of Gmail credentials {kind!r}: reconnect the account.")


def _refreshed(stored: dict[str, Any]) -> dict[str, Any]:
    """``stored`` with a new access token and expiry from the token endpoint (no lock, no save)."""
    credentials = build_credentials(stored)
    request = google_auth_httplib2.Request(httplib2.Http(timeout=TOKEN_TIMEOUT_SECONDS))
    try:
        credentials.refresh(request)
    except google.auth.exceptions.RefreshError as error:
        code = _error_code(error)
        if code in PERMANENT_ERRORS or not error.retryable:
            raise AuthError(_permanent_message(stored, code), permanent=True) from None
        raise TransientError(f"Google's token endpoint could not refresh the Gmail token ({code}); "
                             "it will be retried.") from None
    except (google.auth.exceptions.TransportError, httplib2.HttpLib2Error, OSError) as error:
        raise TransientError(f"Google's token endpoint could not be reached ({type(error).__name__}); "
                             "it will be retried.") from None
    expiry = credentials.expiry
    return {
        **stored,
        "access_token": credentials.token,
        "expiry": expiry.replace(tzinfo=dt.UTC).isoformat() if expiry else None,
    }


def _permanent_message(stored: dict[str, Any], code: str) -> str:
    if stored.get("kind") == "service_account":
        return (f"Gmail refused the service account's delegated access to {stored.get('subject')} ({code}): "
                "check the domain-wide delegation of its client id with the gmail.readonly scope in the "
                "Workspace admin console, or enroll the mailbox again.")
    return RECONNECT_MESSAGE


def _error_code(error: google.auth.exceptions.RefreshError) -> str:
    """The OAuth ``error`` of the token endpoint's answer (google-auth passes the parsed body along)."""
    for arg in error.args[1:]:
        if isinstance(arg, dict) and isinstance(arg.get("error"), str):
            return arg["error"]
    text = str(error.args[0]) if error.args else ""
    return text.split(":", 1)[0].strip() or "unknown error"


def expiring(stored: dict[str, Any]) -> bool:
    """Whether stored credentials need a refresh before use: true without an access token, without a known expiry, or when it ends within REFRESH_MARGIN."""
    if not stored.get("access_token"):
        return True
    expiry = _naive_utc(stored.get("expiry"))
    return expiry is None or expiry - REFRESH_MARGIN <= dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _naive_utc(value: object) -> dt.datetime | None:
    """An ISO-8601 expiry as google-auth wants it: naive UTC (None when absent or unreadable)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def expiry_text(credentials: google.auth.credentials.Credentials) -> str | None:
    """The storage form (ISO-8601 UTC) of a google-auth credentials' expiry."""
    return credentials.expiry.replace(tzinfo=dt.UTC).isoformat() if credentials.expiry else None
