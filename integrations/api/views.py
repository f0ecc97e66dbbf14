"""Viewsets of connectors, providers and sync runs. Thin: they validate and call services.

Scoping: a user sees only their own connectors and runs; staff see everyone's and may
narrow with ``?owner=<user id>``. Anything outside the scope is a 404, never a 403, so ids
cannot be probed. Nothing here knows a provider: how one connects comes from its
ConnectMethod (integrations.providers.connect).
"""
from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from crmext.api_schema import DocumentedErrorsSchema
from integrations import accounts
from integrations.api.serializers import (
    AuthorizeSerializer,
    ConnectorCreateSerializer,
    ConnectorSerializer,
    ConnectorStatusSerializer,
    ConnectorUpdateSerializer,
    ErrorSerializer,
    ProviderSerializer,
    SyncConflictSerializer,
    SyncRequestSerializer,
    SyncRunSerializer,
    UnlockSerializer,
    connector_create_requests,
    not_configured,
)
from integrations.models import ProviderAccount, SyncRun
from integrations.providers.base import AuthError, ProviderError
from integrations.providers.connect import OAuthConnect, connect_method
from integrations.providers.registry import PROVIDERS, provider_class
from integrations.tasks import ACTIVE, NotSyncable, SyncInProgress, request_sync

ERRORS = {
    400: OpenApiResponse(ErrorSerializer, description="Invalid request, or refused (the reason is the message)."),
    404: OpenApiResponse(ErrorSerializer, description="No such object among those you may see."),
}
OWNER_PARAMETER = OpenApiParameter("owner", OpenApiTypes.INT,
                                   description="Staff: only the objects of this user (others see only their own).")


