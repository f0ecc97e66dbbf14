"""REST API of suggestions and tasks, under /api/v1/ (automation.api_urls).

Strictly owner-scoped, staff included (suggestions and tasks carry message content): another
user's suggestion or task does not exist for you (404). Thin: the viewsets validate and call
automation.services.
"""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_field,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from automation import services
from automation.models import Priority, Suggestion, Task
from contacts.models import Contact
from conversations.models import Communication, Conversation
from conversations.visibility import visible_conversations
from crmext.api_schema import DocumentedErrorsSchema, ErrorSerializer
from integrations.api.views import id_parameter

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid parameters or body; `fields` says which."),
    404: OpenApiResponse(ErrorSerializer, description="No such object among yours."),
    409: OpenApiResponse(ErrorSerializer, description="The suggestion was already approved or dismissed."),
}


class AlreadyDecided(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "already_decided"
    default_detail = "This suggestion was already approved or dismissed."


# ------------------------------------------------------------------------------------ serializers

class SuggestionSerializer(serializers.ModelSerializer):
    account = serializers.PrimaryKeyRelatedField(read_only=True)
    communication = serializers.PrimaryKeyRelatedField(read_only=True)
    task = serializers.SerializerMethodField()
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = Suggestion
        fields = ["id", "account", "communication", "title", "description", "priority", "due", "tags", "confidence",
                  "reasoning", "engine", "engine_version", "status", "dismiss_reason", "decided_at", "subject",
                  "sender", "snippet", "sent_at", "task", "created_at", "updated_at"]
        read_only_fields = fields

    @extend_schema_field(serializers.IntegerField(allow_null=True, help_text="The task made from it, if any."))
    def get_task(self, suggestion: Suggestion) -> int | None:
        task = getattr(suggestion, "task", None)
        return task.pk if task is not None else None


class ApproveSerializer(serializers.Serializer):
    title = serializers.CharField(max_length=200, required=False, allow_blank=False)
    due = serializers.DateField(required=False, allow_null=True)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)


class DismissSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class BulkApproveSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, max_length=500)
    min_confidence = serializers.FloatField(required=False, min_value=0.0, max_value=1.0)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "ids" not in attrs and "min_confidence" not in attrs:
            raise serializers.ValidationError("Give ids, min_confidence, or both.")
        return attrs


