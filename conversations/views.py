"""Communications pages: the list and the message view, for the user's own messages and what
teammates share with them.

Every lookup goes through conversations.visibility: a communication the user may not see is
a 404, and one they see at a lower level shows only that level's fields. Message HTML is
served by ``body`` alone, sanitised by nh3, into a sandboxed iframe under a CSP that lets
nothing run and nothing load (remote images only when asked for).
"""
from __future__ import annotations

import re

from django.contrib.auth.decorators import login_required
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.html import format_html

from conversations.attachments import download
from conversations.models import Attachment, Communication, Participant
from conversations.rendering import sanitize_html
from conversations.visibility import Level, search, shows, visible_communications

PAGE_SIZE = 50
# An <img> whose source is on the web: what "Load remote images" would load.
_REMOTE_IMAGE = re.compile(r"""<img\b[^>]*?\bsrc\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def _visible(request: HttpRequest) -> QuerySet[Communication]:
    return visible_communications(request.user).select_related("account", "account__owner")


def _page_number(request: HttpRequest) -> int:
    try:
        return max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1


@login_required
def communications(request: HttpRequest) -> HttpResponse:
    senders = Participant.objects.filter(communication=OuterRef("pk"), role=Participant.Role.FROM)
    rows = _visible(request).annotate(
        sender_address=Subquery(senders.values("address")[:1]),
        sender_name=Subquery(senders.values("display_name")[:1]),
    ).order_by("-sent_at", "-id")
    own_accounts = list(request.user.provider_accounts.order_by("display_name", "pk"))
    account = request.GET.get("account", "")
    if account.isdigit():
        rows = rows.filter(account_id=int(account))
    query = request.GET.get("q", "").strip()
    if query:
        rows = search(rows, query)
    page = _page_number(request)
    shown = list(rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE + 1])  # one more: is there a next page?
    for row in shown:
        row.shows_subject = shows(row.visible_level, "subject")
        row.shows_snippet = shows(row.visible_level, "snippet")
        row.is_own = row.account.owner_id == request.user.pk
    return render(request, "conversations/communications.html", {
        "rows": shown[:PAGE_SIZE], "page": page, "has_next": len(shown) > PAGE_SIZE,
        "accounts": own_accounts, "account": account, "query": query,
        "filtered": bool(query or account),
    })


@login_required
def communication(request: HttpRequest, pk: int) -> HttpResponse:
    message = get_object_or_404(_visible(request), pk=pk)
    level = message.visible_level
    participants = {role: [] for role in Participant.Role.values}
    for participant in message.participants.order_by("pk"):
        participants[participant.role].append(participant)
    if level < Level.EVERYTHING:
        participants[Participant.Role.BCC] = []  # whom the owner blind-copied is theirs to know
    shows_body = shows(level, "body_html")
    remote_images = request.GET.get("remote_images") == "1"
    return render(request, "conversations/communication.html", {
        "message": message, "level": Level(level), "participants": participants,
        "is_own": message.account.owner_id == request.user.pk,
        "shows_subject": shows(level, "subject"), "shows_body": shows_body,
        "attachments": list(message.attachments.order_by("pk")) if shows(level, "attachments") else [],
        "labels": message.labels if shows(level, "labels") else [],
        "has_body": bool(message.body_html or message.body_text),
        "has_remote_images": shows_body and bool(_REMOTE_IMAGE.search(message.body_html)),
        "remote_images": remote_images,
    })


@login_required
def attachment(request: HttpRequest, pk: int, attachment_id: int) -> HttpResponse:
    """An attachment's content, as a download, to whoever sees its message's attachments."""
    message = get_object_or_404(_visible(request), pk=pk)
    if not shows(message.visible_level, "attachments"):
        raise Http404("No such attachment")
    try:
        return download(get_object_or_404(Attachment, communication=message, pk=attachment_id))
    except FileNotFoundError:
        raise Http404("This attachment's content was not stored (larger than the size limit).") from None


@login_required
def body(request: HttpRequest, pk: int) -> HttpResponse:
    """The sanitised message HTML (or its text), for the sandboxed iframe of the message view."""
    message = get_object_or_404(_visible(request), pk=pk)
    if not shows(message.visible_level, "body_html"):
        raise Http404("No message body to show")
    allow_remote = request.GET.get("remote_images") == "1"
    if message.body_html:
        content = sanitize_html(message.body_html, allow_remote_images=allow_remote)
    else:
        content = format_html("<pre style='white-space:pre-wrap;font:14px/1.5 ui-monospace,monospace'>{}</pre>",
                              message.body_text)
    # Links open in a new tab (the sandbox lets them leave it); nothing else may.
    response = HttpResponse(
        "<!doctype html><meta charset='utf-8'><base target='_blank'>"
        "<body style='margin:12px;font:15px/1.5 system-ui,sans-serif;color:#1f2933;overflow-wrap:anywhere'>"
        f"{content}</body>"
    )
    # Belt and braces behind nh3: nothing in the message may run or phone home.
    img_src = "img-src data: cid: https: http:" if allow_remote else "img-src data: cid:"
    response["Content-Security-Policy"] = (f"default-src 'none'; style-src 'unsafe-inline'; {img_src}; "
                                           "frame-ancestors 'self'; sandbox allow-popups "
                                           "allow-popups-to-escape-sandbox")
    response["X-Frame-Options"] = "SAMEORIGIN"
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "private, no-store"
    return response
