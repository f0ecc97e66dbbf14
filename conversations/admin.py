from __future__ import annotations

from django.contrib import admin
from django.db.models import BooleanField, Case, OuterRef, Q, QuerySet, Subquery, Value, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html

from conversations.models import Attachment, Communication, Conversation, MessageRef, Participant, ThreadKey
from conversations.permissions import HIDDEN, can_view_all_content, can_view_content
from conversations.rendering import sanitize_html
from crmext.pagination import EstimatedCountPaginator, LargeTableChangeList


class LargeTableAdmin(admin.ModelAdmin):
    """Synced data on big tables: estimated counts, and read-only.

    Rows are written by syncs, never by hand: nothing is added here and no field is
    edited (the next sync would overwrite an edit, and an edit would mislead the CRM).
    """

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 50

    def get_changelist(self, request: HttpRequest, **kwargs: object) -> type[LargeTableChangeList]:
        return LargeTableChangeList

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        concrete = [field.name for field in self.model._meta.concrete_fields]
        return [*concrete, *(f for f in super().get_readonly_fields(request, obj) if f not in concrete)]


def with_content_visibility(queryset: QuerySet, request: HttpRequest, owner_path: str) -> QuerySet:
    """Annotates ``content_visible``: may this user read the content of each row (see permissions)."""
    if can_view_all_content(request.user):
        return queryset.annotate(content_visible=Value(True, output_field=BooleanField()))
    return queryset.annotate(content_visible=Case(
        When(**{owner_path: request.user.pk}, then=Value(True)), default=Value(False), output_field=BooleanField()
    ))


def _visible(obj: object) -> bool:
    return bool(getattr(obj, "content_visible", False))


