"""REST API of triggers and their webhook deliveries, under /api/v1/ (automation.api_urls).

Owner-scoped: another user's trigger or delivery does not exist for you (404), and so does a
connector you may not see when you name it. Bodies are validated field by field and unknown
fields are refused. The webhook secret is write-only: a create without one answers the
generated secret once (``secret``), every other answer shows ``secret_hint`` alone. Thin:
the work is automation.triggers.services'.
"""
from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from automation.models import Priority, Trigger, WebhookDelivery
from automation.triggers import services
from automation.triggers.conditions import clean_conditions, hidden_conditions, type_error
from automation.triggers.outbound import literal_refusal
from conversations.messages import Direction
from crmext.api import KeysetPagination
from crmext.api_schema import DocumentedErrorsSchema, ErrorSerializer
from integrations.providers.base import Capability
from integrations.providers.registry import provider_class

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid body; `fields` says which."),
    404: OpenApiResponse(ErrorSerializer, description="No such trigger, delivery or connector among yours."),
    409: OpenApiResponse(ErrorSerializer, description="The delivery is still under way."),
}
TYPE_CAPABILITY = {"email": Capability.EMAIL, "sms": Capability.SMS}


class StillUnderWay(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "under_way"
    default_detail = "This delivery is still pending or waiting to retry; redeliver it once it has finished."


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know (DRF ignores them by default: a typo would go unnoticed)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(name) for name in data if name not in self.fields)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class ConditionsSerializer(serializers.Serializer):
    """The schema of ``conditions``; automation.triggers.conditions validates them."""

    direction = serializers.ChoiceField(choices=[(d.value, d.name.title()) for d in Direction], required=False)
    sender = serializers.CharField(required=False, help_text="An address, or a domain (acme.com, @acme.com).")
    subject_contains = serializers.CharField(required=False)
    body_contains = serializers.CharField(required=False)
    label = serializers.CharField(required=False, help_text="A label or folder.")
    contact = serializers.IntegerField(required=False, min_value=1)
    company = serializers.IntegerField(required=False, min_value=1)
    has_attachment = serializers.BooleanField(required=False)


@extend_schema_field(ConditionsSerializer)
class ConditionsField(serializers.JSONField):
    def to_internal_value(self, data: Any) -> dict[str, Any]:
        cleaned, errors = clean_conditions(data)
        if errors:
            raise serializers.ValidationError(errors)
        return cleaned


class TaskTemplateSerializer(StrictSerializer):
    title = serializers.CharField(max_length=200, help_text="$subject, $sender, $channel, $trigger are replaced.")
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    due_in_days = serializers.IntegerField(required=False, allow_null=True, min_value=0, max_value=365)

    def to_representation(self, instance: Any) -> dict[str, Any] | None:
        # Stored as a plain dict, empty for webhook triggers: shown as null then.
        return {name: instance[name] for name in self.fields if name in instance} if instance else None


@extend_schema_field({"type": "string", "enum": ["email", "sms", "any"]})
class TypeField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        problem = type_error(data)
        if problem:
            raise serializers.ValidationError(problem)
        return str(data)


