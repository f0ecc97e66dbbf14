"""Twilio webhooks: ``POST /webhooks/twilio/sms`` (inbound messages) and ``POST
/webhooks/twilio/status`` (delivery status callbacks). Set them on the number (or its
Messaging Service) in the Twilio console, at settings.APP_PUBLIC_URL + the path.

Every request is checked in this order, and nothing is stored before the signature holds:

1. ``X-Twilio-Signature`` present, else 403.
2. ``AccountSid`` and ``To``/``From`` present, else 400: they name the accounts to verify with.
3. The signature, by twilio's RequestValidator, over the URL as Twilio saw it: APP_PUBLIC_URL
   + the path (+ the query), never the Host this server was reached by, so a proxy in front
   breaks nothing; and the form parameters. It is checked with the auth token of each
   connected account of that AccountSid owning the number; none matching: 403. An account
   connected with an API key alone has no auth token (Twilio signs with the auth token
   only): its webhooks are refused, with a log line saying to add the auth token.
4. The message parameters (MessageSid, From, To, NumMedia...), else 400.

An inbound message is not stored while Twilio waits: once its signature and parameters hold,
the payload is handed to the task queue (django-q2 ``async_task``; its database broker's
insert is committed, durably, before the answer) and the answer goes out at once, an empty
TwiML ``<Response/>``. Storing it inline cost some twenty queries and, for an MMS, the media
downloads, per request: the answer then waited on the database under load. The task
(STORE_TASK, ``store_inbound``) stores it through the ingest path (integrations.quarantine,
conversations.ingest.store_batch) in every account that verified it, committed durably, and
announces it with origin "webhook". Ingest is idempotent on the SID, so a retried webhook and
the poll that later lists the message keep one communication. Its ``sent_at`` is the time
the webhook arrived, not the time the task ran. Media are fetched by the task, with the
account's credentials, under settings.ATTACHMENT_MAX_BYTES. A task that fails (the database
down) is logged by django-q2 and kept, with its arguments, among its failed tasks; the poll
of the account stores the message in any case.

A status callback updates delivery_status of the stored message (never creates one: the
poll stores it), never moving a final status (delivered, undelivered, failed, read) back to an
earlier one, since callbacks may arrive out of order. Answer: 204.

Unexpected failures answer 503 (logged), never 500. No token or signature is ever logged.
"""
from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent
from django.db import connection, transaction
from django.http import HttpRequest, HttpResponse, QueryDict
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from django_q.tasks import async_task
from twilio.request_validator import RequestValidator

from conversations.messages import ParsedAttachment, ParsedMessage
from conversations.models import Communication
from integrations.models import ProviderAccount
from integrations.providers.base import ProviderError
from integrations.providers.twilio.client import TwilioApi
from integrations.providers.twilio.provider import map_message, media_filename, split_recipients, strip_channel
from integrations.quarantine import store_or_quarantine
from integrations.signals import announce_created

logger = logging.getLogger(__name__)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
MAX_MEDIA = 10  # Twilio delivers at most 10 media per message
STORE_TASK = "integrations.providers.twilio.webhooks.store_inbound"
_SID = re.compile(r"[A-Za-z]{2}[0-9a-fA-F]{32}")
# How far each status has come; a callback never moves a message back.
STATUS_RANK = {"accepted": 0, "scheduled": 0, "queued": 0, "sending": 1, "sent": 2, "receiving": 1,
               "received": 3, "delivered": 3, "undelivered": 3, "failed": 3, "canceled": 3,
               "partially_delivered": 3, "read": 4}


