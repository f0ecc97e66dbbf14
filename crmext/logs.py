"""Structured logs: a per-task context (account id, provider) on every record, and no secrets.

``log_context(account_id=..., provider=...)`` holds its fields in a context variable for the
duration of a ``with`` block; ``ContextFilter``, installed on the log handlers (settings.LOGGING),
copies them onto each record and masks anything that looks like a credential. Two formatters
write the records: ``PlainFormatter`` (one readable line, the context appended) and
``JsonFormatter`` (one JSON object per line), chosen by LOG_FORMAT.

Context variables follow the code within one thread (and asyncio task); a thread pool does not
inherit them: work submitted to one should run in ``contextvars.copy_context().run``.
"""
from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

MASK = "***"

_context: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar("crmext_log_context", default={})


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Adds ``fields`` to every record logged inside the block (nested blocks add to the outer ones)."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


# --- redaction -------------------------------------------------------------------------------

# Keys whose values are secrets, wherever they appear: dict keys in log arguments and extras,
# "key=value" or "key": "value" in message text. Substring match, so "client_secret",
# "refresh_token", "X-Auth-Token" and "db_password" are all caught.
SENSITIVE_KEY = re.compile(
    r"pass(?:word|wd|phrase)?|pwd|secret|token|api[-_]?key|authorization|credential|cookie|session[-_]?id"
    r"|private[-_]?key|signature",
    re.IGNORECASE,
)


def _mask_value(match: re.Match[str]) -> str:
    quote = match.group("quote") or ""
    return f"{match.group('key')}{quote}{MASK}{quote}"


_TEXT_PATTERNS: list[tuple[re.Pattern[str], Any]] = [
    # Authorization: Bearer abc / "Authorization": "Basic abc" (the scheme is kept, the credential masked).
    (re.compile(r"""(?i)(\bauthorization["']?\s*[:=]\s*["']?)(?:(bearer|basic|token|digest)\s+)?[^\s"',;]+"""),
     r"\1\2 " + MASK),
    # Cookie and Set-Cookie headers: the whole value (session ids, CSRF tokens).
    (re.compile(r"""(?i)(\b(?:set-)?cookie["']?\s*[:=]\s*)[^\r\n"']+"""), r"\1" + MASK),
    # A bearer token anywhere else.
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*"), r"\1 " + MASK),
    # key=value, key: value, 'key': 'value', "key": "value" for sensitive keys; a quoted value is
    # masked whole (spaces included); a dict or list value is left to the keys inside it.
    (re.compile(
        r"""(?i)(?P<key>\b[\w.-]*(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[-_]?key)[\w.-]*["']?\s*[:=]\s*)"""
        r"""(?:(?P<quote>["'])(?:\\.|(?!(?P=quote)).)*(?P=quote)|(?![{\[])[^\s,;&}\]"']+)"""
    ), _mask_value),
    # Passwords in URLs: scheme://user:password@host (database and Redis URLs).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@"), r"\1" + MASK + "@"),
]


def redact_text(text: str) -> str:
    """``text`` with credentials masked: sensitive key=value pairs, Authorization values, URL passwords."""
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, key: str = "") -> Any:
    """A copy of ``value`` with secrets masked: by key in mappings (at any depth), by pattern in text."""
    if key and SENSITIVE_KEY.search(key):
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = [redact(item) for item in value]
        return tuple(items) if isinstance(value, tuple) else items
    return value


# Attributes every LogRecord has; anything else on a record came from ``extra=`` or a filter.
_STANDARD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRIBUTES and not k.startswith("_")}


class ContextFilter(logging.Filter):
    """Adds the ``log_context`` fields to each record and masks credentials in it.

    The message is rendered once, masked, and stored back (``msg`` becomes the final text,
    ``args`` empty), so every handler after this one sees the safe text. Attach it to handlers,
    not loggers: a logger's filters do not see records propagated from its children.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        context = _context.get()
        for name, value in context.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        if not getattr(record, "_crmext_redacted", False):
            self._redact(record)
            record._crmext_redacted = True
        return True

    def _redact(self, record: logging.LogRecord) -> None:
        args = record.args
        if isinstance(args, Mapping):
            args = redact(dict(args))
        elif args:
            args = tuple(redact(arg) if isinstance(arg, (Mapping, list, tuple, set)) else arg for arg in args)
        try:
            message = str(record.msg) % args if args else str(record.msg)
        except (TypeError, ValueError):  # a format that does not fit its arguments: keep both, never raise
            message = f"{record.msg} {args!r}"
        record.msg, record.args = redact_text(message), None
        for name, value in extra_fields(record).items():
            setattr(record, name, redact(value, name))
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)


def _text(value: Any) -> Any:
    """How an extra is written: numbers as they are, anything else (a request object) as masked text.

    Objects stay objects on the record, for handlers that use them (Django's mail handler
    reads ``record.request``); only their text in a log line is masked.
    """
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact_text(str(value))


def _prepared(record: logging.LogRecord) -> logging.LogRecord:
    """The record with context and masking, even on a handler configured without ContextFilter."""
    if not getattr(record, "_crmext_redacted", False):
        _FILTER.filter(record)
    return record


class PlainFormatter(logging.Formatter):
    """The usual one-line format, with the context and extras appended as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(_prepared(record))
        fields = extra_fields(record)
        if not fields:
            return line
        suffix = " ".join(f"{k}={_text(v)}" for k, v in fields.items())
        first, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{first} [{suffix}]{newline}{rest}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, context and extras."""

    def format(self, record: logging.LogRecord) -> str:
        _prepared(record)
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(extra_fields(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=_text, ensure_ascii=False)


_FILTER = ContextFilter()
