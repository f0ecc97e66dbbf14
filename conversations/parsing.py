"""RFC 5322 / MIME parsing into ParsedMessage.

``parse_message`` never raises on malformed input: whatever cannot be read is recorded
in ``ParsedMessage.warnings`` and parsing carries on with what it has. It uses the
stdlib's compat32 parser, which tolerates garbage better and is several times faster
than ``email.policy.default``; header decoding (RFC 2047, RFC 2231, 8-bit junk) is done
with explicit charset fallbacks.

This module holds the entry points (``parse_message``, ``parse_headers_only``), the time
budget and the default message id; the layers below are ``conversations.bodies`` (the walk
of the MIME tree), ``conversations.mime`` (the capped stdlib parser) and
``conversations.headers`` (charsets, header values, addresses, dates, ids).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import time

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from conversations.bodies import _Bodies, _walk
from conversations.headers import (
    _collapsed,
    _first,
    _header_map,
    _received_date,
    _references,
    clean_text,
    decode_bytes,
    decode_header_value,
    parse_addresses,
    parse_date,
    parse_message_id,
)
from conversations.messages import ParsedMessage
from conversations.mime import _check, _parse_mime
from conversations.rendering import html_to_text

__all__ = ["clean_text", "decode_bytes", "decode_header_value", "html_to_text", "parse_headers_only", "parse_message"]

_LEADING_JUNK = re.compile(rb"(?:\xef\xbb\xbf)?[\r\n]*")
# The header block read when a message is kept with its headers alone because parsing it took
# too long (the IMAP provider fetches as much for a message over MESSAGE_MAX_BYTES).
HEADERS_ONLY_MAX_BYTES = 256 * 1024
# Wall-clock seconds one parse_message may take (settings.PARSE_BUDGET_SECONDS overrides).
# Every step is linear, so only a huge message comes near it; past it the message is kept
# with its headers alone, as parse_headers_only does, rather than holding the batch.
PARSE_BUDGET_SECONDS = 5.0


def _default_message_id(
    rfc_message_id: str, sender: str, date: dt.datetime | None, date_header: str, raw: bytes
) -> str:
    """The provider_message_id of a message its provider gives no id: Message-ID, sender and date.

    A Message-ID alone would let anyone suppress a message by sending another with the same
    Message-ID first, and fold together messages that share one by mistake; with the sender
    and the Date (as an instant, so that copies with a reformatted header agree) it is the
    same for every copy of one message (the same message in two folders, or re-fetched) and
    differs otherwise. The readable Message-ID comes first, cut so that the whole stays
    within 255 characters; the digest covers all of it. No Message-ID: a hash of the bytes.
    """
    if not rfc_message_id:
        return f"sha256:{hashlib.sha256(raw).hexdigest()}"
    when = date.isoformat() if date is not None else _collapsed(date_header)
    key = "\n".join((rfc_message_id, sender, when)).encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(key).hexdigest()[:24]
    return f"mid:{rfc_message_id[: 255 - len('mid:#') - len(digest)]}#{digest}"


def _budget() -> float:
    try:
        return float(getattr(settings, "PARSE_BUDGET_SECONDS", PARSE_BUDGET_SECONDS))
    except ImproperlyConfigured:  # parsing outside a configured project (a script, a notebook)
        return PARSE_BUDGET_SECONDS


def parse_message(raw: bytes, *, provider_message_id: str = "") -> ParsedMessage:
    """Parses one RFC 5322 message. Never raises on malformed input.

    ``provider_message_id`` defaults to one made of the Message-ID, sender and date (see
    ``_default_message_id``), or to a hash of the bytes when there is no Message-ID, so
    that the same message always gets the same id. Gmail export headers (X-GM-THRID,
    X-Gmail-Labels) fill the thread id and labels when present.

    Time is linear in the size of the message whatever it holds, and bounded: past
    ``PARSE_BUDGET_SECONDS`` (or ``settings.PARSE_BUDGET_SECONDS``) of wall-clock time the
    message is returned as ``parse_headers_only`` would give it (from at most
    ``HEADERS_ONLY_MAX_BYTES`` of headers), with a warning saying so. The deadline is
    checked between steps, never by a signal, so this works in any thread.
    """
    budget = _budget()
    try:
        return _parse(raw, provider_message_id, deadline=time.monotonic() + budget)
    except TimeoutError:
        return _headers_only(
            raw[:HEADERS_ONLY_MAX_BYTES],
            len(raw),
            provider_message_id=provider_message_id,
            why=f"parsing took over the {budget:g} s budget",
            id_source=raw,  # the id all its bytes give, as when parsing is quick enough
        )


def _parse(
    raw: bytes,
    provider_message_id: str,
    deadline: float | None,
    *,
    id_source: bytes | None = None,
    with_bodies: bool = True,
) -> ParsedMessage:
    warnings: list[str] = []
    # A byte-order mark or blank lines before the headers (Windows tools, some exports) would
    # make the stdlib parser read the whole message, headers included, as body.
    start = _LEADING_JUNK.match(raw).end()  # type: ignore[union-attr]  # always matches
    if start:
        warnings.append(f"{start} bytes before the headers skipped")
    try:
        message, parser = _parse_mime(raw[start:] if start else raw, deadline)
    except TimeoutError:
        raise
    except Exception as error:  # the parser is lenient; this is a last resort
        warnings.append(f"unparseable message: {type(error).__name__}")
        message, parser = _parse_mime(b"\r\n\r\n" + raw, deadline)
    if with_bodies:
        warnings.extend(parser.warnings)
    headers = _header_map(message)
    if not raw.strip():
        warnings.append("empty message")
    elif not headers:
        warnings.append("no headers: not an e-mail message?")

    rfc_message_id = parse_message_id(_first(headers, "message-id"))
    if not rfc_message_id:
        warnings.append("no Message-ID")

    sender_values = headers.get("from") or headers.get("sender") or headers.get("return-path") or []
    if not headers.get("from"):
        warnings.append("no From header")
    senders = parse_addresses(sender_values, warnings)
    date_header = _first(headers, "date")
    dated = parse_date(date_header, warnings)
    received_at = _received_date(headers, warnings)
    sent_at = dated
    if sent_at is None:
        if not date_header:
            warnings.append("no Date header")
        sent_at = received_at
    recipients = []
    for name in ("to", "cc", "bcc"):
        _check(deadline)
        recipients.append(parse_addresses(headers.get(name, []), warnings))
    _check(deadline)

    bodies = _Bodies(crlf=b"\r\n" in raw[:2000], cut=parser.cut, deadline=deadline)
    body_text = ""
    if with_bodies:
        try:
            _walk(message, bodies, warnings)
        except TimeoutError:
            raise
        except Exception as error:
            warnings.append(f"MIME structure unreadable: {type(error).__name__}")
        body_text = bodies.body_text()
        if not body_text.strip():
            body_text = bodies.fallback_text() or body_text

    in_reply_to_header = _first(headers, "in-reply-to")
    labels = tuple(
        clean_text(label.strip())
        for value in headers.get("x-gmail-labels", [])
        for label in decode_header_value(value).split(",")
        if label.strip()
    )
    subject_header = headers.get("subject")
    sender = senders[0].value if senders else _collapsed(" ".join(sender_values))
    return ParsedMessage(
        provider_message_id=provider_message_id
        or _default_message_id(rfc_message_id, sender, dated, date_header, raw if id_source is None else id_source),
        rfc_message_id=rfc_message_id,
        provider_thread_id=_first(headers, "x-gm-thrid").strip(),
        sender=senders[0] if senders else None,
        to=recipients[0],
        cc=recipients[1],
        bcc=recipients[2],
        subject=decode_header_value(subject_header[0], warnings) if subject_header else None,
        body_text=body_text,
        body_html="\n".join(bodies.html),
        sent_at=sent_at,
        received_at=received_at,
        in_reply_to=parse_message_id(in_reply_to_header) if in_reply_to_header else "",
        references=_references(" ".join(headers.get("references", []))),
        labels=labels,
        attachments=tuple(bodies.attachments),
        raw_size=len(raw),
        warnings=tuple(dict.fromkeys(clean_text(warning) for warning in warnings)),
    )


def parse_headers_only(headers: bytes, size: int, *, provider_message_id: str = "", why: str = "") -> ParsedMessage:
    """A message too big to parse whole (over ``MESSAGE_MAX_BYTES``), from its header block alone.

    Providers fetch or read only the headers of such a message (IMAP ``BODY.PEEK[HEADER]``,
    the first bytes of an mbox entry) and pass its full ``size``. The result carries the
    headers' fields, no body and no attachments, ``raw_size=size`` and a warning saying
    why, so the message is recorded (and findable) without its bulk ever being in memory.
    ``provider_message_id`` defaults as in ``parse_message``: the same headers always get
    the same id.
    """
    return _headers_only(headers, size, provider_message_id=provider_message_id, why=why)


def _headers_only(
    headers: bytes, size: int, *, provider_message_id: str, why: str, id_source: bytes | None = None
) -> ParsedMessage:
    headers = headers[_LEADING_JUNK.match(headers).end() :]  # type: ignore[union-attr]  # always matches
    ends = [found for found in (headers.find(b"\r\n\r\n"), headers.find(b"\n\n")) if found >= 0]
    block = headers[: min(ends)] if ends else headers
    parsed = _parse(
        block.rstrip(b"\r\n") + b"\r\n\r\n", provider_message_id, None, id_source=id_source, with_bodies=False
    )
    reason = why or f"message of {size:,} bytes is over the size limit"
    return dataclasses.replace(
        parsed,
        raw_size=size,
        warnings=(f"{reason}: stored headers only", *parsed.warnings),
    )