class Refused(Exception):
    """A request answered with ``status`` and a short plain-text reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def public_url(request: HttpRequest) -> str:
    """The URL Twilio posted to: APP_PUBLIC_URL + path (+ query), whatever Host reached us."""
    query = request.META.get("QUERY_STRING", "")
    return f"{settings.APP_PUBLIC_URL}{request.path_info}{'?' + query if query else ''}"


def _param(params: QueryDict, name: str, *, limit: int = 64) -> str:
    value = params.get(name, "")
    if len(value) > limit:
        raise Refused(400, f"{name} is too long.")
    return value


def verified_accounts(request: HttpRequest, numbers: list[str]) -> list[ProviderAccount]:
    """The connected accounts whose auth token signed this request and that own one of ``numbers``.

    Raises Refused (403 unsigned or signed by nobody we know, 400 without AccountSid).
    """
    signature = request.META.get("HTTP_X_TWILIO_SIGNATURE", "")
    if not signature:
        raise Refused(403, "Missing X-Twilio-Signature.")
    params = request.POST
    account_sid = _param(params, "AccountSid")
    if not _SID.fullmatch(account_sid) or not any(numbers):
        raise Refused(400, "AccountSid, To and From are required.")
    candidates = [
        account for account in ProviderAccount.objects.filter(provider="twilio", config__account_sid=account_sid)
        .exclude(status=ProviderAccount.Status.DISABLED).select_related("owner")
        if {strip_channel(n)[0] for n in account.config.get("numbers") or []} & {strip_channel(n)[0] for n in numbers}
    ]
    url = public_url(request)
    verified: list[ProviderAccount] = []
    tokens: dict[str, bool] = {}
    for account in candidates:
        token = str((account.credentials or {}).get("auth_token") or "")
        if not token:
            logger.error("Refused a Twilio webhook for account %s: it was connected with an API key only, and "
                         "Twilio signs webhooks with the auth token. Add the auth token to its credentials.",
                         account.pk)
            continue
        if token not in tokens:
            tokens[token] = RequestValidator(token).validate(url, params, signature)
        if tokens[token]:
            verified.append(account)
    if not verified:
        logger.warning("Refused a Twilio webhook to %s: no connected account of %s owning %s verifies its "
                       "signature (%s candidate(s))", url, account_sid, ", ".join(numbers), len(candidates))
        raise Refused(403, "Invalid X-Twilio-Signature.")
    return verified


def _guarded(handler: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Turns Refused into its status, a body too big into 400, anything unexpected into a logged 503."""

    def view(request: HttpRequest) -> HttpResponse:
        try:
            return handler(request)
        except Refused as refused:
            return HttpResponse(str(refused), status=refused.status, content_type="text/plain")
        except (RequestDataTooBig, TooManyFieldsSent):
            return HttpResponse("The request is too large.", status=400, content_type="text/plain")
        except Exception:
            logger.exception("The Twilio webhook %s failed", request.path_info)
            return HttpResponse(status=503)

    view.__name__ = view.__qualname__ = handler.__name__
    view.__doc__ = handler.__doc__
    return csrf_exempt(require_POST(view))  # server-to-server, authenticated by its signature


def _media(params: QueryDict, count: int, account: ProviderAccount) -> tuple[ParsedAttachment, ...]:
    """Attachments for MediaUrl0..N-1, fetched lazily (while storing) with the account's credentials."""
    attachments = []
    for index in range(count):
        url = _param(params, f"MediaUrl{index}", limit=2048)
        content_type = _param(params, f"MediaContentType{index}", limit=255) or "application/octet-stream"
        if not url.startswith(("https://", "http://")):
            raise Refused(400, f"MediaUrl{index} is missing or not a URL.")
        name = media_filename(url.rstrip("/").rsplit("/", 1)[-1], content_type)
        attachments.append(ParsedAttachment(filename=name, content_type=content_type, size=None,
                                            fetch=_fetcher(account, url)))
    return tuple(attachments)


def _fetcher(account: ProviderAccount, url: str) -> Callable[[], bytes]:
    def fetch() -> bytes:
        api = TwilioApi(str(account.config.get("account_sid") or ""), dict(account.credentials or {}))
        try:
            content, size = api.download(url, settings.ATTACHMENT_MAX_BYTES)
        finally:
            api.close()
        if content is None:
            # Ingest keeps the metadata of an attachment whose fetch fails.
            raise ProviderError(f"media over ATTACHMENT_MAX_BYTES ({size or 'unknown'} bytes): metadata only")
        return content
    return fetch


