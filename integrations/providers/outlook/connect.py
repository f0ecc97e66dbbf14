"""Connecting Outlook: the authorization-code flow with PKCE, done by msal.

``start`` records a sign-in with integrations.oauth (a state bound to the user, one use, ten
minutes), has msal build the flow with that state (``initiate_auth_code_flow``: PKCE S256 and an
OpenID nonce; scopes Mail.Read and User.Read, plus Mail.ReadWrite only while a feature the user
turned on for the account wants Capability.MARK_READ, see ``scopes_for``; msal adds
offline_access, openid and profile) and keeps msal's flow on the server, in the sign-in's encrypted ``code_verifier`` column
(as JSON: its PKCE code_verifier and nonce never reach the browser). A sign-in started through
the API therefore finishes in the browser just as one started from the page. The redirect URI is
APP_PUBLIC_URL + the callback path.

``finish`` (GET /connections/oauth/outlook/callback/) consumes the state (oauth.callback: denied
consent, an unknown, used, expired or other user's state are refused there), lets msal exchange
the code (``acquire_token_by_auth_code_flow``: state, PKCE and nonce), reads the address from
``/me``, and creates or updates the user's Outlook account of that address, storing msal's
serialized token cache, home account id and the scopes granted (credentials, encrypted; the
user may untick Mail.ReadWrite on Microsoft's page: the account is then connected read-only, and
the provider's missing_grant says so). Any failure raises
OAuthError with a message for the user, having stored nothing.
"""
from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, ClassVar

import msal
import requests
from django.conf import settings

from integrations.providers.connect import OAuthConnect, OAuthError
from integrations.providers.outlook import auth

if TYPE_CHECKING:
    from django.http import HttpRequest

    from integrations.models import ProviderAccount

logger = logging.getLogger(__name__)

LABEL = "Outlook"
AGAIN = "Nothing was connected. Start again from the Connections page."
# What of msal's flow is kept (auth_uri went to the browser; the rest is rebuilt from these).
FLOW_KEYS = ("state", "redirect_uri", "scope", "code_verifier", "nonce", "claims_challenge")


