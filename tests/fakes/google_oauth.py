"""Google OAuth 2.0 side of the fake: consent page, token endpoint, service-account JWT grant,
OIDC signing keys and certs. Answers are shaped like accounts.google.com / oauth2.googleapis.com."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

GMAIL_READONLY = "https://www.googleapis.com/auth/gmail.readonly"
# Any of these lets a token read mail; gmail.metadata reads only headers (no raw, no q).
GMAIL_MODIFY = "https://www.googleapis.com/auth/gmail.modify"
# What users.messages.modify accepts.
MODIFY_SCOPES = frozenset({"https://mail.google.com/", GMAIL_MODIFY})
GMAIL_SCOPES = frozenset({
    "https://mail.google.com/", GMAIL_READONLY, "https://www.googleapis.com/auth/gmail.modify",
    "https://www.googleapis.com/auth/gmail.metadata",
})
METADATA_SCOPE = "https://www.googleapis.com/auth/gmail.metadata"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"

Response = tuple[int, dict[str, str], bytes]


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def private_pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def certificate_pem(key: rsa.RSAPrivateKey, common_name: str) -> str:
    """Self-signed x509 certificate: the format Google's /oauth2/v1/certs serves."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    return status, {"Content-Type": "application/json; charset=UTF-8", **(headers or {})}, json.dumps(body).encode()


def oauth_error(status: int, error: str, description: str) -> Response:
    return json_response(status, {"error": error, "error_description": description})


@dataclass
class AccessToken:
    email: str
    expires_at: float
    scopes: frozenset[str]


@dataclass
class RefreshToken:
    email: str
    client_id: str
    scopes: frozenset[str]


@dataclass
class AuthCode:
    email: str
    client_id: str
    redirect_uri: str
    challenge: str
    scopes: frozenset[str]
    offline: bool
    expires_at: float
    used: bool = False


@dataclass
class ServiceAccount:
    client_email: str
    client_id: str
    domains: list[str]
    public_pems: dict[str, str] = field(default_factory=dict)  # private_key_id -> cert PEM


