"""REST API of contacts and companies: organisation-wide, read by every user, names editable.

Identifiers (addresses) come from synced mail and are read-only here; so is a company's
domain, which is how new addresses find their company.
"""
from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from contacts.models import Company, Contact, ContactIdentifier
from crmext.api_schema import DocumentedErrorsSchema


class IdentifierSerializer(serializers.ModelSerializer):
    class Meta:
        model = ContactIdentifier
        fields = ["kind", "value"]
        read_only_fields = fields


class ContactSerializer(serializers.ModelSerializer):
    company_name = serializers.SerializerMethodField()
    identifiers = IdentifierSerializer(many=True, read_only=True)

    class Meta:
        model = Contact
        fields = ["id", "name", "company", "company_name", "identifiers", "created_from", "created_at"]
        read_only_fields = ["created_from", "created_at"]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_company_name(self, contact: Contact) -> str | None:
        return contact.company.name if contact.company else None


class CompanySerializer(serializers.ModelSerializer):
    class Meta:
        model = Company
        fields = ["id", "name", "domain", "created_at"]
        read_only_fields = ["domain", "created_at"]


class ContactFilters(serializers.Serializer):
    q = serializers.CharField(required=False, max_length=200, help_text="Part of the name or of an address.")
    # Bounded: an id past 64 bits would reach the database and fail there (a 500).
    company = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)


class CompanyFilters(serializers.Serializer):
    q = serializers.CharField(required=False, max_length=200, help_text="Part of the name or of the domain.")


def _validated(filters_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    filters = filters_class(data=request.query_params)
    filters.is_valid(raise_exception=True)
    return filters.validated_data


class _ReadAndPatch(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin,
                    viewsets.GenericViewSet):
    http_method_names = ["get", "patch", "head", "options"]
    schema = DocumentedErrorsSchema()


class ContactViewSet(_ReadAndPatch):
    serializer_class = ContactSerializer

    def get_queryset(self) -> QuerySet:
        contacts = Contact.objects.select_related("company").prefetch_related("identifiers")
        if self.action != "list":
            return contacts
        filters = _validated(ContactFilters, self.request)
        if "company" in filters:
            contacts = contacts.filter(company_id=filters["company"])
        if filters.get("q"):
            with_address = ContactIdentifier.objects.filter(value__icontains=filters["q"]).values("contact_id")
            contacts = contacts.filter(Q(name__icontains=filters["q"]) | Q(pk__in=with_address))
        return contacts

    @extend_schema(parameters=[ContactFilters])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)


class CompanyViewSet(_ReadAndPatch):
    serializer_class = CompanySerializer

    def get_queryset(self) -> QuerySet:
        companies = Company.objects.all()
        if self.action != "list":
            return companies
        text = _validated(CompanyFilters, self.request).get("q")
        return companies.filter(Q(name__icontains=text) | Q(domain__icontains=text)) if text else companies

    @extend_schema(parameters=[CompanyFilters])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)
