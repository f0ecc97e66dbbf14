"""TwilioProvider: SMS, MMS and WhatsApp messages of the configured numbers, by polling the
Messages API (push arrives through integrations.providers.twilio.webhooks).

Listings: every configured number is listed twice, ``To=number`` then ``From=number`` (both
directions); a message between two configured numbers is kept from its To listing only. A
page token or pending delta says which listing is under way and Twilio's ``next_page_uri``
within it, so memory is one page and a crash resumes where it stopped.

- Initial: date_sent in the last settings.TWILIO_INITIAL_DAYS days (or SYNC_BACKFILL_DAYS if
  shorter). Its cursor is the time the backfill started.
- Delta: date_sent on or after the cursor minus settings.TWILIO_OVERLAP_MINUTES, which takes
  in messages that reach Twilio's listing late. The cursor remembers the SID and status of
  each message inside that window ("seen", bounded by MAX_SEEN): a re-read message whose
  status did not change is dropped before it is counted, so the overlap costs nothing; one
  whose status changed is passed on and ingest updates its delivery_status (never a
  duplicate: ingest is idempotent on the SID). Status changes after the window reach us by
  the status webhook, or by a full resync.
- Date range: DateSent>/DateSent< (inclusive, and Twilio documents them by day), narrowed
  here to [since, until) exactly.
- Expired cursor: a cursor made for other numbers than the configured ones (a number was
  added) or unreadable; the engine then runs one full resync, free of duplicates.

Mapping: channel whatsapp when an address carries "whatsapp:", else mms when num_media > 0,
else sms; subject empty; direction from ``direction`` (inbound, outbound-*); delivery_status
from ``status``; numbers in E.164 (settings.PHONE_DEFAULT_REGION for national forms; short
codes and alphanumeric sender ids are kept as they are and never become contacts). The
conversation is the participant set: SMS/MMS go through the threading's participant tier
(our number and theirs; every number when Twilio reports several recipients, as for a group
MMS); WhatsApp gets a per-account thread id made of its participant set, so it is a
conversation of its own next to SMS with the same person. Media become attachments,
downloaded with the account's credentials, the bytes only up to settings.ATTACHMENT_MAX_BYTES
(metadata beyond it).
"""
from __future__ import annotations

import datetime as dt
import email.utils
import mimetypes
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.utils import timezone

from contacts.normalize import normalize_phone
from conversations.messages import Address, AddressKind, Channel, Direction, ParsedAttachment, ParsedMessage
from integrations.providers.base import (
    AuthError,
    BackfillWindow,
    Batch,
    Capability,
    Cursor,
    CursorExpired,
    MessageProvider,
    PageToken,
    PermanentError,
    ProviderError,
    RateLimited,
)
from integrations.providers.twilio.client import TwilioApi
from integrations.providers.twilio.connect import TwilioConnect

WHATSAPP_PREFIX = "whatsapp:"
# SIDs the cursor remembers from the overlap window. Past it, re-read messages are simply
# skipped by ingest (counted as fetched): correct, only less tidy.
MAX_SEEN = 1000
# Listing pages one call may read while they hold nothing new (a day-precise server
# filter can return pages that the exact filter empties).
MAX_EMPTY_PAGES = 10


# --- mapping: pure functions, shared with the webhooks ------------------------------------------

def strip_channel(raw: str) -> tuple[str, bool]:
    """(the address without a "whatsapp:" prefix, whether it had one)."""
    value = (raw or "").strip()
    if value.lower().startswith(WHATSAPP_PREFIX):
        return value[len(WHATSAPP_PREFIX):].strip(), True
    return value, False


def phone_address(raw: str) -> Address | None:
    """The Address of a Twilio address: E.164 when it is a phone number (national forms read
    with settings.PHONE_DEFAULT_REGION), else the raw text (a short code, a sender id)."""
    value, _whatsapp = strip_channel(raw)
    if not value:
        return None
    normalized = normalize_phone(value, settings.PHONE_DEFAULT_REGION)
    return Address(AddressKind.PHONE, normalized or value[:64])


