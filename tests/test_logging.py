"""Structured logs: account id and provider on every record of a sync, JSON lines, no secrets."""
from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from crmext.logs import ContextFilter, JsonFormatter, PlainFormatter, log_context
from integrations.models import ProviderAccount
from integrations.providers import registry
from integrations.providers.base import BackfillWindow, Batch, CursorExpired, MessageProvider
from integrations.sync import sync_account
from tests.factories import message

ROOT = Path(__file__).resolve().parent.parent
provider_logger = logging.getLogger("tests.logging_provider")

SECRETS = ["hunter2", "ya29.access-abc", "1//refresh-xyz", "client-secret-123", "dXNlcjpwYXNz", "bearer-tok-9",
           "redis-pw-77"]


class LoggingProvider(MessageProvider):
    """Logs from each phase, then serves one delta page with a message that cannot be stored."""

    key = "logging"
    display_name = "Logging"
    expire_cursor = False

    def authenticate(self) -> None:
        provider_logger.info("authenticating %s", {"username": "alice", "password": "hunter2"})

    def fetch_since(self, cursor: dict) -> Batch:
        provider_logger.info("fetching since %s", cursor)
        if self.expire_cursor:
            raise CursorExpired("the server forgot the cursor")
        # raw_size=-1 breaks a CHECK constraint: ingest quarantines it and logs a warning.
        return Batch(messages=[message(), message(raw_size=-1)], new_cursor={"c": 2})

    def fetch_initial(self, window: BackfillWindow, page_token: dict | None) -> Batch:
        provider_logger.info("backfill page %s", page_token)  # runs in the engine's fetch thread
        return Batch(messages=[message()], new_cursor={"c": 3})


@pytest.fixture
def logging_account(user, monkeypatch):
    monkeypatch.setitem(registry.PROVIDERS, "logging", ("Logging", f"{__name__}.LoggingProvider"))
    registry.provider_class.cache_clear()
    yield ProviderAccount.objects.create(owner=user, provider="logging", display_name="L", sync_cursor={"c": 1})
    registry.provider_class.cache_clear()


@pytest.fixture
def records(caplog):
    """The records caplog sees, passed through the project's filter as the console handler does."""
    caplog.set_level(logging.INFO)
    caplog.handler.addFilter(ContextFilter())
    return caplog


