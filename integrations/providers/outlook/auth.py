"""Tokens of an Outlook account: msal's token cache, kept encrypted in the account's credentials.

msal does every token operation (the code exchange in ``connect``, refreshes here); this module
only stores its serialized cache and asks it for a token. The credentials layout is in the
package docstring.

Why a lock: a sync worker, a webhook's subscription renewal and a web request may all hold the
same account when its access token runs out. ``access_token`` refreshes under
``SELECT ... FOR UPDATE`` of the account row, and whoever gets the lock second re-reads the
stored cache and uses the token the first one got instead of refreshing again (Microsoft
rotates refresh tokens: two refreshes from one stored cache would leave one of them holding a
superseded token).

msal wants an https authority with a path segment; for anything but Microsoft's own hosts
(a sovereign cloud is still Microsoft's; a test server is not) instance discovery is turned off,
so msal only reads ``{authority}/v2.0/.well-known/openid-configuration`` from the host itself.
"""
from __future__ import annotations

import logging
import time
import urllib.parse
from typing import TYPE_CHECKING, Any

import msal
import requests
from django.conf import settings
from django.db import transaction

from integrations.providers.base import AuthError, PermanentError, TransientError

if TYPE_CHECKING:
    from integrations.models import ProviderAccount

logger = logging.getLogger(__name__)

# msal adds offline_access, openid and profile itself (and refuses them if passed).
SCOPES = ["Mail.Read", "User.Read"]
# Marks messages read (task write-back): asked for only while a feature the user turned on wants
# Capability.MARK_READ (connect.scopes_for). It also allows other changes to messages, which is
# why it is never asked for by default; this site only ever sets isRead with it.
MAIL_READ_WRITE = "Mail.ReadWrite"
# The OpenID scopes msal adds (and refuses as input); never stored as granted.
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access", "email"})
# An access token expiring within this is refreshed before use.
REFRESH_MARGIN_SECONDS = 300
TOKEN_TIMEOUT_SECONDS = 30
MICROSOFT_HOSTS = frozenset({
    "login.microsoftonline.com", "login.microsoft.com", "login.windows.net", "sts.windows.net",
    "login.microsoftonline.us", "login.chinacloudapi.cn", "login.partner.microsoftonline.cn",
})
# Token endpoint errors only the user can fix (AADSTS: revoked, expired, consent withdrawn, MFA).
RECONNECT_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required", "login_required"})
RECONNECT_MESSAGE = "Reconnect Outlook: access was revoked or expired."


def authority() -> str:
    return f"{settings.MS_AUTHORITY_HOST}/{settings.MS_TENANT}"


def msal_app(cache: msal.SerializableTokenCache | None = None) -> msal.ConfidentialClientApplication:
    """The app registration (MS_CLIENT_ID/SECRET) at the configured authority, with ``cache``.

    Constructing it reads the authority's OpenID configuration (one request), so it is only
    built when a token must actually be obtained.
    """
    host = urllib.parse.urlsplit(settings.MS_AUTHORITY_HOST).hostname or ""
    return msal.ConfidentialClientApplication(
        settings.MS_CLIENT_ID,
        client_credential=settings.MS_CLIENT_SECRET,
        authority=authority(),
        token_cache=cache,
        timeout=TOKEN_TIMEOUT_SECONDS,
        instance_discovery=None if host.lower() in MICROSOFT_HOSTS else False,
    )


def granted_scopes(scope: str | list[str] | None) -> list[str]:
    """The Graph scopes in a token answer's ``scope`` (space-separated, possibly with the resource
    prefix, ``https://graph.microsoft.com/Mail.Read``), without the OpenID ones, in the spelling
    of this module's constants where known (msal matches cached tokens to scopes case-sensitively)."""
    known = {name.lower(): name for name in (*SCOPES, MAIL_READ_WRITE)}
    items = scope.split() if isinstance(scope, str) else list(scope or ())
    found: dict[str, str] = {}
    for item in items:
        name = str(item).rsplit("/", 1)[-1]
        if name and name.lower() not in RESERVED_SCOPES:
            found.setdefault(name.lower(), known.get(name.lower(), name))
    return list(found.values())


def stored_scopes(credentials: dict[str, Any]) -> list[str]:
    """The scopes the account was granted (credentials ``scopes``); SCOPES when absent (accounts
    connected before the scopes were recorded were all read-only)."""
    scopes = granted_scopes(credentials.get("scopes"))
    return scopes or list(SCOPES)


def load_cache(credentials: dict[str, Any]) -> msal.SerializableTokenCache:
    cache = msal.SerializableTokenCache()
    if credentials.get("token_cache"):
        cache.deserialize(credentials["token_cache"])
    return cache


