"""OutlookProvider: Graph delta per folder (backfill and delta alike), historical date range.

Ids: Graph ids are requested immutable (``Prefer: IdType="ImmutableId"``), so a message moved
between folders keeps its id: the id is the ``provider_message_id``, ``conversationId`` the thread
id, ``internetMessageId`` the RFC id. The ``ref`` of a copy is ``"{folder}:{id}"``: an ``@removed``
entry of a folder forgets that folder's copy, and the communication is soft-deleted once no
synced folder holds it (a move between synced folders, reported in either order, keeps it).
The label is the folder's name. Read state comes from ``isRead``, the star from ``flag``.

Threading across accounts needs In-Reply-To and References, which the delta does not carry. A
message whose ``conversationIndex`` is longer than a thread's first (22 bytes: Outlook adds 5
per reply) is a reply: its ``internetMessageHeaders`` are read through ``$batch`` (20 per
call), and where those lack both headers (items in Sent Items have none) the header block of
its MIME (``$value``, streamed and cut at the blank line). Attachment metadata of messages with
``hasAttachments`` comes through ``$batch`` too; content is fetched lazily, when stored, up to
ATTACHMENT_MAX_BYTES.

Backfill = the first delta round of every folder, one after the other; its page token holds the
folder being read, its nextLink and the deltaLinks of the folders done, and the last page's
cursor is those deltaLinks. Delta: each call reads one page of one folder and returns the cursor
with that folder's nextLink (or, at the end of its round, its deltaLink), stored with the page:
a page that fails halfway is read again from the same saved link. 410 Gone and the sync-state
error codes raise CursorExpired (client), and the engine runs one full resync.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import email.parser
import email.policy
import logging
import re
import urllib.parse
from typing import Any

from django.conf import settings

from contacts.normalize import normalize_email
from conversations.messages import Address, AddressKind, ParsedAttachment, ParsedMessage
from conversations.parsing import html_to_text
from integrations.providers.base import (
    BackfillWindow,
    Batch,
    Capability,
    Cursor,
    CursorExpired,
    MessageProvider,
    MessageUpdate,
    PageToken,
    PermanentError,
    ProviderError,
    TransientError,
)
from integrations.providers.outlook import auth
from integrations.providers.outlook.client import IMMUTABLE_IDS, Forbidden, GraphClient, NotFound
from integrations.providers.outlook.connect import OutlookConnect

logger = logging.getLogger(__name__)

SELECT = ",".join((
    "id", "conversationId", "conversationIndex", "internetMessageId", "subject", "from", "toRecipients",
    "ccRecipients", "bccRecipients", "body", "receivedDateTime", "sentDateTime", "hasAttachments", "isRead",
    "flag", "isDraft",
))
ATTACHMENT_SELECT = "id,name,contentType,size,isInline"
FIRST_INDEX_BYTES = 22  # a conversationIndex of a thread's first message; each reply adds 5
_MESSAGE_ID = re.compile(r"<([^<>\s]+)>")


def quoted(value: str) -> str:
    return urllib.parse.quote(value, safe="")


class OutlookProvider(MessageProvider):
    """config ``{"email", "folders"}``, credentials and cursor: see the package docstring."""

    key = "outlook"
    display_name = "Outlook / Microsoft 365"
    capabilities = frozenset({Capability.EMAIL, Capability.OAUTH, Capability.PUSH, Capability.FLAGS,
                              Capability.DELETIONS, Capability.DATE_RANGE, Capability.MARK_READ})
    connect = OutlookConnect()
    page_size = 100  # Prefer: odata.maxpagesize; Graph pages are bounded by count, not bytes

    def __init__(self, account: Any) -> None:
        super().__init__(account)
        self.client = GraphClient(account, on_call=self._count_call)
        # Attachment content is fetched when stored, possibly from the storing thread: its own session.
        self.attachment_client = GraphClient(account, on_call=self._count_attachment_call)
        self.attachment_calls = 0
        self._done: set[str] = set()  # folders whose delta round this run has finished
        self._total_count: int | None = None  # read by authenticate() for the backfill to come

    def _count_call(self) -> None:
        self.api_calls += 1

    def _count_attachment_call(self) -> None:
        self.api_calls += 1
        self.attachment_calls += 1

    @classmethod
    def renew_push(cls) -> int:
        from integrations.providers.outlook.push import renew_subscriptions

        return renew_subscriptions()

    @classmethod
    def missing_grant(cls, account: Any, capability: Capability) -> str | None:
        """MARK_READ needs Mail.ReadWrite among the scopes the account was granted (credentials
        ``scopes``; an account without them was connected read-only)."""
        refused = super().missing_grant(account, capability)
        if refused or capability != Capability.MARK_READ:
            return refused
        granted = {scope.lower() for scope in auth.stored_scopes(account.credentials or {})}
        if auth.MAIL_READ_WRITE.lower() in granted:
            return None
        return (f"{account.external_address or 'This Outlook account'} was connected with read-only access. To let "
                "finished tasks mark their messages read, reconnect it and allow Outlook to read and write your "
                "mail on Microsoft's page (Connections, Reconnect).")

    def mark_read(self, refs: list[str]) -> None:
        """Sets ``isRead`` on each ref's message (``"{folder}:{id}"``, the id immutable, so a
        message moved since keeps it) with ``PATCH /me/messages/{id}``: the only property this
        provider ever changes, and only for write-back. The change shows in the next delta.

        Raises PermanentError when Mail.ReadWrite was not granted (before any request), when the
        message is gone (404), or when Graph refuses the change (403: the permission was
        withdrawn); throttling and outages raise as every Graph call does (client).
        """
        missing = self.missing_grant(self.account, Capability.MARK_READ)
        if missing:
            raise PermanentError(missing)
        for ref in refs:
            message_id = ref.rpartition(":")[2]  # Graph ids hold no ":"; a folder id neither
            try:
                self.client.request("PATCH", f"me/messages/{quoted(message_id)}", json_body={"isRead": True},
                                    prefer=[IMMUTABLE_IDS], what="marking a message read")
            except NotFound:
                raise PermanentError("The message is no longer in the Outlook mailbox (deleted since it was "
                                     "synced), so it could not be marked read.") from None
            except Forbidden:
                raise PermanentError("Microsoft refused to let this site change the message: the permission to "
                                     "read and write Outlook mail was withdrawn. Reconnect the account and allow "
                                     "it (Connections, Reconnect).") from None

    def authenticate(self) -> None:
        """Makes sure a valid access token is at hand (refreshing it through msal if needed).
        Before a backfill it also reads the folders' sizes, which the backfill needs first anyway:
        a token Graph refuses is refreshed here, in the engine's thread, and a folder that does
        not exist is reported before anything is fetched."""
        self.client.authenticate()
        if not self.account.sync_cursor and not self.account.backfill_state:
            self._total_count = self._total(self.folders())

    def close(self) -> None:
        self.client.close()
        self.attachment_client.close()

    def folders(self) -> list[str]:
        folders = (self.account.config or {}).get("folders") or settings.OUTLOOK_FOLDERS
        return [str(folder) for folder in folders if str(folder).strip()]

    @property
    def prefer(self) -> list[str]:
        return [f"odata.maxpagesize={self.page_size}", IMMUTABLE_IDS]

    # --- backfill ------------------------------------------------------------------------------

    def fetch_initial(self, window: BackfillWindow, page_token: PageToken | None) -> Batch:
        """One delta page of the folder being read. Token: ``folders`` (the list, fixed at the
        start), ``index``, ``link`` (its nextLink; None: its first request), ``delta_links``,
        ``done``/``total`` (for progress), ``since`` (the window, ISO)."""
        if page_token is None:
            folders = self.folders()
            total, self._total_count = self._total_count, None
            page_token = {"folders": folders, "index": 0, "link": None, "delta_links": {}, "done": 0,
                          "total": self._total(folders) if total is None else total, "since": _iso(window.since) if window.since else None}
        token = dict(page_token)
        token["delta_links"] = dict(token["delta_links"])
        folder = token["folders"][token["index"]]
        url = token["link"] or self._first_delta_url(folder, token.get("since"))
        answer = self._delta_page(folder, url)
        messages = self._messages(folder, answer.get("value", ()))
        token["done"] += len(messages)
        next_link, delta_link = answer.get("@odata.nextLink"), answer.get("@odata.deltaLink")
        if next_link:
            token["link"] = next_link
        else:
            token["delta_links"][folder] = self._require(delta_link, folder)
            token["index"], token["link"] = token["index"] + 1, None
        if token["index"] >= len(token["folders"]):
            cursor = {"folders": {name: {"delta_link": link} for name, link in token["delta_links"].items()}}
            return Batch(messages=messages, new_cursor=cursor, progress=(token["done"], token["done"]))
        return Batch(messages=messages, next_page_token=token,
                     progress=(token["done"], max(token["total"], token["done"])))

    def _total(self, folders: list[str]) -> int:
        """Messages in ``folders`` (totalItemCount), for progress; one $batch."""
        paths = {folder: f"me/mailFolders/{quoted(folder)}?$select=totalItemCount" for folder in folders}
        found = self.client.batch(list(paths.values()), what="the folders' sizes")
        total = 0
        for folder, path in paths.items():
            answer = found[path]
            if isinstance(answer, NotFound):
                raise PermanentError(f"The Outlook folder {folder!r} does not exist: fix the account's folders.")
            if isinstance(answer, ProviderError):
                raise answer
            total += int(answer.get("totalItemCount") or 0)
        return total

    def _first_delta_url(self, folder: str, since: str | None) -> str:
        params = {"$select": SELECT}
        if since:
            # Graph's only delta filter; it caps the round at 5,000 messages (documented).
            params["$filter"] = f"receivedDateTime ge {since}"
        return self.client.url(f"me/mailFolders/{quoted(folder)}/messages/delta?"
                               + urllib.parse.urlencode(params, safe="$,:", quote_via=urllib.parse.quote))

    def _delta_page(self, folder: str, url: str) -> dict[str, Any]:
        try:
            return self.client.get(url, prefer=self.prefer, what=f"the delta of {folder}")
        except NotFound:
            raise PermanentError(f"The Outlook folder {folder!r} does not exist: fix the account's folders.") from None

    @staticmethod
    def _require(link: Any, folder: str) -> str:
        if not isinstance(link, str) or not link:
            raise TransientError(f"Graph ended a delta page of {folder} with neither a nextLink nor a deltaLink; "
                                 "it will be read again.")
        return link

    # --- delta ---------------------------------------------------------------------------------

    def fetch_since(self, cursor: Cursor) -> Batch:
        """One page of the first folder whose round this run has not finished (a folder newly
        configured starts from its first delta request). ``new_cursor`` is ``cursor`` with that
        folder's link moved on; ``next_page_token`` is None once every folder's round is done."""
        stored = cursor.get("folders")
        if not isinstance(stored, dict):
            raise CursorExpired("The Outlook cursor has no folders")
        folders = self.folders()
        links = {name: stored[name] for name in folders if isinstance(stored.get(name), dict)}
        remaining = [name for name in folders if name not in self._done]
        if not remaining:
            return Batch(new_cursor={"folders": links})
        folder = remaining[0]
        link = links.get(folder, {})
        url = link.get("next_link") or link.get("delta_link") or self._first_delta_url(folder, None)
        answer = self._delta_page(folder, url)
        batch = self._changes(folder, answer.get("value", ()))
        next_link, delta_link = answer.get("@odata.nextLink"), answer.get("@odata.deltaLink")
        if next_link:
            links[folder] = {"next_link": next_link}
        else:
            links[folder] = {"delta_link": self._require(delta_link, folder)}
            self._done.add(folder)
        batch.new_cursor = {"folders": links}
        if len(self._done) < len(folders):
            batch.next_page_token = {"more": True}
        return batch

    def _changes(self, folder: str, entries: Any) -> Batch:
        """A delta page: whole messages (new, or moved here), state changes, removals."""
        whole, updates, removed = [], [], []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), str):
                continue
            ref = f"{folder}:{entry['id']}"
            if "@removed" in entry:
                removed.append(ref)
            elif "receivedDateTime" in entry:
                whole.append(entry)
            elif "isRead" in entry or "flag" in entry:
                # Graph sends at least the changed properties of an updated message.
                updates.append(MessageUpdate(ref=ref, is_read=_bool(entry.get("isRead")), is_starred=_flagged(entry)))
        return Batch(messages=self._messages(folder, whole), updates=updates, deleted_refs=removed)

    # --- historical range ----------------------------------------------------------------------

    def fetch_range(self, since: dt.datetime, until: dt.datetime, page_token: PageToken | None) -> Batch:
        """One page of the messages received in [since, until), newest first, folder by folder:
        a plain listing filtered on receivedDateTime (never the delta, whose cursor is untouched).
        Token: ``index`` (folder) and ``link`` (its nextLink)."""
        folders = self.folders()
        token = dict(page_token or {"index": 0, "link": None})
        if token["index"] >= len(folders):
            return Batch()
        folder = folders[token["index"]]
        url = token["link"] or self.client.url(f"me/mailFolders/{quoted(folder)}/messages?" + urllib.parse.urlencode({
            "$filter": f"receivedDateTime ge {_iso(since)} and receivedDateTime lt {_iso(until)}",
            "$orderby": "receivedDateTime desc", "$select": SELECT, "$top": str(self.page_size),
        }, safe="$,:", quote_via=urllib.parse.quote))
        try:
            answer = self.client.get(url, prefer=[IMMUTABLE_IDS], what=f"the messages of {folder}")
        except NotFound:
            raise PermanentError(f"The Outlook folder {folder!r} does not exist: fix the account's folders.") from None
        entries = [entry for entry in answer.get("value", ()) if isinstance(entry, dict) and entry.get("id")]
        messages = self._messages(folder, entries)
        next_link = answer.get("@odata.nextLink")
        token = {"index": token["index"], "link": next_link} if next_link else {"index": token["index"] + 1,
                                                                                 "link": None}
        return Batch(messages=messages, next_page_token=None if token["index"] >= len(folders) else token)

    # --- mapping -------------------------------------------------------------------------------

    def _messages(self, folder: str, entries: Any) -> list[ParsedMessage]:
        """Whole message entries -> ParsedMessages, with reply headers and attachments added."""
        entries = [entry for entry in entries if isinstance(entry, dict) and isinstance(entry.get("id"), str)
                   and "@removed" not in entry and "receivedDateTime" in entry and not entry.get("isDraft")]
        if not entries:
            return []
        headers = self._reply_headers([entry["id"] for entry in entries if _is_reply(entry)])
        attachments = self._attachments([entry["id"] for entry in entries if entry.get("hasAttachments")])
        return [to_parsed(entry, folder, headers.get(entry["id"]), attachments.get(entry["id"], ()))
                for entry in entries]

    def _reply_headers(self, ids: list[str]) -> dict[str, tuple[str, tuple[str, ...]]]:
        """id -> (In-Reply-To, References) of replies: internetMessageHeaders, else the MIME's."""
        if not ids:
            return {}
        paths = {message_id: f"me/messages/{quoted(message_id)}?$select=internetMessageHeaders" for message_id in ids}
        found = self.client.batch(list(paths.values()), prefer=[IMMUTABLE_IDS], what="replies' headers")
        result: dict[str, tuple[str, tuple[str, ...]]] = {}
        for message_id, path in paths.items():
            answer = found.get(path)
            if isinstance(answer, NotFound):
                continue  # deleted since: its @removed follows
            if isinstance(answer, ProviderError):
                raise answer
            pairs = [(str(h.get("name") or ""), str(h.get("value") or ""))
                     for h in (answer or {}).get("internetMessageHeaders") or () if isinstance(h, dict)]
            reply = _thread_headers(pairs)
            if not reply[0] and not reply[1]:
                try:
                    block = self.client.mime_headers(message_id)
                except NotFound:
                    continue
                parsed = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(block)
                reply = _thread_headers([(name, str(value)) for name, value in parsed.items()])
            result[message_id] = reply
        return result

    def _attachments(self, ids: list[str]) -> dict[str, tuple[ParsedAttachment, ...]]:
        """id -> attachment metadata (one $batch per 20 messages), content fetched when stored."""
        if not ids:
            return {}
        paths = {message_id: f"me/messages/{quoted(message_id)}/attachments?$select={ATTACHMENT_SELECT}"
                 for message_id in ids}
        found = self.client.batch(list(paths.values()), prefer=[IMMUTABLE_IDS], what="attachments")
        result: dict[str, tuple[ParsedAttachment, ...]] = {}
        limit = settings.ATTACHMENT_MAX_BYTES
        for message_id, path in paths.items():
            answer = found.get(path)
            if isinstance(answer, NotFound):
                continue
            if isinstance(answer, ProviderError):
                raise answer
            kept = []
            for item in (answer or {}).get("value") or ():
                if not isinstance(item, dict) or not item.get("id"):
                    continue
                size = item.get("size") if isinstance(item.get("size"), int) else None
                # Item and reference attachments (an attached e-mail, a OneDrive link) have no $value bytes.
                is_file = str(item.get("@odata.type") or "#microsoft.graph.fileAttachment").endswith("fileAttachment")
                fetch = None
                if is_file and (size is None or size <= limit):
                    fetch = self._content_fetcher(message_id, str(item["id"]), limit)
                kept.append(ParsedAttachment(
                    filename=str(item.get("name") or "attachment")[:255],
                    content_type=str(item.get("contentType") or "application/octet-stream")[:255],
                    size=size, fetch=fetch, inline=bool(item.get("isInline")),
                ))
            result[message_id] = tuple(kept)
        return result

    def _content_fetcher(self, message_id: str, attachment_id: str, limit: int) -> Any:
        path = f"me/messages/{quoted(message_id)}/attachments/{quoted(attachment_id)}/$value"

        def fetch() -> bytes:
            content = self.attachment_client.content(path, max_bytes=limit)
            if content is None:
                raise ValueError("the attachment is over ATTACHMENT_MAX_BYTES")
            return content

        return fetch