class OutlookConnect(OAuthConnect):
    provider_key: ClassVar[str] = "outlook"
    identity_keys: ClassVar[tuple[str, ...]] = ("email",)

    def is_configured(self) -> bool:
        return bool(settings.MS_CLIENT_ID and settings.MS_CLIENT_SECRET)

    def public_config(self, config: dict) -> dict:
        return {key: config[key] for key in ("email", "folders") if key in config}

    @staticmethod
    def scopes_for(account: ProviderAccount | None) -> list[str]:
        """What a sign-in for ``account`` asks for: auth.SCOPES (Mail.Read, User.Read), and
        Mail.ReadWrite only while a feature the user enabled for it wants MARK_READ
        (integrations.grants). A new account, or one whose write-back was turned off, signs in
        read-only again."""
        from integrations import grants  # grants imports the provider registry, which imports this
        from integrations.providers.base import Capability

        if Capability.MARK_READ in grants.wanted(account):
            return [*auth.SCOPES, auth.MAIL_READ_WRITE]
        return list(auth.SCOPES)

    def start(self, request: HttpRequest, account: ProviderAccount | None = None) -> str:
        from integrations import oauth
        from integrations.models import OAuthState

        state, _verifier = oauth.begin(request.user, self.provider_key, account=account)
        try:
            flow = auth.msal_app().initiate_auth_code_flow(
                self.scopes_for(account), redirect_uri=oauth.redirect_uri(self.provider_key), state=state,
                prompt="select_account", login_hint=account.external_address if account is not None else None)
        except (requests.RequestException, ValueError) as error:
            logger.warning("Microsoft's sign-in service could not be used to start a sign-in (%s)",
                           type(error).__name__)
            raise OAuthError("Microsoft's sign-in service could not be reached; try again in a moment.",
                             code="token_endpoint") from None
        # msal made its own PKCE verifier (and nonce): it replaces the one oauth.begin made.
        kept = {key: flow.get(key) for key in FLOW_KEYS}
        OAuthState.objects.filter(state=state).update(code_verifier=json.dumps(kept))
        return str(flow["auth_uri"])

    def finish(self, request: HttpRequest) -> ProviderAccount:
        from integrations import oauth

        record, _code = oauth.callback(request, self.provider_key, LABEL)
        try:
            flow = json.loads(record.code_verifier)
        except ValueError:
            flow = None
        if not isinstance(flow, dict) or flow.get("state") != record.state:
            raise OAuthError(f"This sign-in was not started as an Outlook sign-in here. {AGAIN}", code="bad_state")
        credentials = self._exchange(flow, request)
        address = self._address(request.user, credentials)
        if record.account is not None and (record.account.config or {}).get("email", "").lower() != address:
            raise OAuthError(
                f"You signed in to Microsoft as {address}, but this connector is "
                f"{record.account.external_address or record.account}. Sign in with that account to reconnect it, "
                "or use Connect Outlook to add the other one. Nothing was changed.", code="wrong_account")
        account = save_account(request.user, address, credentials, account=record.account)
        if settings.OUTLOOK_PUSH:
            from integrations.providers.outlook.push import subscribe_safely

            subscribe_safely(account)
        return account

    # --- the steps of finish

    def _exchange(self, flow: dict[str, Any], request: HttpRequest) -> dict[str, Any]:
        """msal's code exchange; the credentials to store (package docstring). The scopes redeemed
        are those the sign-in asked for (kept in the flow at start), so a write-back turned on or
        off meanwhile does not make the answer mismatch its request."""
        cache = msal.SerializableTokenCache()
        asked = auth.granted_scopes(flow.get("scope")) or list(auth.SCOPES)
        try:
            result = auth.msal_app(cache).acquire_token_by_auth_code_flow(
                flow, {key: value for key, value in request.GET.items()}, scopes=asked)
        except ValueError:  # msal: the state (or the flow) does not match this answer
            raise OAuthError(f"This sign-in's answer does not match the sign-in that was started. {AGAIN}",
                             code="bad_state") from None
        except (requests.RequestException, OSError) as error:
            logger.warning("Microsoft's token endpoint could not be used to finish a sign-in (%s)",
                           type(error).__name__)
            raise OAuthError(f"Microsoft's sign-in service could not be reached. {AGAIN}",
                             code="token_endpoint") from None
        if "error" in result:
            code = str(result.get("error"))
            if code in ("invalid_grant", "interaction_required"):
                raise OAuthError("Microsoft refused this sign-in's authorization code: it was already used, or it "
                                 f"expired. {AGAIN}", code="exchange_failed")
            if code in ("invalid_client", "unauthorized_client"):
                logger.error("Microsoft refused the app's credentials while finishing a sign-in (%s): check "
                             "MS_CLIENT_ID, MS_CLIENT_SECRET and the redirect URI", code)
                raise OAuthError("Microsoft refused this site's Outlook app configuration. Ask an administrator to "
                                 "check it. Nothing was connected.", code="token_endpoint")
            logger.warning("Microsoft's token endpoint failed while finishing a sign-in (%s)", code[:40])
            raise OAuthError(f"Microsoft's sign-in service failed ({code[:40]}); try again in a moment. {AGAIN}",
                             code="token_endpoint")
        granted = auth.granted_scopes(str(result.get("scope") or ""))
        if "mail.read" not in {scope.lower() for scope in granted}:
            raise OAuthError(f"Microsoft did not grant read access to the mailbox (Mail.Read). {AGAIN}",
                             code="not_granted")
        accounts = list(cache.search(msal.TokenCache.CredentialType.ACCOUNT))
        refresh_tokens = list(cache.search(msal.TokenCache.CredentialType.REFRESH_TOKEN))
        if not accounts or not refresh_tokens:
            raise OAuthError("Microsoft granted no offline access (no refresh token came back), so the mailbox "
                             f"could not be synced in the background. {AGAIN}", code="not_granted")
        return {"token_cache": cache.serialize(), "home_account_id": accounts[0]["home_account_id"],
                "scopes": granted}

    def _address(self, user: Any, credentials: dict[str, Any]) -> str:
        """The mailbox's address, from /me with the new token."""
        from integrations.models import ProviderAccount
        from integrations.providers.base import ProviderError
        from integrations.providers.outlook.client import GraphClient

        unsaved = ProviderAccount(owner=user, provider=self.provider_key, credentials=credentials)
        client = GraphClient(unsaved)
        try:
            me = client.get("me", params={"$select": "mail,userPrincipalName,displayName"}, what="/me")
        except ProviderError as error:
            raise OAuthError(f"Signed in, but Microsoft Graph did not tell the mailbox's address ({error}). "
                             f"{AGAIN}", code="mailbox_unreadable") from None
        finally:
            client.close()
        address = str(me.get("mail") or me.get("userPrincipalName") or "").strip().lower()
        if "@" not in address:
            raise OAuthError(f"Signed in, but Microsoft Graph did not tell the mailbox's address. {AGAIN}",
                             code="mailbox_unreadable")
        return address


def save_account(owner: Any, address: str, credentials: dict[str, Any], *,
                 account: ProviderAccount | None = None) -> ProviderAccount:
    """Creates or updates ``owner``'s Outlook account of ``address`` (accounts.save_signed_in_account).
    A push secret already stored (client_state) is kept: its subscription stays valid."""
    from integrations import accounts

    return accounts.save_signed_in_account(owner, "outlook", address, credentials, account=account,
                                           keep=("client_state",))