def cached_access_token(credentials: dict[str, Any]) -> str | None:
    """The cache's access token of the account, if it is valid for REFRESH_MARGIN_SECONDS more.

    Read from the deserialized cache without msal's app (no network): most calls need no refresh.
    """
    home_account_id = credentials.get("home_account_id")
    if not home_account_id or not credentials.get("token_cache"):
        return None
    cache = load_cache(credentials)
    soon = time.time() + REFRESH_MARGIN_SECONDS
    entries = cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN, query={"home_account_id": home_account_id},
                           now=soon)
    for entry in entries:
        if int(entry.get("expires_on") or 0) > soon and entry.get("secret"):
            return str(entry["secret"])
    return None


def access_token(account: ProviderAccount, *, force: bool = False) -> str:
    """A Graph access token of ``account``, refreshed through msal when it expires soon.

    ``force``: Graph answered 401 to the cached token; a new one is obtained (unless another
    worker already did). A refresh happens under a row lock of the account and is persisted
    (``credentials`` and ``updated_at`` only); ``account.credentials`` is updated in memory.

    Raises AuthError(permanent=True, "Reconnect Outlook: ...") when the grant is gone,
    TransientError when the identity platform cannot be reached or fails, PermanentError when
    the app's own credentials are refused.
    """
    stored = dict(account.credentials or {})
    if not force:
        token = cached_access_token(stored)
        if token:
            return token
    if account.pk is None:  # being connected and not saved yet: nothing to lock
        token, account.credentials = _acquire(stored, force=force)
        return token
    from integrations.models import ProviderAccount

    with transaction.atomic():
        locked = ProviderAccount.objects.select_for_update().only("pk", "credentials").get(pk=account.pk)
        current = dict(locked.credentials or {})
        # Someone refreshed while we waited for the lock: their token is good unless it is the
        # very one that was just rejected.
        if not force or current.get("token_cache") != stored.get("token_cache"):
            token = cached_access_token(current)
            if token:
                account.credentials = current
                return token
        token, refreshed = _acquire(current, force=force)
        if refreshed != current:
            locked.credentials = refreshed
            locked.save(update_fields=["credentials", "updated_at"])
    account.credentials = refreshed
    logger.info("Refreshed the Outlook access token of account %s", account.pk)
    return token


def _acquire(credentials: dict[str, Any], *, force: bool) -> tuple[str, dict[str, Any]]:
    """(access token, credentials with the updated cache) from msal's acquire_token_silent."""
    cache = load_cache(credentials)
    home_account_id = credentials.get("home_account_id")
    if not home_account_id or not credentials.get("token_cache"):
        raise AuthError(f"{RECONNECT_MESSAGE} (no token is stored)", permanent=True)
    try:
        app = msal_app(cache)
        signed_in = next((a for a in app.get_accounts() if a.get("home_account_id") == home_account_id), None)
        if signed_in is None:
            raise AuthError(f"{RECONNECT_MESSAGE} (the stored sign-in is gone)", permanent=True)
        # The scopes the account was granted, not just SCOPES: a refresh asking for less would
        # still work, but a token of Mail.ReadWrite must stay one for write-back.
        result = app.acquire_token_silent_with_error(stored_scopes(credentials), signed_in, force_refresh=force)
    except (requests.RequestException, OSError) as error:
        raise TransientError(f"Microsoft's sign-in service could not be reached ({type(error).__name__}); "
                             "it will be retried.") from None
    except ValueError as error:  # msal: the authority's OpenID configuration could not be read
        raise TransientError(f"Microsoft's sign-in service answered something unreadable "
                             f"({type(error).__name__}); it will be retried.") from None
    if not result:
        raise AuthError(f"{RECONNECT_MESSAGE} (no refresh token is stored)", permanent=True)
    if "error" in result:
        raise token_error(result)
    token = result.get("access_token")
    if not token:
        raise TransientError("Microsoft's sign-in service returned no access token; it will be retried.")
    updated = {**credentials, "token_cache": cache.serialize()} if cache.has_state_changed else credentials
    return str(token), updated


def token_error(result: dict[str, Any]) -> Exception:
    """The ProviderError for an msal error result. Only the error code is kept: msal's
    error_description may quote a correlation id, never a token, but is not needed either."""
    code = str(result.get("error") or "unknown")
    suberror = str(result.get("suberror") or "")
    if code in RECONNECT_ERRORS:
        return AuthError(f"{RECONNECT_MESSAGE} ({code}{', ' + suberror if suberror else ''})", permanent=True)
    if code in ("invalid_client", "unauthorized_client"):
        logger.error("Microsoft refused the app's credentials (%s): check MS_CLIENT_ID and MS_CLIENT_SECRET", code)
        return PermanentError("Microsoft refused this site's Outlook app credentials; ask an administrator to "
                              "check MS_CLIENT_ID and MS_CLIENT_SECRET.")
    return TransientError(f"Microsoft's sign-in service failed ({code[:40]}); it will be retried.")