class Refused(exceptions.APIException):
    """A 400 whose code says why: the connection test failed (nothing was saved), or the account cannot sync."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "refused"


def _connection_failed(error: ProviderError) -> Refused:
    # The provider's message names the server and its reason, never the credentials.
    return Refused(f"{error} Nothing was saved.",
                   code="login_failed" if isinstance(error, AuthError) else "connection_failed")


def id_parameter(request: Request, name: str) -> int | None:
    """The whole number in the query parameter ``name`` (None if absent); a 400 if it is something else."""
    value = request.query_params.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdecimal() and len(value) <= 18):
        raise exceptions.ValidationError({name: ["An id (a whole number)."]})
    return int(value)


def owner_scoped(queryset: QuerySet, request: Request, owner_field: str) -> QuerySet:
    """Only the user's own objects (staff: everyone's), narrowed by ``?owner=`` if given."""
    if not request.user.is_staff:
        queryset = queryset.filter(**{owner_field: request.user})
    owner = id_parameter(request, "owner")
    return queryset if owner is None else queryset.filter(**{f"{owner_field}_id": owner})


@extend_schema_view(
    list=extend_schema(summary="Your connectors", parameters=[OWNER_PARAMETER]),
    retrieve=extend_schema(summary="One connector", responses={200: ConnectorSerializer, 404: ERRORS[404]}),
    partial_update=extend_schema(
        summary="Change a connector",
        description="Display name, address, config, interval, sharing, enabled, credentials. A change of the "
                    "connection settings (host, port, security, username) must come with the credentials: the "
                    "login is tested with the new settings first, and a failure changes nothing.",
        request=ConnectorUpdateSerializer, responses={200: ConnectorSerializer, **ERRORS},
    ),
    destroy=extend_schema(
        summary="Disconnect a connector",
        description="Erases its credentials at once and stops its syncs; its communications are kept (the "
                    "connector stays, disabled). With purge=true the communications are deleted too, then the "
                    "connector, in the background (202).",
        parameters=[OpenApiParameter("purge", OpenApiTypes.BOOL, description="Also delete its communications.")],
        responses={204: OpenApiResponse(description="Disconnected."),
                   202: OpenApiResponse(description="Disconnected; its communications are being deleted."),
                   404: ERRORS[404]},
    ),
)
class ConnectorViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
                       mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Connected accounts (mailboxes, imports) of the signed-in user."""

    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    serializer_class = ConnectorSerializer
    schema = DocumentedErrorsSchema()

    def get_queryset(self) -> QuerySet[ProviderAccount]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator: no user
            return ProviderAccount.objects.none()
        return owner_scoped(ProviderAccount.objects.all(), self.request, "owner").prefetch_related(
            Prefetch("sync_runs", queryset=SyncRun.objects.filter(status__in=ACTIVE).order_by("-id"),
                     to_attr="active_runs"),
        )

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return {
            "create": ConnectorCreateSerializer, "partial_update": ConnectorUpdateSerializer,
            "sync": SyncRequestSerializer, "sync_status": ConnectorStatusSerializer, "unlock": UnlockSerializer,
            "sync_runs": SyncRunSerializer,
        }.get(self.action, ConnectorSerializer)

    def _reread(self, account: ProviderAccount) -> ProviderAccount:
        return self.get_queryset().get(pk=account.pk)

    @extend_schema(
        summary="Connect an account",
        description="For providers connected by credentials (see /api/v1/providers/): the login is tested "
                    "before anything is saved; a failure answers 400 with the server's reason. For providers "
                    "connected by signing in (connect: oauth), send only the provider: the answer (200) is the "
                    "authorize_url of its consent page, to open in a browser signed in here; the connector is "
                    "created when the sign-in comes back.",
        request=PolymorphicProxySerializer(component_name="ConnectorCreate", serializers=connector_create_requests,
                                           resource_type_field_name="provider"),
        responses={201: ConnectorSerializer, 200: AuthorizeSerializer, 400: ERRORS[400]},
    )
    def create(self, request: Request) -> Response:
        key = request.data.get("provider") if hasattr(request.data, "get") else None
        if isinstance(key, str) and key in PROVIDERS and isinstance(connect_method(key), OAuthConnect):
            return Response(AuthorizeSerializer({"authorize_url": _authorize_url(request, key)}).data)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        key, config = data["provider"], data["config"]
        existing = accounts.same_account(request.user, key, config)
        if existing is not None:
            raise exceptions.ValidationError({"config": [
                f"You already connected this mailbox as connector {existing.pk}: change that one (PATCH)."]})
        method = connect_method(key)
        account = ProviderAccount(owner=request.user, provider=key, config=config,
                                  **{**method.account_defaults(config), **serializer.model_fields(data)})
        try:
            accounts.connect_account(account, data["credentials"])
        except ProviderError as error:
            raise _connection_failed(error) from None
        return Response(ConnectorSerializer(self._reread(account)).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer: ConnectorUpdateSerializer) -> None:
        data = serializer.validated_data
        changes = serializer.model_fields(data)
        if "config" in data:
            changes["config"] = data["config"]
        try:
            accounts.update_account(serializer.instance, changes, credentials=data.get("credentials"),
                                    enabled=data.get("enabled"), by=self.request.user)
        except accounts.CredentialsRequired as error:
            raise exceptions.ValidationError({"credentials": [str(error)]}) from None
        except ProviderError as error:
            raise _connection_failed(error) from None
        serializer.instance = self._reread(serializer.instance)

    def destroy(self, request: Request, pk: str | None = None) -> Response:
        purge = request.query_params.get("purge", "").lower() in ("true", "1", "yes")
        accounts.disconnect_account(self.get_object(), purge=purge, by=request.user)
        return Response(status=status.HTTP_202_ACCEPTED if purge else status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Sync now",
        request=SyncRequestSerializer,
        responses={202: SyncRunSerializer, **ERRORS,
                   409: OpenApiResponse(SyncConflictSerializer, description="A run is already queued or running.")},
    )
    @action(detail=True, methods=["post"])
    def sync(self, request: Request, pk: str | None = None) -> Response:
        account = self.get_object()
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            run = request_sync(account, **serializer.validated_data)
        except SyncInProgress as busy:
            return Response({"error": {"code": "sync_in_progress", "message": str(busy),
                                       "run": SyncRunSerializer(busy.run).data}}, status=status.HTTP_409_CONFLICT)
        except NotSyncable as error:
            raise Refused(str(error), code="not_syncable") from None
        except ValueError as error:
            raise exceptions.ValidationError({"non_field_errors": [str(error)]}) from None
        return Response(SyncRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(summary="Sync health and progress", responses={200: ConnectorStatusSerializer, 404: ERRORS[404]})
    @action(detail=True, methods=["get"], url_path="status")
    def sync_status(self, request: Request, pk: str | None = None) -> Response:
        return Response(ConnectorStatusSerializer(self.get_object()).data)

    @extend_schema(
        summary="Unlock a stuck sync (staff)",
        description="Clears the account's claim and marks its running run abandoned.",
        request=None,
        responses={200: UnlockSerializer, 403: OpenApiResponse(ErrorSerializer, description="Staff only."),
                   404: ERRORS[404]},
    )
    @action(detail=True, methods=["post"])
    def unlock(self, request: Request, pk: str | None = None) -> Response:
        account = self.get_object()  # first: another user's connector is a 404, as everywhere
        if not request.user.is_staff:
            raise exceptions.PermissionDenied("Only staff can unlock a sync.")
        abandoned = accounts.unlock_account(account, by=request.user)
        account = self._reread(account)
        account.abandoned_runs = abandoned
        return Response(UnlockSerializer(account).data)

    @extend_schema(summary="The connector's sync runs", responses={200: SyncRunSerializer(many=True),
                                                                   404: ERRORS[404]})
    @action(detail=True, methods=["get"], url_path="sync-runs")
    def sync_runs(self, request: Request, pk: str | None = None) -> Response:
        runs = SyncRun.objects.filter(account=self.get_object())
        page = self.paginate_queryset(runs)
        return self.get_paginated_response(SyncRunSerializer(page, many=True).data)


@extend_schema_view(
    list=extend_schema(summary="Sync runs of your connectors", parameters=[
        OWNER_PARAMETER,
        OpenApiParameter("connector", OpenApiTypes.INT, description="Only the runs of this connector."),
        OpenApiParameter("status", OpenApiTypes.STR, enum=SyncRun.Status.values,
                         description="Only runs in this status."),
    ]),
    retrieve=extend_schema(summary="One sync run", responses={200: SyncRunSerializer, 404: ERRORS[404]}),
)
class SyncRunViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = SyncRunSerializer
    schema = DocumentedErrorsSchema()

    def get_queryset(self) -> QuerySet[SyncRun]:
        if getattr(self, "swagger_fake_view", False):  # the schema generator: no user
            return SyncRun.objects.none()
        runs = owner_scoped(SyncRun.objects.all(), self.request, "account__owner")
        connector = id_parameter(self.request, "connector")
        if connector is not None:
            runs = runs.filter(account_id=connector)
        wanted = self.request.query_params.get("status")
        if wanted is not None:
            if wanted not in SyncRun.Status.values:
                raise exceptions.ValidationError({"status": [f"One of: {', '.join(SyncRun.Status.values)}."]})
            runs = runs.filter(status=wanted)
        return runs


def _known(key: str) -> str:
    if key not in PROVIDERS:
        raise exceptions.NotFound(f"No provider {key!r}.")
    return key


def _provider(key: str) -> dict[str, Any]:
    cls, method = provider_class(key), connect_method(key)
    return {"key": key, "display_name": PROVIDERS[key][0], "capabilities": sorted(cls.capabilities),
            "connect": method.kind, "configured": method.is_configured(), "fields": method.fields(),
            "instructions": method.instructions}


@extend_schema_view(
    list=extend_schema(summary="The providers and how each connects"),
    retrieve=extend_schema(summary="One provider", responses={200: ProviderSerializer, 404: ERRORS[404]}),
)
class ProviderViewSet(viewsets.GenericViewSet):
    """What can be connected, and how (the Connections page reads the same)."""

    serializer_class = ProviderSerializer
    pagination_class = None
    schema = DocumentedErrorsSchema()
    lookup_field = "key"
    lookup_value_regex = "[a-z0-9_]+"

    def get_queryset(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [_provider(key) for key in PROVIDERS]

    def list(self, request: Request) -> Response:
        return Response(ProviderSerializer(self.get_queryset(), many=True).data)

    def retrieve(self, request: Request, key: str) -> Response:
        return Response(ProviderSerializer(_provider(_known(key))).data)

    @extend_schema(
        summary="Start connecting by signing in (OAuth providers)",
        request=None,
        responses={200: AuthorizeSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    def authorize(self, request: Request, key: str) -> Response:
        method = connect_method(_known(key))
        if not isinstance(method, OAuthConnect):
            raise exceptions.ValidationError({"provider": [
                f"{PROVIDERS[key][0]} accounts are not connected by signing in. "
                + (method.instructions or "Use POST /api/v1/connectors/.")]})
        return Response(AuthorizeSerializer({"authorize_url": _authorize_url(request, key)}).data)


def _authorize_url(request: Request, key: str) -> str:
    """The consent page URL of the OAuth provider ``key``, for the signed-in user (400 if unconfigured)."""
    method = connect_method(key)
    assert isinstance(method, OAuthConnect)
    if not method.is_configured():
        raise exceptions.ValidationError({"provider": [not_configured(key)]})
    return method.start(request)
