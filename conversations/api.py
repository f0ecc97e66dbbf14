"""REST API of communications, conversations and a contact's timeline.

Every queryset comes from conversations.visibility: what a user may not see does not exist
for them (404), and what they may see comes with the fields its sharing level hides set to
null (``access`` says which level applies). Lists page by keyset, newest first.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import F, OuterRef, Prefetch, QuerySet, Subquery
from django.http import FileResponse, Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import generics, serializers, viewsets
from rest_framework.generics import get_object_or_404
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor
from rest_framework.relations import PKOnlyObject
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse

from contacts.models import Contact
from conversations.attachments import download
from conversations.models import Attachment, Communication, Participant
from conversations.rendering import sanitize_html
from conversations.threading import conversation_subject
from conversations.visibility import Level, search, shows, visible_communications, visible_conversations, with_label
from crmext.api import KeysetPagination
from crmext.api_schema import DocumentedErrorsSchema

# The models' own choices, so that the schema names one enum for each.
_CHANNELS = Communication._meta.get_field("channel").choices
_DIRECTIONS = Communication._meta.get_field("direction").choices

# Newest communications a conversation's detail embeds; the rest page through
# /communications/?conversation=<id>.
CONVERSATION_DETAIL_LIMIT = 100


# ------------------------------------------------------------------------------------ pagination

class SentAtPagination(KeysetPagination):
    """Newest first by (sent_at, id); communications without a date come after all dated ones.

    DRF's cursor keeps the first ordering field plus an offset, which breaks on a NULL
    sent_at and rescans ties; this cursor holds the last row's (sent_at, id). A page reads
    the dated rows past it, then (once those run out) the undated ones by id: each part is
    one range scan of the (sent_at DESC, id DESC) index, and rows inserted meanwhile never
    shift a page.
    """

    ordering = ("-sent_at", "-id")

    def paginate_queryset(self, queryset: QuerySet, request: Request, view: Any = None) -> list[Any]:
        self.request = request
        self.page_size = self.get_page_size(request)
        self.base_url = request.build_absolute_uri()
        cursor = self.decode_cursor(request)
        position = self._decode_position(cursor.position) if cursor else None
        self.reverse = bool(cursor and cursor.reverse)
        rows = self._rows(queryset, position, self.page_size + 1)
        more = len(rows) > self.page_size
        rows = rows[: self.page_size]
        if self.reverse:
            rows.reverse()
        here = cursor.position if cursor else None
        first = self._position_of(rows[0]) if rows else here
        last = self._position_of(rows[-1]) if rows else here
        # Forward: a next page if more rows came; a previous one if we started from a cursor.
        # Backward: the mirror image.
        has_next = self.reverse or more
        has_previous = more if self.reverse else cursor is not None
        self._next = self.encode_cursor(Cursor(0, False, last)) if has_next and last else None
        self._previous = self.encode_cursor(Cursor(0, True, first)) if has_previous and first else None
        return rows

    def get_next_link(self) -> str | None:
        return self._next

    def get_previous_link(self) -> str | None:
        return self._previous

    def _rows(self, queryset: QuerySet, position: tuple[dt.datetime | None, int] | None, limit: int) -> list[Any]:
        dated, undated = queryset.filter(sent_at__isnull=False), queryset.filter(sent_at__isnull=True)
        sent_at, pk = position if position else (None, 0)
        parts: list[QuerySet] = []
        if not self.reverse:
            if position is None or sent_at is not None:
                if position is not None:
                    # sent_at <= x is the index range; the exclude drops the ties at or before the cursor.
                    dated = dated.filter(sent_at__lte=sent_at).exclude(sent_at=sent_at, pk__gte=pk)
                parts.append(dated.order_by("-sent_at", "-pk"))
            parts.append((undated.filter(pk__lt=pk) if position and sent_at is None else undated).order_by("-pk"))
        elif sent_at is None:
            parts += [undated.filter(pk__gt=pk).order_by("pk"), dated.order_by("sent_at", "pk")]
        else:
            dated = dated.filter(sent_at__gte=sent_at).exclude(sent_at=sent_at, pk__lte=pk)
            parts.append(dated.order_by("sent_at", "pk"))
        rows: list[Any] = []
        for part in parts:
            rows += part[: limit - len(rows)]
            if len(rows) >= limit:
                break
        return rows

    @staticmethod
    def _position_of(row: Any) -> str:
        return f"{row.sent_at.isoformat() if row.sent_at else ''}|{row.pk}"

    def _decode_position(self, position: str | None) -> tuple[dt.datetime | None, int]:
        try:
            sent_at, pk = (position or "").rsplit("|", 1)
            moment = dt.datetime.fromisoformat(sent_at) if sent_at else None
            if moment is not None and moment.tzinfo is None:
                raise ValueError("naive")
            return moment, int(pk)
        except ValueError:
            raise NotFound(self.invalid_cursor_message) from None


# ----------------------------------------------------------------------------------- serializers

class ParticipantSerializer(serializers.ModelSerializer):
    class Meta:
        model = Participant
        fields = ["role", "kind", "address", "display_name", "contact", "company", "is_owner"]
        read_only_fields = fields

    def to_representation(self, participant: Participant) -> dict[str, Any]:
        # The fields above, read straight off the row: every list page serialises a few hundred
        # participants, and the generic field machinery cost more than the page's SQL.
        return {"role": participant.role, "kind": participant.kind, "address": participant.address,
                "display_name": participant.display_name, "contact": participant.contact_id,
                "company": participant.company_id, "is_owner": participant.is_owner}


class AttachmentSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField(help_text="Null when the content was not stored.")

    class Meta:
        model = Attachment
        fields = ["id", "filename", "content_type", "size", "inline", "content_id", "download_url"]
        read_only_fields = fields

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_download_url(self, attachment: Attachment) -> str | None:
        if not attachment.is_stored:
            return None
        return reverse("communication-attachment", args=[attachment.communication_id, attachment.pk],
                       request=self.context.get("request"))


class LevelledSerializer(serializers.ModelSerializer):
    """Sets to null each field the row's ``visible_level`` does not show (visibility.FIELD_LEVELS)."""

    def to_representation(self, instance: Any) -> dict[str, Any]:
        level = instance.visible_level
        data: dict[str, Any] = {}
        for field in self._readable_fields:
            if not shows(level, field.field_name):
                data[field.field_name] = None
                continue
            attribute = field.get_attribute(instance)
            value = attribute.pk if isinstance(attribute, PKOnlyObject) else attribute
            data[field.field_name] = None if value is None else field.to_representation(attribute)
        return data