def parse_date(raw: Any) -> dt.datetime | None:
    """An aware UTC datetime from Twilio's RFC 2822 dates, or None."""
    if not raw or not isinstance(raw, str):
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def map_message(*, sid: str, sender: str, recipients: Iterable[str], body: str, num_media: int, direction: str,
                status: str, sent_at: dt.datetime | None, attachments: tuple[ParsedAttachment, ...] = (),
                warnings: tuple[str, ...] = ()) -> ParsedMessage:
    """The ParsedMessage of one Twilio message, from its fields (API record or webhook)."""
    whatsapp = strip_channel(sender)[1] or any(strip_channel(r)[1] for r in recipients)
    channel = Channel.WHATSAPP if whatsapp else Channel.MMS if num_media > 0 else Channel.SMS
    from_address = phone_address(sender)
    to_addresses = tuple(dict.fromkeys(a for a in (phone_address(r) for r in recipients) if a is not None))
    thread = ""
    if channel == Channel.WHATSAPP:
        values = sorted({a.value for a in (from_address, *to_addresses) if a is not None})
        thread = WHATSAPP_PREFIX + "|".join(values)
    return ParsedMessage(
        provider_message_id=sid,
        channel=channel,
        direction=Direction.INBOUND if direction == "inbound" else Direction.OUTBOUND,
        provider_thread_id=thread,
        sender=from_address,
        to=to_addresses,
        subject="",
        body_text=body,
        sent_at=sent_at,
        received_at=sent_at,
        attachments=attachments,
        delivery_status=status[:30],
        raw_size=len(body.encode("utf-8", "replace")),
        warnings=warnings,
    )


def split_recipients(raw: str) -> list[str]:
    """The ``to`` of a message: one number, or several (comma separated) for a group."""
    return [part.strip() for part in (raw or "").split(",") if part.strip()]


def media_filename(media_sid: str, content_type: str) -> str:
    extension = mimetypes.guess_extension(content_type.split(";")[0].strip()) or ""
    return f"{media_sid or 'media'}{extension}"


