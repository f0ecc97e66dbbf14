"""Settings for CRMExtender integrations, read from the environment and an optional .env file.

Every variable is listed, with a comment, in .env.example.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from crmext.envconf import StrictEnv

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

_env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
env = StrictEnv(_env)

# Off unless asked for: a server started with no configuration must not run in debug mode.
# `make run` and `make test` turn it on for development.
DEBUG = env.bool("DEBUG", default=False)


def _local_secret(name: str) -> str:
    """A development secret kept in var/ so that restarts can still decrypt stored credentials.

    Created 0600 from the first byte and published with link(), which fails if the file
    exists: two processes starting together (web server and qcluster) agree on one key,
    and neither reads a half-written file.
    """
    path = VAR_DIR / name
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        scratch = VAR_DIR / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
        descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_urlsafe(50))
            try:
                os.link(scratch, path)
            except FileExistsError:
                pass  # another process published its key first: use that one
        finally:
            scratch.unlink(missing_ok=True)
    return path.read_text().strip()


def _is_weak_secret(value: str) -> bool:
    # Django's own deploy check (security.W009): short, repetitive or the startproject default.
    return len(value) < 50 or len(set(value)) < 5 or value.startswith("django-insecure-")


SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is false")
    SECRET_KEY = _local_secret("secret_key")
elif not DEBUG and _is_weak_secret(SECRET_KEY):
    raise ImproperlyConfigured(
        "SECRET_KEY is too weak for DEBUG=false: use at least 50 random characters, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )
SECRET_KEY_FALLBACKS = env.list("SECRET_KEY_FALLBACKS", default=[])
# django-fernet-encrypted-fields derives its keys from SECRET_KEY(+fallbacks) x SALT_KEY;
# the first salt encrypts, all of them decrypt, so a list rotates.
SALT_KEY = env.list("SALT_KEY", default=[])
if not SALT_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SALT_KEY must be set when DEBUG is false")
    SALT_KEY = [_local_secret("salt_key")]

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Transport security (production defaults; DEBUG turns them off for a local http server) ---
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
# The header only allows preloading; a domain is preloaded only when its owner submits it.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
# Behind a TLS-terminating proxy that sets X-Forwarded-Proto (and strips it from clients).
if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "contacts",
    "conversations",
    "integrations",
    "automation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "crmext.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # crmext/templates: the base layout and the sign-in pages (crmext is no app of its own).
        "DIRS": [BASE_DIR / "templates", BASE_DIR / "crmext" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

WSGI_APPLICATION = "crmext.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
# Connections are kept between requests and tasks: django-q2's database broker calls
# close_old_connections() whenever it queues a task, which with a max age of 0 would reconnect
# after every stored batch (about 10 ms each on PostgreSQL). Health checks drop dead ones.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web server read while the qcluster worker writes; the timeout
    # rides out the short write locks instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 30, "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    )
    DATABASES["default"].setdefault("TEST", {})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

# --- Web pages: Django's own sign-in views; there is no self sign-up ---------------------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "integrations:connections"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "crmext" / "static"]
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))

# Every record carries its log_context (account_id, provider during a sync) and has credentials
# masked (crmext.logs.ContextFilter); "json" writes one JSON object per line, "plain" one text line.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain").lower()
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, got {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "crmext.logs.ContextFilter"}},
    "formatters": {
        "plain": {"()": "crmext.logs.PlainFormatter", "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "crmext.logs.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# --- REST API ------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "crmext.api.KeysetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "crmext.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "CRMExtender integrations API",
    "DESCRIPTION": "Connectors, sync runs, communications, conversations, contacts and companies.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the sidecar package: served by this server, no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- django-q2 -------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
Q_CLUSTER: dict[str, object] = {
    "name": env.str("Q_CLUSTER_NAME", default="crmext"),
    "workers": env.int("Q_WORKERS", default=2, minimum=1),
    # A sync of a big mailbox is long; the claim in integrations.sync keeps an account on
    # one worker, so retry must exceed timeout or django-q2 would hand the task out twice.
    "timeout": env.int("Q_TIMEOUT", default=3600, minimum=60),
    "retry": env.int("Q_TIMEOUT", default=3600, minimum=60) + 600,
    "max_attempts": 1,
    "catch_up": False,
    "save_limit": 1000,
    "label": "Task queue",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
    # With the ORM broker each cluster's heartbeat (read by /health/) goes to a Django cache, and
    # the default one is per process: files under var/, shared by the web server and the clusters
    # of one host (several hosts: use Redis, whose broker keeps the heartbeats itself).
    Q_CLUSTER["cache"] = "django_q"
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "django_q": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                 "LOCATION": str(VAR_DIR / "django_q_cache")},
}

# --- Operations: /health/ (open: load balancers) and /metrics/ (Prometheus) --------------
# Bearer token Prometheus sends to /metrics/; empty: /metrics/ answers only in DEBUG.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
if METRICS_TOKEN and len(METRICS_TOKEN) < 32:
    raise ImproperlyConfigured(
        "METRICS_TOKEN must be at least 32 characters, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
    )
# Probes often come over plain http from inside the network: answer them instead of redirecting.
SECURE_REDIRECT_EXEMPT = [r"^health/$"]

# --- CRM behaviour -------------------------------------------------------------------
CRM_CREATE_CONTACTS = env.bool("CRM_CREATE_CONTACTS", default=True)
CRM_CREATE_COMPANIES = env.bool("CRM_CREATE_COMPANIES", default=True)
CRM_EXTRA_FREE_MAIL_DOMAINS = env.list("CRM_EXTRA_FREE_MAIL_DOMAINS", default=[])
CRM_IGNORED_SENDER_PATTERNS = env.list(
    "CRM_IGNORED_SENDER_PATTERNS",
    default=[
        r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|mailer[-_.]daemon|postmaster|bounces?)([-+.].*)?@",
        r"^notifications?@",
    ],
)
# Participants of one message that may create contacts (and companies); the rest only match.
CRM_MAX_CONTACTS_PER_MESSAGE = env.int("CRM_MAX_CONTACTS_PER_MESSAGE", default=50, minimum=0)
# Region for phone numbers written without a country code (an ISO 3166 code such as US or GB).
PHONE_DEFAULT_REGION = env.str("PHONE_DEFAULT_REGION", default="US").upper()
ATTACHMENT_MAX_BYTES = env.int("ATTACHMENT_MAX_BYTES", default=25 * 1024 * 1024, minimum=0)
# A message bigger than this is never parsed whole: providers fetch or read its headers only
# and it is stored with its size and a warning (parsing costs several times the raw size).
MESSAGE_MAX_BYTES = env.int("MESSAGE_MAX_BYTES", default=50 * 1024 * 1024, minimum=1024)
# Wall-clock seconds one message may take to parse; past it the message is stored from its
# headers with a warning, so that no crafted message holds a worker (and its account's claim).
PARSE_BUDGET_SECONDS = env.float("PARSE_BUDGET_SECONDS", default=5.0, minimum=0.1)
# Bytes of raw messages one fetched page may hold (every provider); the engine keeps at most
# two pages in memory (the one being stored and the one being fetched).
PAGE_MAX_BYTES = env.int("PAGE_MAX_BYTES", default=32 * 1024 * 1024, minimum=1024 * 1024)
# A message that cannot be stored is quarantined with a JSON copy of at most this many bytes.
QUARANTINE_COPY_MAX_BYTES = env.int("QUARANTINE_COPY_MAX_BYTES", default=2 * 1024 * 1024, minimum=0)
INGEST_BATCH_SIZE = env.int("INGEST_BATCH_SIZE", default=500, minimum=1)

# conversations stores communications per connected account without importing the
# integrations app (dependencies point integrations -> conversations -> contacts), so the
# account model is named here, the way AUTH_USER_MODEL names the user model.
CRM_ACCOUNT_MODEL = "integrations.ProviderAccount"

# --- Sync engine ---------------------------------------------------------------------
# A claim older than this is taken over by another worker (the holder is presumed dead);
# a running sync refreshes its claim after every batch.
SYNC_STALE_CLAIM_SECONDS = env.int("SYNC_STALE_CLAIM_SECONDS", default=1800, minimum=30)
SYNC_DEFAULT_INTERVAL_SECONDS = env.int("SYNC_DEFAULT_INTERVAL_SECONDS", default=300, minimum=10)
SYNC_BACKOFF_BASE_SECONDS = env.int("SYNC_BACKOFF_BASE_SECONDS", default=60, minimum=1)
SYNC_BACKOFF_MAX_SECONDS = env.int("SYNC_BACKOFF_MAX_SECONDS", default=6 * 3600, minimum=60)
SYNC_MAX_CONSECUTIVE_RESYNCS = env.int("SYNC_MAX_CONSECUTIVE_RESYNCS", default=5, minimum=1)
# How far back a first sync reaches, in days (0: everything).
SYNC_BACKFILL_DAYS = env.int("SYNC_BACKFILL_DAYS", default=0, minimum=0)
IMAP_TIMEOUT_SECONDS = env.int("IMAP_TIMEOUT_SECONDS", default=60, minimum=1)
# security "none" sends the password in clear text: refused unless this is true (in DEBUG,
# a loopback host is allowed without it, for a local test server).
ALLOW_INSECURE_IMAP = env.bool("ALLOW_INSECURE_IMAP", default=False)
# mbox accounts may only read files under this directory (symlinks resolved); uploads land here.
MBOX_IMPORT_DIR = Path(env.str("MBOX_IMPORT_DIR", default=str(VAR_DIR / "imports")))
# Uploads (mbox, Takeout archives): the largest file taken, and the free space an upload or an
# archive's extraction must leave on the import directory's disk.
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_BYTES", default=20 * 1024**3, minimum=1024 * 1024)
UPLOAD_MIN_FREE_BYTES = env.int("UPLOAD_MIN_FREE_BYTES", default=1024**3, minimum=0)

# --- Public address and Google / Gmail -------------------------------------------------
# The address users and providers reach this server at. OAuth redirect URIs and webhook
# URLs are built from it, never from the Host header of a request.
APP_PUBLIC_URL = env.str("APP_PUBLIC_URL", default="http://127.0.0.1:8000").rstrip("/")
GOOGLE_CLIENT_ID = env.str("GOOGLE_CLIENT_ID", default="")
GOOGLE_CLIENT_SECRET = env.str("GOOGLE_CLIENT_SECRET", default="")
# The endpoint settings exist so that tests, staging and emulators can point the real
# client libraries at another server; production keeps Google's defaults.
GOOGLE_AUTH_URI = env.str("GOOGLE_AUTH_URI", default="https://accounts.google.com/o/oauth2/auth")
GOOGLE_TOKEN_URI = env.str("GOOGLE_TOKEN_URI", default="https://oauth2.googleapis.com/token")
GOOGLE_OIDC_CERTS_URL = env.str("GOOGLE_OIDC_CERTS_URL", default="https://www.googleapis.com/oauth2/v1/certs")
GMAIL_API_ENDPOINT = env.str("GMAIL_API_ENDPOINT", default="https://gmail.googleapis.com").rstrip("/")
# Pub/Sub push: the topic users.watch publishes to, the audience of the push subscription's
# OIDC token, and the service account that subscription signs as. Empty topic: no push,
# Gmail accounts still sync on their interval.
GMAIL_PUBSUB_TOPIC = env.str("GMAIL_PUBSUB_TOPIC", default="")
GMAIL_PUBSUB_AUDIENCE = env.str("GMAIL_PUBSUB_AUDIENCE", default="")
GMAIL_PUBSUB_SERVICE_ACCOUNT = env.str("GMAIL_PUBSUB_SERVICE_ACCOUNT", default="")
# How far back a first Gmail sync reaches: a number of days, or "all".
GMAIL_INITIAL_DAYS = env.str("GMAIL_INITIAL_DAYS", default="90").strip().lower()
if GMAIL_INITIAL_DAYS != "all" and not (GMAIL_INITIAL_DAYS.isdigit() and int(GMAIL_INITIAL_DAYS) > 0):
    raise ImproperlyConfigured(f"GMAIL_INITIAL_DAYS must be a number of days or 'all', got {GMAIL_INITIAL_DAYS!r}")
# Per-mailbox quota units per second (Google allows 250 per user); a token bucket keeps under it.
GMAIL_QUOTA_UNITS_PER_SECOND = env.int("GMAIL_QUOTA_UNITS_PER_SECOND", default=200, minimum=1)

# --- Task suggestions (automation) ---------------------------------------------------
# The engine that reads new inbound messages: "rules" (deterministic, no network) or "llm"
# (an OpenAI-compatible chat-completions endpoint; any failure falls back to rules).
SUGGESTIONS_ENGINE = env.str("SUGGESTIONS_ENGINE", default="rules").lower()
if SUGGESTIONS_ENGINE not in ("rules", "llm"):
    raise ImproperlyConfigured(f"SUGGESTIONS_ENGINE must be rules or llm, got {SUGGESTIONS_ENGINE!r}")
SUGGESTIONS_LLM_BASE_URL = env.str("SUGGESTIONS_LLM_BASE_URL", default="https://api.openai.com/v1").rstrip("/")
SUGGESTIONS_LLM_MODEL = env.str("SUGGESTIONS_LLM_MODEL", default="gpt-4o-mini")
SUGGESTIONS_LLM_API_KEY = env.str("SUGGESTIONS_LLM_API_KEY", default="")
if SUGGESTIONS_ENGINE == "llm" and not SUGGESTIONS_LLM_API_KEY and "api.openai.com" in SUGGESTIONS_LLM_BASE_URL:
    raise ImproperlyConfigured("SUGGESTIONS_ENGINE=llm against api.openai.com needs SUGGESTIONS_LLM_API_KEY")
# At most this many characters of a message (subject + new text) ever leave for the endpoint.
SUGGESTIONS_LLM_MAX_CHARS = env.int("SUGGESTIONS_LLM_MAX_CHARS", default=4000, minimum=200)
SUGGESTIONS_LLM_TIMEOUT_SECONDS = env.float("SUGGESTIONS_LLM_TIMEOUT_SECONDS", default=20.0, minimum=0.1)
# Messages sent longer ago than this are not suggested from (a backfill must not flood the feed).
SUGGESTIONS_MAX_AGE_DAYS = env.int("SUGGESTIONS_MAX_AGE_DAYS", default=14, minimum=0)
# A user's default auto-approve threshold (each user may change theirs); above 1: never.
SUGGESTIONS_AUTO_APPROVE_THRESHOLD = env.float("SUGGESTIONS_AUTO_APPROVE_THRESHOLD", default=0.85, minimum=0.0)
# Whether newly connected accounts start with suggestions on (each account may change it).
SUGGESTIONS_ENABLED_BY_DEFAULT = env.bool("SUGGESTIONS_ENABLED_BY_DEFAULT", default=True)

# --- Microsoft 365 / Outlook (Graph) ---------------------------------------------------
MS_CLIENT_ID = env.str("MS_CLIENT_ID", default="")
MS_CLIENT_SECRET = env.str("MS_CLIENT_SECRET", default="")
# "common", "organizations", or a tenant id.
MS_TENANT = env.str("MS_TENANT", default="common")
# Endpoints: change only to point msal and the Graph client at a test server.
MS_AUTHORITY_HOST = env.str("MS_AUTHORITY_HOST", default="https://login.microsoftonline.com").rstrip("/")
GRAPH_API_BASE_URL = env.str("GRAPH_API_BASE_URL", default="https://graph.microsoft.com/v1.0").rstrip("/")
# Folders an Outlook account syncs unless its config names others (well-known names or folder ids).
OUTLOOK_FOLDERS = env.list("OUTLOOK_FOLDERS", default=["Inbox", "SentItems"])
# Graph requests one mailbox may make per 10 minutes (Graph's own limit is 10,000).
OUTLOOK_REQUESTS_PER_10_MINUTES = env.int("OUTLOOK_REQUESTS_PER_10_MINUTES", default=10000, minimum=10)
# Change notifications: Graph must reach APP_PUBLIC_URL/webhooks/outlook over public https.
OUTLOOK_PUSH = env.bool("OUTLOOK_PUSH", default=False)

# --- Twilio (SMS, MMS, WhatsApp) -----------------------------------------------------------
# The REST API's base; change only to point the twilio client at a test server.
TWILIO_API_BASE_URL = env.str("TWILIO_API_BASE_URL", default="https://api.twilio.com").rstrip("/")
# Days of messages an initial Twilio sync fetches (both directions, per configured number).
TWILIO_INITIAL_DAYS = env.int("TWILIO_INITIAL_DAYS", default=90, minimum=1)
# Each Twilio poll asks again for messages sent this many minutes before its cursor: late
# arrivals land there, and idempotency on the message SID makes the re-read free.
TWILIO_OVERLAP_MINUTES = env.int("TWILIO_OVERLAP_MINUTES", default=10, minimum=0)

# --- Triggers: signed outbound webhooks (automation.triggers) ------------------------------
# Let webhooks reach loopback, private and link-local addresses (a receiver on this host or
# LAN; the tests' loopback receiver). Off in production: a trigger must not become a way to
# probe the internal network. Cloud metadata, multicast and unspecified stay refused anyway.
TRIGGERS_ALLOW_PRIVATE_TARGETS = env.bool("TRIGGERS_ALLOW_PRIVATE_TARGETS", default=False)
# Attempts per delivery (network errors, 5xx and 429 are retried; other 4xx are final).
TRIGGERS_MAX_ATTEMPTS = env.int("TRIGGERS_MAX_ATTEMPTS", default=6, minimum=1)
# Exponential backoff: the first retry after about this many seconds, doubling, capped.
TRIGGERS_RETRY_BASE_SECONDS = env.float("TRIGGERS_RETRY_BASE_SECONDS", default=30.0, minimum=0.0)
TRIGGERS_RETRY_MAX_SECONDS = env.float("TRIGGERS_RETRY_MAX_SECONDS", default=3600.0, minimum=0.0)
# Connect and read timeout of one webhook call (seconds): short, a slow receiver is retried later.
TRIGGERS_TIMEOUT_SECONDS = env.float("TRIGGERS_TIMEOUT_SECONDS", default=5.0, minimum=0.1)
# At most this many bytes of a receiver's response are read.
TRIGGERS_RESPONSE_MAX_BYTES = env.int("TRIGGERS_RESPONSE_MAX_BYTES", default=16384, minimum=0)
# Characters of a failed call's response body kept in the delivery's error.
TRIGGERS_ERROR_BODY_CHARS = env.int("TRIGGERS_ERROR_BODY_CHARS", default=1000, minimum=0)