class CommunicationSerializer(LevelledSerializer):
    """A communication as you see it: fields above your ``access`` are null."""

    owner = serializers.IntegerField(source="account_owner", read_only=True, help_text="The account owner's user id.")
    access = serializers.SerializerMethodField(
        help_text="How much of this communication you see: its account's sharing level, or everything when "
                  "it is yours. Fields above it are null."
    )
    participants = ParticipantSerializer(many=True, read_only=True)
    subject = serializers.CharField(read_only=True, allow_null=True, help_text="Null at access 'metadata'.")
    snippet = serializers.CharField(read_only=True, allow_null=True)
    labels = serializers.ListField(child=serializers.CharField(), read_only=True, allow_null=True)
    is_read = serializers.BooleanField(read_only=True, allow_null=True)
    is_starred = serializers.BooleanField(read_only=True, allow_null=True)

    class Meta:
        model = Communication
        fields = ["id", "account", "owner", "conversation", "channel", "direction", "sent_at", "received_at",
                  "delivery_status", "deleted_at", "participants", "access", "subject", "snippet", "labels",
                  "is_read", "is_starred"]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=[level.label for level in Level]))
    def get_access(self, communication: Communication) -> str:
        return Level(communication.visible_level).label


class CommunicationDetailSerializer(CommunicationSerializer):
    """A communication with its body and attachments, as you see it: fields above your ``access`` are null."""

    body_text = serializers.CharField(read_only=True, allow_null=True)
    body_html = serializers.SerializerMethodField(
        help_text="Sanitised: no scripts, styles or forms; remote images only with ?remote_images=true."
    )
    attachments = AttachmentSerializer(many=True, read_only=True, allow_null=True)

    class Meta(CommunicationSerializer.Meta):
        fields = [*CommunicationSerializer.Meta.fields, "rfc_message_id", "raw_size", "body_text", "body_html",
                  "attachments"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_body_html(self, communication: Communication) -> str:
        if not communication.body_html:
            return ""
        return sanitize_html(communication.body_html, allow_remote_images=self.context.get("remote_images", False))


class ConversationSerializer(serializers.Serializer):
    """A conversation as one user sees it: counted, dated and named from their visible communications."""

    id = serializers.IntegerField(read_only=True)
    channel = serializers.ChoiceField(choices=_CHANNELS, read_only=True)
    subject = serializers.SerializerMethodField(
        help_text="The subject of the earliest communication whose subject you see, without Re:/Fwd:; "
                  "null if you see no subject in it."
    )
    message_count = serializers.IntegerField(source="visible_count", read_only=True)
    first_message_at = serializers.DateTimeField(source="visible_first_at", read_only=True, allow_null=True)
    last_message_at = serializers.DateTimeField(source="visible_last_at", read_only=True, allow_null=True)

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_subject(self, conversation: Any) -> str | None:
        subject = conversation.visible_subject
        return None if subject is None else conversation_subject(subject)


class ConversationDetailSerializer(ConversationSerializer):
    communications = CommunicationSerializer(
        many=True, read_only=True, source="newest_communications",
        help_text=f"The newest {CONVERSATION_DETAIL_LIMIT} you see, oldest first; communications_url pages "
                  "through all.",
    )
    communications_url = serializers.SerializerMethodField()

    @extend_schema_field(OpenApiTypes.URI)
    def get_communications_url(self, conversation: Any) -> str:
        url = reverse("communication-list", request=self.context.get("request"))
        return f"{url}?conversation={conversation.pk}"


# ---------------------------------------------------------------------------------------- filters

def _id_filter(**options: Any) -> serializers.IntegerField:
    # Bounded: an id past 64 bits would reach the database and fail there (a 500).
    return serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1, **options)


