"""Connecting Gmail: Google's authorization-code flow with PKCE (google-auth-oauthlib).

``start`` sends the user to Google's consent page asking for gmail.readonly only (plus
gmail.modify when a feature the user turned on for the account wants Capability.MARK_READ:
task write-back; see ``scopes_for``), with offline access and ``prompt=consent`` (so a
refresh token comes back also when the user consented before), PKCE S256 and a state from integrations.oauth (bound to the user,
one use, ten minutes). ``finish`` (the callback) exchanges the code with the stored
code_verifier, reads the address with users.getProfile, and creates or updates the user's
Gmail account of that address (the storage contract is in the package docstring). Then,
when GMAIL_PUBSUB_TOPIC is set, it starts push notifications (push.start_watch), which
never fails the connect.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

import requests
from django.conf import settings
from google_auth_oauthlib.flow import Flow
from oauthlib.oauth2.rfc6749.errors import OAuth2Error

from integrations.providers.connect import OAuthConnect, OAuthError

if TYPE_CHECKING:
    from django.http import HttpRequest

    from integrations.models import ProviderAccount

logger = logging.getLogger(__name__)

GMAIL_READONLY = "https://www.googleapis.com/auth/gmail.readonly"
# Changes labels (removing UNREAD) and nothing more destructive than that: no permanent deletion.
GMAIL_MODIFY = "https://www.googleapis.com/auth/gmail.modify"
FULL_ACCESS = "https://mail.google.com/"
TOKEN_TIMEOUT_SECONDS = 30
LABEL = "Gmail"
AGAIN = "Nothing was connected. Start again from the Connections page."


class GmailConnect(OAuthConnect):
    provider_key: ClassVar[str] = "gmail"
    identity_keys: ClassVar[tuple[str, ...]] = ("email",)

    def is_configured(self) -> bool:
        return bool(settings.GOOGLE_CLIENT_ID and settings.GOOGLE_CLIENT_SECRET)

    def public_config(self, config: dict) -> dict:
        return {key: config[key] for key in ("email", "initial_days") if key in config}

    @staticmethod
    def scopes_for(account: ProviderAccount | None) -> list[str]:
        """What a sign-in for ``account`` asks for: gmail.readonly, and gmail.modify only while a
        feature the user enabled for it wants MARK_READ (integrations.grants). A new account,
        or one whose write-back was turned off, signs in read-only again."""
        from integrations import grants  # grants imports the provider registry
        from integrations.providers.base import Capability

        if Capability.MARK_READ in grants.wanted(account):
            return [GMAIL_READONLY, GMAIL_MODIFY]
        return [GMAIL_READONLY]

    def start(self, request: HttpRequest, account: ProviderAccount | None = None) -> str:
        from integrations import oauth  # the models import the provider registry

        state, code_verifier = oauth.begin(request.user, self.provider_key, account=account)
        extra = {"login_hint": account.external_address} if account is not None and account.external_address else {}
        url, _state = self._flow(code_verifier, self.scopes_for(account)).authorization_url(
            state=state, access_type="offline", prompt="consent", **extra)
        return url

    def finish(self, request: HttpRequest) -> ProviderAccount:
        from integrations import oauth

        record, code = oauth.callback(request, self.provider_key, LABEL)
        credentials = self._exchange(record.code_verifier, code, self.scopes_for(record.account))
        address = self._address(request.user, credentials)
        if record.account is not None and (record.account.config or {}).get("email", "").lower() != address:
            raise OAuthError(
                f"You signed in to Google as {address}, but this connector is "
                f"{record.account.external_address or record.account}. Sign in with that account to reconnect it, "
                "or use Connect Gmail to add the other one. Nothing was changed.", code="wrong_account")
        account = save_account(request.user, address, credentials, account=record.account)
        from integrations.providers.gmail.push import start_watch_safely

        start_watch_safely(account)
        return account

    # --- the steps of finish

    def _flow(self, code_verifier: str, scopes: list[str]) -> Flow:
        from integrations import oauth

        client_config = {"web": {
            "client_id": settings.GOOGLE_CLIENT_ID, "client_secret": settings.GOOGLE_CLIENT_SECRET,
            "auth_uri": settings.GOOGLE_AUTH_URI, "token_uri": settings.GOOGLE_TOKEN_URI,
        }}
        flow = Flow.from_client_config(client_config, scopes=scopes, code_verifier=code_verifier,
                                       autogenerate_code_verifier=False)
        flow.redirect_uri = oauth.redirect_uri(self.provider_key)
        return flow

    def _exchange(self, code_verifier: str, code: str, scopes: list[str]) -> dict[str, Any]:
        """The code exchanged for tokens, as ``ProviderAccount.credentials`` stores them (kind oauth).
        ``scopes``: those the sign-in asked for. The user may untick all but gmail.readonly: the
        account is connected with what was granted (a missing gmail.modify shows as the
        provider's missing_grant), and without gmail.readonly nothing is."""
        from integrations.providers.gmail.credentials import expiry_text

        flow = self._flow(code_verifier, scopes)
        try:
            flow.fetch_token(code=code, timeout=TOKEN_TIMEOUT_SECONDS)
        except Warning as changed:  # oauthlib: the granted scopes differ from those asked for
            granted = list(getattr(changed, "new_scope", None) or [])
            if GMAIL_READONLY not in granted:
                raise OAuthError("Google did not grant read access to Gmail (the permission was unticked on the "
                                 f"consent page). Tick it to connect. {AGAIN}", code="not_granted") from None
            flow.oauth2session.token = changed.token  # type: ignore[attr-defined]
        except OAuth2Error as error:
            raise _exchange_error(error) from None
        except (requests.RequestException, ValueError) as error:
            logger.warning("The Google token endpoint could not be used to finish a sign-in (%s)",
                           type(error).__name__)
            raise OAuthError(f"Google's sign-in service could not be reached or answered something unreadable. "
                             f"{AGAIN}", code="token_endpoint") from None
        credentials = flow.credentials
        scopes = list(flow.oauth2session.token.get("scope") or credentials.scopes or scopes)
        if GMAIL_READONLY not in scopes:
            raise OAuthError(f"Google did not grant read access to Gmail. {AGAIN}", code="not_granted")
        if not credentials.refresh_token:
            raise OAuthError("Google granted no offline access (no refresh token came back), so the mailbox could "
                             f"not be synced in the background. {AGAIN}", code="not_granted")
        return {"kind": "oauth", "refresh_token": credentials.refresh_token, "access_token": credentials.token,
                "expiry": expiry_text(credentials), "scopes": scopes}

    def _address(self, user: Any, credentials: dict[str, Any]) -> str:
        """The mailbox's address, from users.getProfile with the new tokens."""
        from integrations.models import ProviderAccount
        from integrations.providers.base import ProviderError
        from integrations.providers.gmail.client import GmailClient

        unsaved = ProviderAccount(owner=user, provider=self.provider_key, credentials=credentials)
        try:
            profile = GmailClient(unsaved).profile()
        except ProviderError as error:
            raise OAuthError(f"Signed in, but Gmail did not tell the mailbox's address ({error}). {AGAIN}",
                             code="mailbox_unreadable") from None
        address = str(profile.get("emailAddress") or "").strip().lower()
        if not address:
            raise OAuthError(f"Signed in, but Gmail did not tell the mailbox's address. {AGAIN}",
                             code="mailbox_unreadable")
        return address


def _exchange_error(error: OAuth2Error) -> OAuthError:
    """What a refused code exchange means for the user (the code itself is never shown)."""
    if error.error == "invalid_grant":
        return OAuthError("Google refused this sign-in's authorization code: it was already used, or it "
                          f"expired. {AGAIN}", code="exchange_failed")
    if error.error in ("invalid_client", "unauthorized_client", "redirect_uri_mismatch"):
        logger.error("Google refused the app's OAuth client while finishing a sign-in (%s): check "
                     "GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET and the redirect URI", error.error)
        return OAuthError("Google refused this site's Gmail app configuration. Ask an administrator to check it. "
                          "Nothing was connected.", code="token_endpoint")
    logger.warning("Google's token endpoint failed while finishing a sign-in (%s, HTTP %s)", error.error,
                   error.status_code)
    return OAuthError(f"Google's sign-in service failed ({error.error or 'an error'}); try again in a moment. "
                      f"{AGAIN}", code="token_endpoint")


def save_account(owner: Any, address: str, credentials: dict[str, Any], *,
                 account: ProviderAccount | None = None) -> ProviderAccount:
    """Creates or updates ``owner``'s Gmail account of ``address`` (accounts.save_signed_in_account).
    Used by the OAuth callback and by enroll."""
    from integrations import accounts

    return accounts.save_signed_in_account(owner, "gmail", address, credentials, account=account)