def to_parsed(entry: dict[str, Any], folder: str, reply: tuple[str, tuple[str, ...]] | None = None,
              attachments: tuple[ParsedAttachment, ...] = ()) -> ParsedMessage:
    """One Graph message entry as a ParsedMessage (pure). What cannot be read is a warning."""
    warnings: list[str] = []
    body = entry.get("body") if isinstance(entry.get("body"), dict) else {}
    content = str(body.get("content") or "")
    is_html = str(body.get("contentType") or "").lower() == "html"
    sent_at = _date(entry.get("sentDateTime"), warnings)
    received_at = _date(entry.get("receivedDateTime"), warnings) or sent_at
    sender = _addresses([entry.get("from")], warnings)
    in_reply_to, references = reply or ("", ())
    return ParsedMessage(
        provider_message_id=entry["id"],
        rfc_message_id=_message_id(str(entry.get("internetMessageId") or "")),
        provider_thread_id=str(entry.get("conversationId") or ""),
        sender=sender[0] if sender else None,
        to=_addresses(entry.get("toRecipients"), warnings),
        cc=_addresses(entry.get("ccRecipients"), warnings),
        bcc=_addresses(entry.get("bccRecipients"), warnings),
        subject=entry.get("subject") if isinstance(entry.get("subject"), str) else None,
        body_text=html_to_text(content) if is_html else content,
        body_html=content if is_html else "",
        sent_at=sent_at or received_at,
        received_at=received_at,
        in_reply_to=in_reply_to,
        references=references,
        labels=(folder,),
        attachments=attachments,
        is_read=_bool(entry.get("isRead")),
        is_starred=_flagged(entry),
        ref=f"{folder}:{entry['id']}",
        warnings=tuple(warnings),
    )