def _int(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def _from_iso(value: Any) -> dt.datetime:
    """A cursor's datetime; CursorExpired if it cannot be read."""
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        raise CursorExpired(f"unreadable Twilio cursor date {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


class TwilioProvider(MessageProvider):
    """config: account_sid, numbers (E.164, or "whatsapp:" + E.164). credentials: auth_token
    and/or api_key_sid + api_key_secret. See the package docstring for the storage contract."""

    key = "twilio"
    display_name = "Twilio (SMS, MMS, WhatsApp)"
    capabilities = frozenset({Capability.SMS, Capability.PUSH, Capability.DATE_RANGE})
    connect = TwilioConnect()
    page_size = 200

    def __init__(self, account: Any) -> None:
        super().__init__(account)
        self._api: TwilioApi | None = None

    # --- plumbing ----------------------------------------------------------------------

    @property
    def api(self) -> TwilioApi:
        if self._api is None:
            self._api = TwilioApi(str(self.account.config.get("account_sid") or ""),
                                  dict(self.account.credentials or {}), on_call=self._called)
        return self._api

    def _called(self) -> None:
        self.api_calls += 1

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    def numbers(self) -> list[str]:
        numbers = [str(n) for n in self.account.config.get("numbers") or [] if n]
        if not numbers:
            raise PermanentError("No phone numbers are configured for this Twilio account: reconnect it and "
                                 "choose the numbers to sync.")
        return numbers

    def _listings(self) -> list[tuple[str, str]]:
        return [(field, number) for number in self.numbers() for field in ("to", "from")]

    def authenticate(self) -> None:
        """One cheap call, the account's IncomingPhoneNumbers: it proves the credentials and that
        every configured number (without its whatsapp: prefix) belongs to the account."""
        available = self.api.incoming_numbers()
        missing = [n for n in self.numbers() if strip_channel(n)[0] not in available]
        if missing:
            raise PermanentError(
                f"{', '.join(missing)} {'is not an incoming number' if len(missing) == 1 else 'are not incoming numbers'}"
                f" of this Twilio account. Its numbers: {', '.join(available) or 'none'}."
            )

    # --- the three fetches -------------------------------------------------------------

    def fetch_initial(self, window: BackfillWindow, page_token: PageToken | None) -> Batch:
        if page_token is None:
            now = timezone.now()
            since = now - dt.timedelta(days=settings.TWILIO_INITIAL_DAYS)
            if window.since is not None and window.since > since:
                since = window.since
            page_token = {"listing": 0, "page_uri": None, "since": _iso(since), "until": None,
                          "started": _iso(now), "done": 0, "seen": {}}
        state = dict(page_token)
        started = _from_iso(state["started"])
        overlap_from = started - self._overlap()
        messages, state = self._collect(state, _from_iso(state["since"]), None, seen={},
                                        remember_from=overlap_from)
        cursor = {"date_sent": _iso(started), "numbers": self.numbers(), "seen": state["seen"]}
        done = state["done"]
        more = state["listing"] < len(self._listings())
        return Batch(messages=messages, next_page_token=state if more else None, new_cursor=cursor,
                     progress=(done, None if more else done))

    def fetch_range(self, since: dt.datetime, until: dt.datetime, page_token: PageToken | None) -> Batch:
        state = dict(page_token or {"listing": 0, "page_uri": None, "since": _iso(since), "until": _iso(until),
                                    "done": 0, "seen": {}})
        messages, state = self._collect(state, since, until, seen={}, remember_from=None)
        more = state["listing"] < len(self._listings())
        return Batch(messages=messages, next_page_token=state if more else None)

    def fetch_since(self, cursor: Cursor) -> Batch:
        if sorted(cursor.get("numbers") or []) != sorted(self.numbers()):
            raise CursorExpired("the configured numbers changed: their history is fetched again")
        date_sent = _from_iso(cursor.get("date_sent"))
        seen = cursor.get("seen") if isinstance(cursor.get("seen"), dict) else {}
        pending = cursor.get("pending")
        if not isinstance(pending, dict):
            since = date_sent - self._overlap()
            pending = {"listing": 0, "page_uri": None, "since": _iso(since), "until": None, "done": 0,
                       "seen": {}, "newest": _iso(date_sent), "started": _iso(timezone.now())}
        state = dict(pending)
        messages, state = self._collect(state, _from_iso(state["since"]), None, seen=seen,
                                        remember_from=_from_iso(state["since"]))
        more = state["listing"] < len(self._listings())
        if more:
            return Batch(messages=messages, next_page_token=state, new_cursor={**cursor, "pending": state},
                         progress=(state["done"], None))
        newest = min(_from_iso(state["newest"]), _from_iso(state["started"]))
        newest = max(newest, date_sent)
        window_start = newest - self._overlap()
        kept = {sid: entry for sid, entry in state["seen"].items() if _from_iso(entry[1]) >= window_start}
        new_cursor = {"date_sent": _iso(newest), "numbers": self.numbers(), "seen": kept}
        return Batch(messages=messages, new_cursor=new_cursor, progress=(state["done"], state["done"]))

    @staticmethod
    def _overlap() -> dt.timedelta:
        return dt.timedelta(minutes=settings.TWILIO_OVERLAP_MINUTES)

    # --- listing -----------------------------------------------------------------------

    def _collect(self, state: dict[str, Any], since: dt.datetime, until: dt.datetime | None, *,
                 seen: dict[str, Any], remember_from: dt.datetime | None) -> tuple[list[ParsedMessage], dict]:
        """Reads listing pages from ``state`` until one holds messages to keep (or all are read).

        Keeps the messages with date_sent in [since, until) (or none: a queued message), not
        already listed by another listing, and not in ``seen`` with the same status. Those
        with date_sent at or after ``remember_from`` are remembered in state["seen"] as
        {sid: [status, date_sent]}, up to MAX_SEEN. Returns (messages, the advanced state).
        """
        listings = self._listings()
        configured = set(self.numbers())
        kept: list[dict[str, Any]] = []
        state = {**state, "seen": dict(state.get("seen") or {})}
        pages = 0
        while state["listing"] < len(listings) and not kept and pages < MAX_EMPTY_PAGES:
            field, number = listings[state["listing"]]
            filters: dict[str, Any] = {field if field == "to" else "from_": number}
            if not state.get("page_uri"):
                filters["sent_after"] = since
                if until is not None:
                    filters["sent_before"] = until
            records, next_uri = self.api.messages_page(page_uri=state.get("page_uri"), page_size=self.page_size,
                                                       **({} if state.get("page_uri") else filters))
            pages += 1
            for record in records:
                sid = str(record.get("sid") or "")
                if not sid:
                    continue
                if field == "from" and any(r in configured for r in split_recipients(str(record.get("to") or ""))):
                    continue  # a message between two of our numbers: its To listing has it
                sent = parse_date(record.get("date_sent"))
                if sent is not None and (sent < since or (until is not None and sent >= until)):
                    continue
                status = str(record.get("status") or "")
                if sent is not None and "newest" in state and sent > _from_iso(state["newest"]):
                    state["newest"] = _iso(sent)
                if (sent is not None and remember_from is not None and sent >= remember_from
                        and len(state["seen"]) < MAX_SEEN):
                    state["seen"][sid] = [status, _iso(sent)]
                known = seen.get(sid)
                if known is not None and known[0] == status:
                    continue  # re-read within the overlap, unchanged
                kept.append(record)
            if next_uri:
                state["page_uri"] = next_uri
            else:
                state["listing"], state["page_uri"] = state["listing"] + 1, None
        messages = [self.parse(record) for record in kept]
        state["done"] = int(state.get("done") or 0) + len(messages)
        return messages, state

    # --- one message ---------------------------------------------------------------------

    def parse(self, record: dict[str, Any]) -> ParsedMessage:
        """The ParsedMessage of one Messages API record; its media are downloaded here."""
        warnings: list[str] = []
        raw_date = record.get("date_sent")
        sent = parse_date(raw_date)
        if sent is None and raw_date:
            warnings.append(f"unreadable Date {str(raw_date)[:80]!r}: the creation date is used")
        if sent is None:
            sent = parse_date(record.get("date_created"))
        num_media = _int(record.get("num_media"))
        attachments = self._attachments(str(record["sid"]), warnings) if num_media else ()
        return map_message(
            sid=str(record["sid"]), sender=str(record.get("from") or ""),
            recipients=split_recipients(str(record.get("to") or "")), body=str(record.get("body") or ""),
            num_media=num_media, direction=str(record.get("direction") or ""), status=str(record.get("status") or ""),
            sent_at=sent, attachments=attachments, warnings=tuple(warnings),
        )

    def _attachments(self, message_sid: str, warnings: list[str]) -> tuple[ParsedAttachment, ...]:
        """The message's media, each with its bytes when under ATTACHMENT_MAX_BYTES, else metadata only.

        A medium that cannot be fetched (deleted at Twilio, a server error) leaves its metadata
        and a warning: the message itself is never lost for it. Rate limits and refused
        credentials still stop the sync.
        """
        try:
            records = self.api.media(message_sid)
        except (RateLimited, AuthError):
            raise
        except ProviderError as error:
            warnings.append(f"media list unavailable: {error}")
            return ()
        limit = settings.ATTACHMENT_MAX_BYTES
        attachments = []
        for record in records:
            content_type = str(record.get("content_type") or "application/octet-stream")
            name = media_filename(str(record.get("sid") or ""), content_type)
            try:
                content, size = self.api.download(self.api.media_url(record), limit)
            except (RateLimited, AuthError):
                raise
            except ProviderError as error:
                warnings.append(f"media {name} unavailable: {error}")
                content, size = None, None
            if content is None:
                attachments.append(ParsedAttachment(filename=name, content_type=content_type, size=size))
            else:
                attachments.append(ParsedAttachment.from_bytes(name, content_type, content))
        return tuple(attachments)