class OAuthState:
    """Tokens, codes and keys of the fake Google identity provider."""

    def __init__(self, base_url: str, client_id: str, client_secret: str,
                 mailbox_exists: Callable[[str], bool], ensure_mailbox: Callable[[str], Any]) -> None:
        self.base_url = base_url
        self.client_id = client_id
        self.client_secret = client_secret
        self._mailbox_exists = mailbox_exists
        self._ensure_mailbox = ensure_mailbox
        # OIDC keys survive reset() so long-lived verifiers' cert caches stay right.
        self._oidc_key = new_rsa_key()
        self._oidc_kid = secrets.token_hex(20)
        self._oidc_cert = certificate_pem(self._oidc_key, "fake-oidc")
        self._untrusted_key = new_rsa_key()
        self.reset()

    def reset(self) -> None:
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, RefreshToken] = {}
        self.codes: dict[str, AuthCode] = {}
        self.service_accounts: dict[str, ServiceAccount] = {}
        self.consent_email: str | None = None
        self.consent_denied = False
        # Scopes the user unticks on the consent page (Google's granular consent): not granted.
        self.consent_unticked: frozenset[str] = frozenset()
        self.token_endpoint_failure: int | None = None

    # --- tokens

    def mint_access(self, email: str, scopes: frozenset[str], expires_in: int = 3600) -> str:
        token = "ya29.fake-" + secrets.token_urlsafe(24)
        self.access[token] = AccessToken(email, time.time() + expires_in, scopes)
        return token

    def issue_tokens(self, email: str, expires_in: int, scopes: tuple[str, ...] | list[str]) -> dict[str, Any]:
        scope_set = frozenset(scopes)
        refresh = "1//fake-" + secrets.token_urlsafe(32)
        self.refresh[refresh] = RefreshToken(email, self.client_id, scope_set)
        return {"access_token": self.mint_access(email, scope_set, expires_in), "refresh_token": refresh,
                "expires_in": expires_in, "scope": " ".join(scopes), "token_type": "Bearer"}

    def revoke(self, email: str) -> None:
        self.refresh = {k: v for k, v in self.refresh.items() if v.email != email}
        self.access = {k: v for k, v in self.access.items() if v.email != email}

    def expire_access_tokens(self, email: str) -> None:
        for token in self.access.values():
            if token.email == email:
                token.expires_at = 0

    def check_bearer(self, authorization: str | None) -> AccessToken | None:
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        token = self.access.get(authorization[7:].strip())
        if token is None or token.expires_at <= time.time():
            return None
        return token

    # --- consent page

    def authorize(self, params: dict[str, str]) -> Response:
        """Mimics GET accounts.google.com/o/oauth2/auth after the user clicks Allow (or Deny)."""
        if params.get("client_id") != self.client_id:
            return 401, {"Content-Type": "text/plain"}, b"Error 401: invalid_client (The OAuth client was not found.)"
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri.startswith(("http://", "https://")):
            return 400, {"Content-Type": "text/plain"}, b"Error 400: redirect_uri_mismatch"
        problem = None
        if params.get("response_type") != "code":
            problem = "response_type must be code"
        elif not params.get("scope"):
            problem = "Missing required parameter: scope"
        elif not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
            problem = "PKCE required: code_challenge with code_challenge_method=S256"
        if problem:
            return 400, {"Content-Type": "text/plain"}, f"Error 400: invalid_request ({problem})".encode()
        answer: dict[str, str] = {}
        if self.consent_denied:
            answer["error"] = "access_denied"
        else:
            email = self.consent_email or params.get("login_hint")
            if not email:
                return 400, {"Content-Type": "text/plain"}, b"fake: call consent_as(email) before the consent page"
            self._ensure_mailbox(email)
            code = "4/fake-" + secrets.token_urlsafe(32)
            asked = params["scope"].split()
            scopes = frozenset(asked) - self.consent_unticked
            self.codes[code] = AuthCode(email, self.client_id, redirect_uri, params["code_challenge"], scopes,
                                        params.get("access_type") == "offline", time.time() + 600)
            answer.update(code=code, scope=" ".join(scope for scope in asked if scope in scopes))
        if "state" in params:
            answer["state"] = params["state"]
        sep = "&" if urllib.parse.urlparse(redirect_uri).query else "?"
        location = redirect_uri + sep + urllib.parse.urlencode(answer)
        return 302, {"Location": location, "Content-Type": "text/html"}, b""

    # --- token endpoint

    def token(self, form: dict[str, str], authorization: str | None) -> Response:
        """Mimics POST oauth2.googleapis.com/token for the three grants the project uses."""
        if self.token_endpoint_failure is not None:
            status = self.token_endpoint_failure
            error = {400: "invalid_grant", 401: "invalid_client", 429: "rate_limit_exceeded"}.get(status, "internal_failure")
            return oauth_error(status, error, "Injected failure.")
        grant = form.get("grant_type")
        if grant == JWT_BEARER:
            return self._jwt_grant(form.get("assertion", ""))
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization and authorization.lower().startswith("basic "):
            decoded = base64.b64decode(authorization[6:]).decode()
            basic_id, _, basic_secret = decoded.partition(":")
            client_id, client_secret = urllib.parse.unquote(basic_id), urllib.parse.unquote(basic_secret)
        if client_id != self.client_id or client_secret != self.client_secret:
            return oauth_error(401, "invalid_client", "Unauthorized")
        if grant == "refresh_token":
            record = self.refresh.get(form.get("refresh_token", ""))
            if record is None:
                return oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
            return json_response(200, {"access_token": self.mint_access(record.email, record.scopes),
                                       "expires_in": 3599, "scope": " ".join(sorted(record.scopes)),
                                       "token_type": "Bearer"})
        if grant == "authorization_code":
            return self._code_grant(form)
        return oauth_error(400, "unsupported_grant_type", f"Invalid grant_type: {grant}")

    def _code_grant(self, form: dict[str, str]) -> Response:
        code = self.codes.get(form.get("code", ""))
        if code is None or code.expires_at < time.time():
            return oauth_error(400, "invalid_grant", "Malformed auth code.")
        if code.used:
            # Google also revokes what the first exchange issued; the replay itself is what tests see.
            return oauth_error(400, "invalid_grant", "Bad Request")
        code.used = True
        if form.get("redirect_uri") != code.redirect_uri:
            return oauth_error(400, "redirect_uri_mismatch", "Bad Request")
        verifier = form.get("code_verifier")
        if not verifier:
            return oauth_error(400, "invalid_grant", "Missing code verifier.")
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
        if digest != code.challenge:
            return oauth_error(400, "invalid_grant", "Invalid code verifier.")
        body: dict[str, Any] = {"access_token": self.mint_access(code.email, code.scopes), "expires_in": 3599,
                                "scope": " ".join(sorted(code.scopes)), "token_type": "Bearer"}
        if code.offline:
            refresh = "1//fake-" + secrets.token_urlsafe(32)
            self.refresh[refresh] = RefreshToken(code.email, code.client_id, code.scopes)
            body["refresh_token"] = refresh
        if "openid" in code.scopes or "email" in code.scopes:
            body["id_token"] = self.sign_id_token(self.client_id, email=code.email)
        return json_response(200, body)

    def create_service_account(self, client_email: str, domains: list[str]) -> dict[str, Any]:
        key = new_rsa_key()
        key_id = secrets.token_hex(20)
        account = self.service_accounts.get(client_email)
        if account is None:
            account = ServiceAccount(client_email, str(uuid.uuid4().int)[:21], list(domains))
            self.service_accounts[client_email] = account
        account.domains = list(domains)
        account.public_pems[key_id] = certificate_pem(key, client_email)
        return {
            "type": "service_account", "project_id": client_email.split("@")[-1].split(".")[0],
            "private_key_id": key_id, "private_key": private_pem(key), "client_email": client_email,
            "client_id": account.client_id, "auth_uri": self.base_url + "/o/oauth2/auth",
            "token_uri": self.base_url + "/token", "auth_provider_x509_cert_url": self.base_url + "/oauth2/v1/certs",
            "universe_domain": "googleapis.com",
        }

    def _jwt_grant(self, assertion: str) -> Response:
        """Domain-wide delegation: the service account's signed JWT names the user in `sub`."""
        try:
            header, claims, _, _ = jwt._unverified_decode(assertion)
        except (ValueError, TypeError):
            return oauth_error(400, "invalid_grant", "Invalid JWT: malformed.")
        account = self.service_accounts.get(claims.get("iss", ""))
        pem = account.public_pems.get(header.get("kid", "")) if account else None
        if account is None or pem is None:
            return oauth_error(400, "invalid_grant", "Invalid grant: account not found")
        try:
            # google-auth always addresses the assertion to Google's endpoint, whatever token_uri says.
            jwt.decode(assertion, certs={header["kid"]: pem}, clock_skew_in_seconds=10,
                       audience=[GOOGLE_TOKEN_URI, self.base_url + "/token"])
        except ValueError as exc:
            return oauth_error(400, "invalid_grant", f"Invalid JWT Signature or claims: {exc}")
        scopes = frozenset(str(claims.get("scope", "")).split())
        subject = claims.get("sub")
        if not scopes:
            return oauth_error(400, "invalid_scope", "Invalid OAuth scope or ID token audience provided.")
        if not subject or subject.rpartition("@")[2].lower() not in {d.lower() for d in account.domains}:
            return oauth_error(400, "unauthorized_client", "Client is unauthorized to retrieve access tokens "
                               "using this method, or client not authorized for any of the scopes requested.")
        if not self._mailbox_exists(subject):
            return oauth_error(400, "invalid_grant", "Invalid email or User ID")
        return json_response(200, {"access_token": self.mint_access(subject, scopes), "expires_in": 3599,
                                   "token_type": "Bearer"})

    # --- OIDC (Pub/Sub push tokens)

    def certs(self) -> Response:
        """Mimics GET www.googleapis.com/oauth2/v1/certs: {kid: PEM x509 certificate}."""
        return json_response(200, {self._oidc_kid: self._oidc_cert}, {"Cache-Control": "public, max-age=3600"})

    def sign_id_token(self, audience: str, *, email: str = "push@fake-project.iam.gserviceaccount.com",
                      issuer: str = "https://accounts.google.com", expires_in: int = 3600,
                      untrusted_key: bool = False) -> str:
        now = int(time.time())
        exp = now + expires_in
        claims = {"aud": audience, "azp": str(int(hashlib.sha256(email.encode()).hexdigest()[:15], 16)),
                  "email": email, "email_verified": True, "exp": exp, "iat": min(now, exp - 60), "iss": issuer,
                  "sub": str(int(hashlib.sha256(email.encode()).hexdigest()[:18], 16))}
        key = self._untrusted_key if untrusted_key else self._oidc_key
        # The untrusted key reuses the served kid, so rejection proves the signature itself is checked.
        signer = crypt.RSASigner.from_string(private_pem(key), key_id=self._oidc_kid)
        return jwt.encode(signer, claims).decode()