class CommunicationFilters(serializers.Serializer):
    """Query parameters of communication lists; an id that matches nothing gives an empty page."""

    account = _id_filter()
    channel = serializers.ChoiceField(choices=_CHANNELS, required=False)
    direction = serializers.ChoiceField(choices=_DIRECTIONS, required=False)
    contact = _id_filter(help_text="A participant's contact id.")
    company = _id_filter(help_text="A participant's company id.")
    conversation = _id_filter()
    sent_after = serializers.DateTimeField(required=False, help_text="Sent at or after (ISO 8601).")
    sent_before = serializers.DateTimeField(required=False, help_text="Sent before (ISO 8601).")
    label = serializers.CharField(required=False, max_length=255,
                                  help_text="Only communications whose labels you see (access 'everything').")
    q = serializers.CharField(
        required=False, max_length=200,
        help_text="Words in the subject or body (all of them, on PostgreSQL); only in the fields you see.",
    )
    deleted = serializers.BooleanField(required=False, allow_null=True,
                                       help_text="true: only those deleted at the provider; false: none of them.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        after, before = attrs.get("sent_after"), attrs.get("sent_before")
        if after and before and after >= before:
            raise serializers.ValidationError({"sent_before": ["Must be later than sent_after."]})
        return attrs


class TimelineFilters(CommunicationFilters):
    contact = None  # the timeline's own


class ConversationFilters(serializers.Serializer):
    channel = serializers.ChoiceField(choices=_CHANNELS, required=False)


def _validated(filters_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    filters = filters_class(data=request.query_params)
    filters.is_valid(raise_exception=True)
    return filters.validated_data


_FIELD_FILTERS = {"account": "account_id", "channel": "channel", "direction": "direction",
                  "conversation": "conversation_id", "sent_after": "sent_at__gte", "sent_before": "sent_at__lt"}


class _PlannedFirst(Subquery):
    """A subquery PostgreSQL runs on its own, first: ``OFFSET 0`` keeps the planner from folding it
    into the outer query.

    Folded, a contact's few thousand communications among millions look evenly spread, so
    the planner walks the sent_at index, probing participants row after row until a page is
    full (tens of thousands of probes: 500 ms at 1,000,000 rows). Run first, the contact's
    participants are read by their index and only those communications are sorted.
    """

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list[Any]]:
        return self.as_sql(compiler, connection, template="(%(subquery)s OFFSET 0)", **extra)


def _with_participant(communications: QuerySet, **lookup: int) -> QuerySet:
    return communications.filter(pk__in=_PlannedFirst(Participant.objects.filter(**lookup).values("communication_id")))


def filter_communications(communications: QuerySet, filters: dict[str, Any]) -> QuerySet:
    communications = communications.filter(
        **{lookup: filters[name] for name, lookup in _FIELD_FILTERS.items() if name in filters}
    )
    if "contact" in filters:
        communications = _with_participant(communications, contact_id=filters["contact"])
    if "company" in filters:
        communications = _with_participant(communications, company_id=filters["company"])
    if filters.get("deleted") is not None:
        communications = communications.filter(deleted_at__isnull=not filters["deleted"])
    if filters.get("label"):
        communications = with_label(communications, filters["label"])
    if filters.get("q"):
        communications = search(communications, filters["q"])
    return communications


# ------------------------------------------------------------------------------------------ views

def _communications(request: Request) -> QuerySet:
    # A subquery, not a join: PostgreSQL evaluates it for the page's rows only, after the sort.
    accounts = Communication._meta.get_field("account").related_model._default_manager
    owner = accounts.filter(pk=OuterRef("account_id")).values("owner_id")[:1]
    return visible_communications(request.user).annotate(account_owner=Subquery(owner))


def _listed(communications: QuerySet) -> QuerySet:
    """What a list row reads: no bodies, participants in one query."""
    return communications.defer("body_text", "body_html", "references", "parse_warnings").prefetch_related(
        Prefetch("participants", queryset=Participant.objects.order_by("pk"))
    )


class CommunicationViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = CommunicationSerializer
    pagination_class = SentAtPagination
    schema = DocumentedErrorsSchema()

    def get_queryset(self) -> QuerySet:
        communications = _communications(self.request)
        if self.action == "list":
            return _listed(filter_communications(communications, _validated(CommunicationFilters, self.request)))
        return communications.prefetch_related(
            Prefetch("participants", queryset=Participant.objects.order_by("pk")),
            Prefetch("attachments", queryset=Attachment.objects.order_by("pk")),
        )

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return CommunicationDetailSerializer if self.action == "retrieve" else CommunicationSerializer

    def get_serializer_context(self) -> dict[str, Any]:
        remote_images = self.request.query_params.get("remote_images", "").lower() in ("1", "true")
        return {**super().get_serializer_context(), "remote_images": remote_images}

    @extend_schema(parameters=[CommunicationFilters])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(parameters=[OpenApiParameter("remote_images", bool, description="Keep remote images in body_html.")])
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @extend_schema(
        parameters=[OpenApiParameter("attachment_id", int, OpenApiParameter.PATH)],
        # Served with the content type the message gave it (else application/octet-stream).
        responses={(200, "*/*"): OpenApiTypes.BINARY,
                   404: OpenApiResponse(description="No such attachment, not yours to read, or not stored.")},
    )
    @action(detail=True, url_path=r"attachments/(?P<attachment_id>[^/.]+)", url_name="attachment")
    def attachment(self, request: Request, pk: str, attachment_id: str) -> FileResponse:
        """An attachment's content, to whoever sees its communication at access 'everything'."""
        communication = get_object_or_404(_communications(request), pk=pk)
        if not shows(communication.visible_level, "attachments"):
            raise Http404
        attachment = get_object_or_404(Attachment, communication=communication, pk=attachment_id)
        try:
            return download(attachment)
        except FileNotFoundError:
            raise NotFound("This attachment's content was not stored.") from None


class ConversationViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ConversationSerializer
    schema = DocumentedErrorsSchema()

    def get_queryset(self) -> QuerySet:
        conversations = visible_conversations(self.request.user)
        if self.action == "list":
            channel = _validated(ConversationFilters, self.request).get("channel")
            return conversations.filter(channel=channel) if channel else conversations
        return conversations

    def get_serializer_class(self) -> type[serializers.Serializer]:
        return ConversationDetailSerializer if self.action == "retrieve" else ConversationSerializer

    @extend_schema(parameters=[ConversationFilters])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        conversation = self.get_object()
        newest = _listed(_communications(request).filter(conversation=conversation))
        conversation.newest_communications = list(
            newest.order_by(F("sent_at").desc(nulls_last=True), "-pk")[:CONVERSATION_DETAIL_LIMIT]
        )[::-1]
        return Response(self.get_serializer(conversation).data)


class ContactTimelineView(generics.ListAPIView):
    """Every communication with this person across the team, each at its account's sharing level."""

    serializer_class = CommunicationSerializer
    pagination_class = SentAtPagination
    schema = DocumentedErrorsSchema()

    def get_queryset(self) -> QuerySet:
        contact = get_object_or_404(Contact.objects.only("pk"), pk=self.kwargs["pk"])
        communications = filter_communications(_communications(self.request), _validated(TimelineFilters, self.request))
        return _listed(_with_participant(communications, contact_id=contact.pk))

    @extend_schema(parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH, description="The contact's id."),
                               TimelineFilters])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)
