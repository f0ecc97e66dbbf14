from django.contrib import admin

from contacts.models import Company, Contact, ContactIdentifier


@admin.register(Company)
class CompanyAdmin(admin.ModelAdmin):
    list_display = ["name", "domain", "created_at"]
    search_fields = ["name", "domain"]
    date_hierarchy = "created_at"
    show_full_result_count = False


class ContactIdentifierInline(admin.TabularInline):
    model = ContactIdentifier
    extra = 0


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    list_display = ["__str__", "company", "created_from", "created_at"]
    list_filter = ["created_from"]
    list_select_related = ["company"]
    search_fields = ["name", "=identifiers__value", "company__name"]
    autocomplete_fields = ["company"]
    date_hierarchy = "created_at"
    inlines = [ContactIdentifierInline]
    show_full_result_count = False


@admin.register(ContactIdentifier)
class ContactIdentifierAdmin(admin.ModelAdmin):
    list_display = ["value", "kind", "contact"]
    list_filter = ["kind"]
    list_select_related = ["contact"]
    search_fields = ["value"]
    autocomplete_fields = ["contact"]
    show_full_result_count = False