def parse_inbound(params: QueryDict, account: ProviderAccount, received: dt.datetime | None = None) -> ParsedMessage:
    """The ParsedMessage of an inbound-message webhook received at ``received`` (Refused 400 if malformed)."""
    sid = _param(params, "MessageSid") or _param(params, "SmsSid")
    sender, to = _param(params, "From"), _param(params, "To", limit=1024)
    if not _SID.fullmatch(sid) or not sender or not to:
        raise Refused(400, "MessageSid, From and To are required.")
    try:
        num_media = int(params.get("NumMedia") or 0)
    except ValueError:
        raise Refused(400, "NumMedia is not a number.") from None
    if not 0 <= num_media <= MAX_MEDIA:
        raise Refused(400, f"NumMedia must be 0 to {MAX_MEDIA}.")
    body = params.get("Body", "")
    if len(body) > 100_000:
        raise Refused(400, "Body is too long.")
    return map_message(sid=sid, sender=sender, recipients=split_recipients(to), body=body, num_media=num_media,
                       direction="inbound", status=_param(params, "SmsStatus") or "received",
                       sent_at=received or timezone.now(), attachments=_media(params, num_media, account))


@_guarded
def inbound(request: HttpRequest) -> HttpResponse:
    """An inbound SMS, MMS or WhatsApp message: verified, queued for storing, answered with empty TwiML."""
    params = request.POST
    accounts = verified_accounts(request, [_param(params, "To", limit=1024)])
    received = timezone.now()
    message = parse_inbound(params, accounts[0], received)  # malformed: 400 now, never a failed task later
    async_task(STORE_TASK, [account.pk for account in accounts], dict(params.lists()), received.isoformat(),
               task_name=f"twilio inbound {message.provider_message_id}", group="twilio-webhooks")
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


def store_inbound(account_ids: list[int], params: dict[str, list[str]], received: str) -> int:
    """STORE_TASK: stores a verified inbound message (the webhook's form parameters) in each of
    ``account_ids`` still connected, committed durably, announced with origin "webhook".
    Idempotent on the SID (a retried webhook, the poll). Returns the number of communications created."""
    query = QueryDict(mutable=True)
    for name, values in params.items():
        query.setlist(name, list(values))
    when = dt.datetime.fromisoformat(received)
    created = 0
    accounts = (ProviderAccount.objects.filter(pk__in=account_ids, provider="twilio")
                .exclude(status=ProviderAccount.Status.DISABLED).select_related("owner").order_by("pk"))
    for account in accounts:
        message = parse_inbound(query, account, when)
        with transaction.atomic():
            stored = store_or_quarantine(account, [message], merge_labels=False)
            announce_created(account, stored.result.created_ids, "webhook")
            if connection.vendor == "postgresql":
                # store_batch relaxed this transaction's durability (right for replayable sync
                # batches); the queued payload is acknowledged once this returns, so it is durable.
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL synchronous_commit = on")
        created += len(stored.result.created_ids)
        logger.info("Twilio webhook stored message %s for account %s (%s new)", message.provider_message_id,
                    account.pk, len(stored.result.created_ids))
    return created


@_guarded
def status(request: HttpRequest) -> HttpResponse:
    """A status callback: the stored message's delivery_status moves forward. Answers 204."""
    params = request.POST
    accounts = verified_accounts(request, [_param(params, "From"), _param(params, "To", limit=1024)])
    sid = _param(params, "MessageSid") or _param(params, "SmsSid")
    new_status = (_param(params, "MessageStatus") or _param(params, "SmsStatus")).lower()
    if not _SID.fullmatch(sid) or not re.fullmatch(r"[a-z_]{1,30}", new_status):
        raise Refused(400, "MessageSid and MessageStatus are required.")
    rank = STATUS_RANK.get(new_status, 0)
    further = [name for name, value in STATUS_RANK.items() if value > rank]
    updated = (Communication.objects.filter(account__in=accounts, provider_message_id=sid)
               .exclude(delivery_status__in=further).exclude(delivery_status=new_status)
               .update(delivery_status=new_status, updated_at=timezone.now()))
    logger.info("Twilio status callback: message %s is %s (%s row(s) updated)", sid, new_status, updated)
    return HttpResponse(status=204)