def _is_reply(entry: dict[str, Any]) -> bool:
    """Whether the conversationIndex says the message answers another (unknown: assume it does)."""
    index = entry.get("conversationIndex")
    if not isinstance(index, str) or not index:
        return True
    try:
        return len(base64.b64decode(index + "=" * (-len(index) % 4))) > FIRST_INDEX_BYTES
    except (binascii.Error, ValueError):
        return True


def _thread_headers(pairs: list[tuple[str, str]]) -> tuple[str, tuple[str, ...]]:
    in_reply_to, references = "", ""
    for name, value in pairs:
        if name.lower() == "in-reply-to" and not in_reply_to:
            in_reply_to = value
        elif name.lower() == "references" and not references:
            references = value
    found = _MESSAGE_ID.findall(references)
    return _message_id(in_reply_to), tuple(dict.fromkeys(item[:998] for item in found))


def _message_id(value: str) -> str:
    match = _MESSAGE_ID.search(value)
    found = match.group(1) if match else value.strip().strip("<>").strip()
    return "" if " " in found else found[:998]


def _addresses(values: Any, warnings: list[str]) -> tuple[Address, ...]:
    found = []
    for value in values or ():
        if not isinstance(value, dict):
            continue
        mailbox = value.get("emailAddress") if isinstance(value.get("emailAddress"), dict) else {}
        raw, name = str(mailbox.get("address") or ""), str(mailbox.get("name") or "")
        address = normalize_email(raw)
        if not address:
            warnings.append(f"unreadable address {(raw or name)[:80]!r}")
            continue
        found.append(Address(kind=AddressKind.EMAIL, value=address, display_name=name[:200]))
    return tuple(found)


def _date(value: Any, warnings: list[str]) -> dt.datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        warnings.append(f"unreadable Date {str(value)[:60]!r}")
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _bool(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _flagged(entry: dict[str, Any]) -> bool | None:
    flag = entry.get("flag")
    if not isinstance(flag, dict) or "flagStatus" not in flag:
        return None
    return flag.get("flagStatus") == "flagged"