class TriggerSerializer(StrictSerializer, serializers.ModelSerializer):
    connector = serializers.IntegerField(required=False, allow_null=True, min_value=1, source="connector_id",
                                         help_text="A connector id; empty: any of your connectors.")
    type = TypeField(required=False, default="any")
    conditions = ConditionsField(required=False)
    url = serializers.CharField(required=False, allow_blank=True, max_length=2000)
    secret = serializers.CharField(write_only=True, required=False, min_length=16, max_length=200,
                                   help_text="The signing secret; omitted on create: one is generated and answered "
                                             "once. Never shown again (see secret_hint).")
    task_template = TaskTemplateSerializer(required=False, allow_null=True)

    class Meta:
        model = Trigger
        fields = ["id", "name", "connector", "enabled", "type", "conditions", "action", "url", "secret",
                  "secret_hint", "task_template", "include_backfill", "created_at", "updated_at"]
        read_only_fields = ["secret_hint", "created_at", "updated_at"]

    def to_representation(self, instance: Trigger) -> dict[str, Any]:
        data = super().to_representation(instance)
        return data

    def validate_connector(self, value: int | None) -> int | None:
        if value is None:
            return None
        user = self.context["request"].user
        if not services.attachable_connectors(user).filter(pk=value).exists():
            raise exceptions.NotFound("No such connector among those you may see.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        instance: Trigger | None = self.instance
        current = {"connector_id": getattr(instance, "connector_id", None), "type": getattr(instance, "type", "any"),
                   "conditions": getattr(instance, "conditions", {}) or {},
                   "action": getattr(instance, "action", Trigger.Action.WEBHOOK),
                   "url": getattr(instance, "url", ""), "task_template": getattr(instance, "task_template", {})}
        merged = {**current, **attrs}
        errors: dict[str, list[str]] = {}
        if merged["connector_id"] is not None:
            connector = services.attachable_connectors(self.context["request"].user).get(pk=merged["connector_id"])
            needed = TYPE_CAPABILITY.get(merged["type"])
            try:
                capabilities = provider_class(connector.provider).capabilities
            except LookupError:
                capabilities = frozenset()
            if needed is not None and needed not in capabilities:
                errors["type"] = [f"Connector {connector.pk} ({connector.provider}) carries no {merged['type']}."]
            level = services.connector_level(self.context["request"].user, connector)
            hidden = hidden_conditions(merged["conditions"], level) if level is not None else []
            if hidden:
                errors["conditions"] = [(f"Connector {connector.pk} is shared at level {connector.sharing}, which "
                                         f"hides what {', '.join(hidden)} would look at.")]
        if merged["action"] == Trigger.Action.WEBHOOK:
            if not merged["url"]:
                errors["url"] = ["A webhook trigger needs a URL."]
            else:
                problem = literal_refusal(merged["url"])
                if problem:
                    errors["url"] = [problem]
        else:
            if not merged["task_template"]:
                errors["task_template"] = ["A task trigger needs a task_template with at least a title."]
            if attrs.get("url"):
                errors["url"] = ["Only webhook triggers have a URL."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    def save_trigger(self, **extra: Any) -> tuple[Trigger, str | None]:
        """Saves, keeping or setting the secret; returns the trigger and the secret when one was generated."""
        data = dict(self.validated_data)
        secret = data.pop("secret", None)
        if "task_template" in data:
            data["task_template"] = data["task_template"] or {}
        trigger = self.instance or Trigger(**extra)
        for name, value in data.items():
            setattr(trigger, name, value)
        generated = None
        if secret:
            trigger.set_secret(secret)
        elif trigger.action == Trigger.Action.WEBHOOK and not trigger.secret:
            generated = "whsec_" + secrets.token_urlsafe(32)
            trigger.set_secret(generated)
        trigger.save()
        self.instance = trigger
        return trigger, generated


class AttemptSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    status_code = serializers.IntegerField(allow_null=True)
    duration_ms = serializers.IntegerField(allow_null=True)
    outcome = serializers.ChoiceField(choices=["succeeded", "retry", "failed"])
    error = serializers.CharField(allow_blank=True)


class DeliverySerializer(serializers.ModelSerializer):
    trigger = serializers.PrimaryKeyRelatedField(read_only=True)
    communication = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    attempt_log = AttemptSerializer(many=True, read_only=True)

    class Meta:
        model = WebhookDelivery
        fields = ["id", "trigger", "communication", "event", "status", "attempts", "response_code", "duration_ms",
                  "error", "attempt_log", "next_attempt_at", "delivered_at", "created_at", "updated_at"]
        read_only_fields = fields


@extend_schema_view(
    list=extend_schema(summary="Your triggers"),
    create=extend_schema(summary="Create a trigger", responses={201: TriggerSerializer, 400: ERRORS[400],
                                                                404: ERRORS[404]}),
    retrieve=extend_schema(summary="One trigger", responses={200: TriggerSerializer, 404: ERRORS[404]}),
    partial_update=extend_schema(summary="Change a trigger", description="A new `secret` rotates it."),
    destroy=extend_schema(summary="Delete a trigger"),
)
class TriggerViewSet(mixins.CreateModelMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                     mixins.UpdateModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet):
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    serializer_class = TriggerSerializer
    schema = DocumentedErrorsSchema()

    def get_queryset(self) -> QuerySet[Trigger]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator: no user
            return Trigger.objects.none()
        return Trigger.objects.filter(owner=self.request.user)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        trigger, generated = serializer.save_trigger(owner=request.user)
        data = TriggerSerializer(trigger, context=self.get_serializer_context()).data
        if generated:
            data["secret"] = generated  # this once; only the hint afterwards
        return Response(data, status=status.HTTP_201_CREATED)

    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        trigger, generated = serializer.save_trigger()
        data = TriggerSerializer(trigger, context=self.get_serializer_context()).data
        if generated:
            data["secret"] = generated
        return Response(data)

    @extend_schema(summary="A trigger's webhook deliveries", responses={200: DeliverySerializer(many=True),
                                                                       404: ERRORS[404]})
    @action(detail=True, methods=["get"], pagination_class=KeysetPagination)
    def deliveries(self, request: Request, pk: str | None = None) -> Response:
        trigger = self.get_object()
        page = self.paginate_queryset(trigger.deliveries.all())
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)

    @extend_schema(summary="Send a sample payload", description="Queues a `trigger.test` delivery of a made-up "
                   "message to the trigger's URL, signed like every other.", request=None,
                   responses={202: DeliverySerializer, 400: ERRORS[400], 404: ERRORS[404]})
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str | None = None) -> Response:
        trigger = self.get_object()
        if trigger.action != Trigger.Action.WEBHOOK:
            raise exceptions.ValidationError({"action": ["Only webhook triggers send a test payload."]})
        delivery = services.send_test(trigger)
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)


@extend_schema_view(
    list=extend_schema(summary="Your webhook deliveries"),
    retrieve=extend_schema(summary="One delivery", responses={200: DeliverySerializer, 404: ERRORS[404]}),
)
class DeliveryViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = DeliverySerializer
    schema = DocumentedErrorsSchema()

    def get_queryset(self) -> QuerySet[WebhookDelivery]:
        if getattr(self, "swagger_fake_view", False):
            return WebhookDelivery.objects.none()
        return WebhookDelivery.objects.filter(trigger__owner=self.request.user)

    @extend_schema(summary="Redeliver", description="Starts a new round of attempts of a finished delivery "
                   "(same delivery id; the payload is rebuilt at the connector's current sharing level).",
                   request=None, responses={202: DeliverySerializer, 404: ERRORS[404], 409: ERRORS[409]})
    @action(detail=True, methods=["post"])
    def redeliver(self, request: Request, pk: str | None = None) -> Response:
        try:
            delivery = services.redeliver(self.get_object())
        except services.NotFinished:
            raise StillUnderWay() from None
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

