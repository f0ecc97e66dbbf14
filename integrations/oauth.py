"""Sign-ins in progress (the authorization-code flow), for every OAuth provider.

A sign-in is ``begin``-ed when the user is sent to the provider's consent page and
``complete``-d by the callback. What ties the two together lives on the server
(models.OAuthState), not in a cookie: a random ``state`` that travels through the browser,
bound to the signed-in user and to the provider, and the PKCE code_verifier (encrypted),
which never leaves the server. A state works once, for ``STATE_TTL``; the callback of an
unknown, expired, used, other user's or other provider's state is refused with OAuthError.

The redirect URI is built from settings.APP_PUBLIC_URL, never from the request's Host
header: a spoofed Host cannot make the provider send the code elsewhere.

Providers do the protocol with their libraries (google-auth-oauthlib, msal); this module only
keeps the state, and creates the verifier with oauthlib.
"""
from __future__ import annotations

import datetime as dt
import secrets
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from oauthlib.oauth2 import WebApplicationClient

from integrations.models import OAuthState, ProviderAccount
from integrations.providers.connect import OAuthError

if TYPE_CHECKING:
    from django.http import HttpRequest

STATE_TTL = dt.timedelta(minutes=10)
# Rows of finished or abandoned sign-ins are deleted once they are this old (by ``begin``).
KEEP_FOR = dt.timedelta(days=1)
CODE_VERIFIER_LENGTH = 128  # RFC 7636 allows 43..128 characters

RESTART = "Start again from the Connections page."


def redirect_uri(provider_key: str) -> str:
    """The callback URL registered at the provider: APP_PUBLIC_URL + the callback path."""
    return settings.APP_PUBLIC_URL + reverse("integrations:oauth_callback", args=[provider_key])


def begin(user: Any, provider_key: str, account: ProviderAccount | None = None) -> tuple[str, str]:
    """Records a new sign-in of ``user`` at ``provider_key`` and returns (state, code_verifier).

    ``account``: the user's account this sign-in reconnects (None: a new one).
    """
    if account is not None and (account.owner_id != user.pk or account.provider != provider_key):
        raise ValueError("A sign-in can only reconnect an account of the same user and provider.")
    now = timezone.now()
    OAuthState.objects.filter(created_at__lt=now - KEEP_FOR).delete()
    state = secrets.token_urlsafe(32)
    code_verifier = WebApplicationClient(None).create_code_verifier(CODE_VERIFIER_LENGTH)
    OAuthState.objects.create(state=state, user=user, provider=provider_key, code_verifier=code_verifier,
                              account=account, created_at=now)
    return state, code_verifier


def complete(user: Any, provider_key: str, state: str | None) -> OAuthState:
    """Consumes the sign-in of ``state`` and returns it; OAuthError (code "bad_state") if it is
    missing, unknown, for another provider or user, expired or already used.

    A state of another user or provider is left untouched (it is still its owner's to use).
    """
    if not state:
        raise OAuthError("The sign-in came back without its state, so it cannot be matched to a sign-in you "
                         f"started. Nothing was connected. {RESTART}", code="bad_state")
    record = OAuthState.objects.filter(state=state[:128]).select_related("account").first()
    if record is None or record.provider != provider_key:
        raise OAuthError("This sign-in is unknown here (it was not started from this site, or it was for "
                         f"another service). Nothing was connected. {RESTART}", code="bad_state")
    if record.user_id != user.pk:
        raise OAuthError("This sign-in was started by another user of this site, not by you. Nothing was "
                         f"connected. {RESTART}", code="bad_state")
    now = timezone.now()
    if record.used_at is not None:
        raise OAuthError(f"This sign-in was already used. Nothing more was connected. {RESTART}", code="bad_state")
    if record.created_at < now - STATE_TTL:
        raise OAuthError(f"This sign-in expired (it must be finished within {int(STATE_TTL.total_seconds() // 60)} "
                         f"minutes). Nothing was connected. {RESTART}", code="bad_state")
    # Conditional: of two callbacks with one state racing, only one consumes it.
    with transaction.atomic():
        if not OAuthState.objects.filter(pk=record.pk, used_at=None).update(used_at=now):
            raise OAuthError(f"This sign-in was already used. Nothing more was connected. {RESTART}",
                             code="bad_state")
    record.used_at = now
    return record


def callback(request: HttpRequest, provider_key: str, label: str) -> tuple[OAuthState, str]:
    """Reads a provider's redirect back to the callback: (the consumed sign-in, the code).

    An ``error`` parameter (the user denied consent, or the provider refused the request)
    consumes the state if it is valid and raises OAuthError with what to do; so does a
    missing code. ``label`` names the provider to the user ("Gmail").
    """
    error = request.GET.get("error")
    if error:
        try:
            complete(request.user, provider_key, request.GET.get("state"))
        except OAuthError:
            pass  # the denial is what the user needs to hear about
        if error == "access_denied":
            raise OAuthError(f"You did not allow access to {label}, so nothing was connected. To connect it, "
                             "start again from the Connections page and choose Allow.", code="access_denied")
        # The provider's error code is a short token from a fixed list; not echoed beyond that.
        shown = error[:40] if error.replace("_", "").isalnum() else "an error"
        raise OAuthError(f"{label} refused the sign-in ({shown}). Nothing was connected. {RESTART}",
                         code="provider_error")
    record = complete(request.user, provider_key, request.GET.get("state"))
    code = request.GET.get("code")
    if not code:
        raise OAuthError(f"{label} sent no authorization code back. Nothing was connected. {RESTART}",
                         code="provider_error")
    return record, code