class _Request:
    """Stands in for the request object Django's request logger puts on its records."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __str__(self) -> str:
        return f"<WSGIRequest: GET '{self.path}'>"


def _stream_handler(formatter: logging.Formatter) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(formatter)
    logger = logging.getLogger(f"tests.logging.{id(stream)}")
    logger.handlers, logger.propagate, logger.level = [handler], False, logging.DEBUG
    return logger, stream


@pytest.mark.django_db
def test_every_record_of_a_sync_carries_the_account_and_provider(logging_account, records):
    logging.getLogger("tests").info("before the sync")
    outcome = sync_account(logging_account.pk)
    logging.getLogger("tests").info("after the sync")

    assert outcome.status == "succeeded", outcome
    during = [r for r in records.records if r.getMessage() not in ("before the sync", "after the sync")]
    names = {r.name for r in during}
    assert {"tests.logging_provider", "integrations.quarantine"} <= names  # provider and ingest
    assert all((r.account_id, r.provider) == (logging_account.pk, "logging") for r in during), [
        (r.name, r.getMessage()) for r in during]
    outside = [r for r in records.records if r.getMessage() in ("before the sync", "after the sync")]
    assert len(outside) == 2 and not any(hasattr(r, "account_id") for r in outside)
    assert "hunter2" not in records.text


@pytest.mark.django_db
def test_engine_records_carry_the_context_too(logging_account, records, monkeypatch):
    monkeypatch.setattr(LoggingProvider, "expire_cursor", True)
    assert sync_account(logging_account.pk).status == "succeeded"
    engine = [r for r in records.records if r.name == "integrations.sync"]
    assert engine and "expired" in engine[0].getMessage()
    assert all((r.account_id, r.provider) == (logging_account.pk, "logging") for r in engine)


@pytest.mark.django_db
def test_backfill_pages_fetched_in_a_thread_carry_the_context(logging_account, records):
    ProviderAccount.objects.filter(pk=logging_account.pk).update(sync_cursor={})
    assert sync_account(logging_account.pk).status == "succeeded"
    pages = [r for r in records.records if r.getMessage().startswith("backfill page")]
    assert pages and all((r.account_id, r.provider) == (logging_account.pk, "logging") for r in pages)


def test_contexts_nest_and_restore_and_stay_in_their_thread(records):
    log = logging.getLogger("tests.context")
    seen: dict[str, dict] = {}

    def other_thread() -> None:
        log.info("other")
        seen["other"] = {k: getattr(records.records[-1], k, None) for k in ("account_id", "provider", "run_id")}

    with log_context(account_id=7, provider="imap"):
        with log_context(run_id=3):
            log.info("inner")
        log.info("outer")
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    log.info("none")

    inner, outer, _other, none = records.records
    assert (inner.account_id, inner.provider, inner.run_id) == (7, "imap", 3)
    assert (outer.account_id, outer.provider) == (7, "imap") and not hasattr(outer, "run_id")
    assert seen["other"] == {"account_id": None, "provider": None, "run_id": None}  # a new thread starts empty
    assert not hasattr(none, "account_id")


def test_json_lines_are_valid_json_with_context_extras_and_exceptions():
    logger, stream = _stream_handler(JsonFormatter())
    with log_context(account_id=12, provider="mbox"):
        logger.warning("Stored %s messages; two lines:\nsecond «line»", 3, extra={"run_id": 5})
        try:
            raise ValueError("bad page")
        except ValueError:
            logger.exception("Page failed")
    logger.info("plain %s", object())

    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    first, second, third = (json.loads(line) for line in lines)
    assert first["message"] == "Stored 3 messages; two lines:\nsecond «line»"
    assert (first["level"], first["account_id"], first["provider"], first["run_id"]) == ("WARNING", 12, "mbox", 5)
    assert first["logger"] == logger.name and first["time"].endswith("+00:00")
    assert second["level"] == "ERROR" and "ValueError: bad page" in second["exception"]
    assert "account_id" not in third and third["message"].startswith("plain <object object")


def test_plain_lines_append_the_context():
    logger, stream = _stream_handler(PlainFormatter("%(levelname)s %(name)s: %(message)s"))
    with log_context(account_id=12, provider="mbox"):
        logger.info("hello %s", "world")
    assert stream.getvalue() == f"INFO {logger.name}: hello world [account_id=12 provider=mbox]\n"


@pytest.mark.parametrize("formatter", [JsonFormatter(), PlainFormatter()], ids=["json", "plain"])
def test_credentials_are_masked_in_arguments_text_extras_and_tracebacks(formatter):
    logger, stream = _stream_handler(formatter)
    logger.info("token refresh answered %s", {"access_token": "ya29.access-abc", "refresh_token": "1//refresh-xyz",
                                              "expires_in": 3599, "token_type": "Bearer"})
    logger.info("POST /token client_id=app-1&client_secret=client-secret-123&grant_type=refresh_token")
    logger.info("request headers: %s", {"Authorization": "Basic dXNlcjpwYXNz", "Accept": "application/json"})
    logger.info("sent 'Authorization: Bearer bearer-tok-9' to the API")
    logger.info("broker at redis://:redis-pw-77@cache.internal:6379/0")
    logger.info("login", extra={"credentials": {"username": "alice", "password": "hunter2"}, "account": "alice"})
    request = _Request("/oauth/callback?access_token=ya29.access-abc")
    logger.warning("Not Found: /oauth/callback", extra={"request": request})
    try:
        raise RuntimeError("IMAP LOGIN failed for password='hunter2'")
    except RuntimeError:
        logger.exception("Sync failed")

    output = stream.getvalue()
    for secret in SECRETS:
        assert secret not in output, (secret, output)
    # What is not secret stays readable.
    for kept in ("expires_in", "3599", "client_id=app-1", "grant_type=refresh_token", "application/json",
                 "cache.internal:6379", "Bearer", "alice", "RuntimeError"):
        assert kept in output, kept


def test_a_broken_format_never_raises_and_is_still_masked():
    logger, stream = _stream_handler(PlainFormatter())
    logger.info("two %s %s", "password=hunter2")  # one argument short
    assert "hunter2" not in stream.getvalue() and "two" in stream.getvalue()


def test_settings_log_format_json_writes_json_lines_through_the_console_handler():
    env = {**os.environ, "DEBUG": "true", "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
    code = ("import logging; from crmext.logs import log_context\n"
            "with log_context(account_id=4, provider='imap'):\n"
            "    logging.getLogger('integrations.sync').warning('login with password=hunter2')")
    result = subprocess.run([sys.executable, "manage.py", "shell", "-v", "0", "-c", code], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    entry = next(e for e in entries if e["logger"] == "integrations.sync")
    assert (entry["account_id"], entry["provider"], entry["level"]) == (4, "imap", "WARNING")
    assert entry["message"] == "login with password=***"


def test_an_unknown_log_format_stops_start_up():
    env = {**os.environ, "DEBUG": "true", "LOG_FORMAT": "xml"}
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "LOG_FORMAT must be plain or json, got 'xml'" in result.stderr