class ParticipantInline(admin.TabularInline):
    model = Participant
    extra = 0
    fields = ["role", "kind", "address", "display_name", "contact", "company", "is_owner"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class AttachmentInline(admin.TabularInline):
    model = Attachment
    extra = 0
    fields = ["filename", "content_type", "size", "sha256", "inline", "stored_name"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class CommunicationInline(admin.TabularInline):
    model = Communication
    extra = 0
    fields = ["title", "account", "direction", "sent_at"]
    readonly_fields = fields
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return with_content_visibility(super().get_queryset(request), request, "account__owner_id")

    @admin.display(description="Subject")
    def title(self, obj: Communication) -> str:
        return obj.title if _visible(obj) else HIDDEN


@admin.register(Conversation)
class ConversationAdmin(LargeTableAdmin):
    # Conversations are shared by every account in them: their subject is content, shown
    # only to those who may read everyone's (see conversations.permissions).
    list_display = ["title", "channel", "message_count", "last_message_at"]
    list_filter = ["channel"]
    search_fields = ["subject"]
    date_hierarchy = "last_message_at"
    inlines = [CommunicationInline]

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return list(self.search_fields) if can_view_all_content(request.user) else []

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = super().get_queryset(request)
        return queryset.annotate(content_visible=Value(can_view_all_content(request.user)))

    def get_exclude(self, request: HttpRequest, obj: object = None) -> list[str]:
        return [] if can_view_all_content(request.user) else ["subject"]

    def get_readonly_fields(self, request: HttpRequest, obj: object = None) -> list[str]:
        readonly = super().get_readonly_fields(request, obj)
        return readonly if can_view_all_content(request.user) else [f for f in readonly if f != "subject"]

    @admin.display(description="Conversation", ordering="subject")
    def title(self, obj: Conversation) -> str:
        return obj.title if _visible(obj) else str(obj)


_CONTENT_FIELDS = frozenset(("subject", "preview", "snippet", "body_text", "body_html"))


@admin.register(Communication)
class CommunicationAdmin(LargeTableAdmin):
    """Content (subject, body, preview, attachments) of another user's account shows only to
    superusers and staff with view_all_content; other staff see the metadata."""

    list_display = ["title", "sender", "account", "channel", "direction", "sent_at", "deleted_at"]
    list_filter = ["channel", "direction", ("deleted_at", admin.EmptyFieldListFilter)]
    list_select_related = ["account"]
    search_fields = ["subject"]
    search_help_text = "An address or Message-ID finds exact matches (fast); other words search subjects."
    date_hierarchy = "sent_at"
    raw_id_fields = ["account", "conversation"]
    inlines = [ParticipantInline, AttachmentInline]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        # An address or Message-ID is looked up exactly, through indexes, instead of being
        # OR-ed with a subject substring search that scans every row of a big table.
        term = search_term.strip().strip("<>")
        if "@" in term and not any(c.isspace() for c in term):
            # Addresses and Message-IDs are metadata: everyone's rows may match them.
            # Ids first, then one OR of two indexed conditions: PostgreSQL combines those with
            # a bitmap, where an OR with a subquery would make it scan the table.
            with_address = list(
                Participant.objects.filter(address=term.lower()).values_list("communication_id", flat=True)[:10_000]
            )
            return queryset.filter(Q(rfc_message_id=term) | Q(pk__in=with_address)), False
        if not can_view_all_content(request.user):
            # A subject search would tell whose mail holds a word: only the user's own mail.
            queryset = queryset.filter(account__owner_id=request.user.pk)
        return super().get_search_results(request, queryset, search_term)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        senders = Participant.objects.filter(communication=OuterRef("pk"), role=Participant.Role.FROM)
        queryset = super().get_queryset(request).annotate(sender_address=Subquery(senders.values("address")[:1]))
        return with_content_visibility(queryset, request, "account__owner_id")

    @admin.display(description="From")
    def sender(self, obj: Communication) -> str:
        # Who wrote it is metadata: shown to every staff user.
        return getattr(obj, "sender_address", None) or "-"

    @admin.display(description="Communication", ordering="subject")
    def title(self, obj: Communication) -> str:
        return obj.title if _visible(obj) else f"{HIDDEN} #{obj.pk}"

    def get_fieldsets(self, request: HttpRequest, obj: Communication | None = None):  # type: ignore[no-untyped-def]
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or _visible(obj):
            return fieldsets
        hidden = [(name, {**options, "fields": [f for f in options["fields"] if f not in _CONTENT_FIELDS]})
                  for name, options in fieldsets]
        return [hidden[0], ("Content", {**hidden[1][1], "fields": ["content_notice", *hidden[1][1]["fields"]]}),
                *hidden[2:]]

    def get_readonly_fields(self, request: HttpRequest, obj: Communication | None = None) -> list[str]:
        return [*super().get_readonly_fields(request, obj), "content_notice"]

    @admin.display(description="Subject and body")
    def content_notice(self, obj: Communication) -> str:
        return ("Hidden: this message belongs to another user's account. Its participants, dates and sizes "
                "are shown; reading its content needs the permission \"Can read the content of every user's "
                "communications\".")

    def get_inlines(self, request: HttpRequest, obj: Communication | None = None):  # type: ignore[no-untyped-def]
        if obj is not None and not _visible(obj):
            return [ParticipantInline]
        return super().get_inlines(request, obj)
    readonly_fields = ["preview", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["account", "conversation", "channel", "direction", "subject", "sent_at", "received_at"]}),
        ("Content", {"fields": ["preview", "snippet", "body_text", "labels", "is_read", "is_starred",
                                "delivery_status", "deleted_at"]}),
        (
            "Provider and threading",
            {
                "classes": ["collapse"],
                "fields": [
                    "provider_message_id", "provider_thread_id", "rfc_message_id", "in_reply_to",
                    "references", "raw_size", "parse_warnings", "created_at", "updated_at",
                ],
            },
        ),
    ]

    def get_urls(self):  # type: ignore[no-untyped-def]
        preview = self.admin_site.admin_view(self.preview_view)
        return [
            path("<int:object_id>/preview/", preview, name="conversations_communication_preview"),
            *super().get_urls(),
        ]

    def preview_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """The sanitised message HTML, for the sandboxed iframe on the change page."""
        communication = get_object_or_404(Communication.objects.select_related("account"), pk=object_id)
        if not self.has_view_permission(request, communication) or not can_view_content(
            request.user, communication.account.owner_id
        ):
            return HttpResponse(status=403)
        allow_remote = request.GET.get("remote_images") == "1"
        body = sanitize_html(communication.body_html, allow_remote_images=allow_remote) if communication.body_html else (
            format_html("<pre style='white-space:pre-wrap'>{}</pre>", communication.body_text)
        )
        response = HttpResponse(f"<!doctype html><meta charset='utf-8'><body>{body}</body>")
        # Belt and braces behind nh3: nothing in the preview may run or phone home.
        img_src = "img-src data: cid: https: http:" if allow_remote else "img-src data: cid:"
        response["Content-Security-Policy"] = f"default-src 'none'; style-src 'unsafe-inline'; {img_src}; sandbox"
        response["X-Frame-Options"] = "SAMEORIGIN"
        return response

    @admin.display(description="Preview")
    def preview(self, obj: Communication) -> str:
        if obj.pk is None:
            return "-"
        url = reverse("admin:conversations_communication_preview", args=[obj.pk])
        return format_html(
            '<iframe sandbox src="{}" style="width:100%;height:420px;border:1px solid #ccc" '
            'title="Message preview"></iframe><br><a href="{}?remote_images=1" target="_blank" '
            'rel="noopener">Open with remote images</a>',
            url,
            url,
        )


@admin.register(Participant)
class ParticipantAdmin(LargeTableAdmin):
    list_display = ["address", "role", "display_name", "contact", "company", "communication"]
    list_filter = ["role", "kind", "is_owner"]
    list_select_related = ["contact", "company", "communication"]
    search_fields = ["=address", "display_name"]
    raw_id_fields = ["communication", "contact", "company"]


@admin.register(Attachment)
class AttachmentAdmin(LargeTableAdmin):
    list_display = ["filename", "content_type", "size", "inline", "communication"]
    list_filter = ["inline"]
    list_select_related = ["communication"]
    search_fields = ["filename", "=sha256"]
    raw_id_fields = ["communication"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        # Attachments are content through and through: other users' stay out of the list.
        queryset = super().get_queryset(request)
        if can_view_all_content(request.user):
            return queryset
        return queryset.filter(communication__account__owner_id=request.user.pk)


@admin.register(ThreadKey)
class ThreadKeyAdmin(LargeTableAdmin):
    list_display = ["key", "conversation"]
    search_fields = ["=key"]
    raw_id_fields = ["conversation"]


@admin.register(MessageRef)
class MessageRefAdmin(LargeTableAdmin):
    list_display = ["ref", "label", "account", "communication"]
    list_select_related = ["account", "communication"]
    search_fields = ["=ref", "label"]
    raw_id_fields = ["account", "communication"]