class TaskSerializer(serializers.ModelSerializer):
    contact = serializers.PrimaryKeyRelatedField(queryset=Contact.objects.all(), required=False, allow_null=True)
    conversation = serializers.PrimaryKeyRelatedField(queryset=Conversation.objects.none(), required=False,
                                                      allow_null=True)
    communication = serializers.PrimaryKeyRelatedField(queryset=Communication.objects.none(), required=False,
                                                       allow_null=True)
    suggestion = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = Task
        fields = ["id", "title", "description", "due", "priority", "status", "done_at", "contact", "conversation",
                  "communication", "suggestion", "write_back", "write_back_error", "created_at", "updated_at"]
        read_only_fields = ["done_at", "suggestion", "write_back", "write_back_error", "created_at", "updated_at"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        request = self.context.get("request")
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            # Links only to what the user may see: their own accounts' messages, visible conversations.
            self.fields["communication"].queryset = Communication.objects.filter(account__owner=user)
            self.fields["conversation"].queryset = visible_conversations(user)


class BulkApproveResultSerializer(serializers.Serializer):
    approved = serializers.IntegerField()
    tasks = TaskSerializer(many=True)


# ------------------------------------------------------------------------------------ views

@extend_schema_view(
    list=extend_schema(summary="Your task suggestions", parameters=[
        OpenApiParameter("status", OpenApiTypes.STR, enum=Suggestion.Status.values,
                         description="Only suggestions in this status."),
        OpenApiParameter("account", OpenApiTypes.INT, description="Only suggestions from this connector."),
        OpenApiParameter("min_confidence", OpenApiTypes.FLOAT, description="Only at least this confident (0..1)."),
    ]),
    retrieve=extend_schema(summary="One suggestion", responses={200: SuggestionSerializer, 404: ERRORS[404]}),
)
class SuggestionViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = SuggestionSerializer
    schema = DocumentedErrorsSchema()

    def get_queryset(self) -> QuerySet[Suggestion]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator: no user
            return Suggestion.objects.none()
        suggestions = Suggestion.objects.filter(owner=self.request.user).select_related("task")
        if self.action != "list":
            return suggestions
        params = self.request.query_params
        wanted = params.get("status")
        if wanted is not None:
            if wanted not in Suggestion.Status.values:
                raise exceptions.ValidationError({"status": [f"One of: {', '.join(Suggestion.Status.values)}."]})
            suggestions = suggestions.filter(status=wanted)
        account = id_parameter(self.request, "account")
        if account is not None:
            suggestions = suggestions.filter(account_id=account)
        if "min_confidence" in params:
            suggestions = suggestions.filter(confidence__gte=_confidence(params["min_confidence"]))
        return suggestions

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return {"approve": ApproveSerializer, "dismiss": DismissSerializer,
                "bulk_approve": BulkApproveSerializer}.get(self.action, SuggestionSerializer)

    @extend_schema(summary="Approve a suggestion", description="Makes its task, with the edits given (title, due, "
                   "priority).", request=ApproveSerializer,
                   responses={201: TaskSerializer, 400: ERRORS[400], 404: ERRORS[404], 409: ERRORS[409]})
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str | None = None) -> Response:
        suggestion = self.get_object()
        serializer = ApproveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            task = services.approve(suggestion, title=data.get("title"), due=data.get("due"),
                                    priority=data.get("priority"), edits=data.keys())
        except services.AlreadyDecided:
            raise AlreadyDecided() from None
        return Response(TaskSerializer(task, context=self.get_serializer_context()).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(summary="Dismiss a suggestion", request=DismissSerializer,
                   responses={200: SuggestionSerializer, 400: ERRORS[400], 404: ERRORS[404], 409: ERRORS[409]})
    @action(detail=True, methods=["post"])
    def dismiss(self, request: Request, pk: str | None = None) -> Response:
        suggestion = self.get_object()
        serializer = DismissSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            services.dismiss(suggestion, serializer.validated_data["reason"])
        except services.AlreadyDecided:
            raise AlreadyDecided() from None
        return Response(SuggestionSerializer(suggestion).data)

    @extend_schema(summary="Approve many suggestions", description="The pending ones with these ids and/or at "
                   "least this confidence; those already decided are left alone.", request=BulkApproveSerializer,
                   responses={200: BulkApproveResultSerializer, 400: ERRORS[400]})
    @action(detail=False, methods=["post"], url_path="bulk-approve")
    def bulk_approve(self, request: Request) -> Response:
        serializer = BulkApproveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        tasks = services.bulk_approve(Suggestion.objects.filter(owner=request.user), ids=data.get("ids"),
                                      min_confidence=data.get("min_confidence"))
        return Response({"approved": len(tasks),
                         "tasks": TaskSerializer(tasks, many=True, context=self.get_serializer_context()).data})


def _confidence(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0.0 <= number <= 1.0:
        raise exceptions.ValidationError({"min_confidence": ["A number from 0 to 1."]})
    return number


@extend_schema_view(
    list=extend_schema(summary="Your tasks", parameters=[
        OpenApiParameter("status", OpenApiTypes.STR, enum=Task.Status.values, description="Only tasks in this status.")
    ]),
    create=extend_schema(summary="Create a task"),
    retrieve=extend_schema(summary="One task", responses={200: TaskSerializer, 404: ERRORS[404]}),
    partial_update=extend_schema(summary="Change a task", description="status=done closes it (and, when its "
                                 "account opted in, marks its message processed at the provider)."),
    destroy=extend_schema(summary="Delete a task"),
)
class TaskViewSet(mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                  mixins.UpdateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    serializer_class = TaskSerializer
    schema = DocumentedErrorsSchema()

    def get_queryset(self) -> QuerySet[Task]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator: no user
            return Task.objects.none()
        tasks = Task.objects.filter(owner=self.request.user)
        wanted = self.request.query_params.get("status") if self.action == "list" else None
        if wanted is not None:
            if wanted not in Task.Status.values:
                raise exceptions.ValidationError({"status": [f"One of: {', '.join(Task.Status.values)}."]})
            tasks = tasks.filter(status=wanted)
        return tasks

    def perform_create(self, serializer: TaskSerializer) -> None:
        data = serializer.validated_data
        communication = data.get("communication")
        if communication is not None and data.get("conversation") is None:
            data["conversation"] = communication.conversation
        status_wanted = data.pop("status", Task.Status.OPEN)
        task = serializer.save(owner=self.request.user)
        if status_wanted == Task.Status.DONE:
            services.complete(task)

    def perform_update(self, serializer: TaskSerializer) -> None:
        status_wanted = serializer.validated_data.pop("status", None)
        task = serializer.save()
        if status_wanted == Task.Status.DONE:
            services.complete(task)
        elif status_wanted == Task.Status.OPEN and task.status == Task.Status.DONE:
            services.reopen(task)
