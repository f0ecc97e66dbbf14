from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from automation import services
from automation.models import AccountAutomation, AutomationPreferences, Suggestion, Task


@admin.register(Suggestion)
class SuggestionAdmin(admin.ModelAdmin):
    list_display = ["title", "owner", "status", "confidence", "due", "priority", "engine", "created_at"]
    list_filter = ["status", "priority", "engine"]
    search_fields = ["title", "subject", "sender"]
    raw_id_fields = ["owner", "account", "communication"]
    readonly_fields = ["confidence", "reasoning", "engine", "engine_version", "subject", "sender", "snippet",
                       "sent_at", "decided_at", "created_at", "updated_at"]
    actions = ["approve_selected"]
    list_select_related = ["owner"]

    @admin.action(description="Approve the selected pending suggestions")
    def approve_selected(self, request: HttpRequest, queryset: QuerySet[Suggestion]) -> None:
        tasks = services.bulk_approve(queryset)
        self.message_user(request, f"Approved {len(tasks)} suggestion(s).")


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["title", "owner", "status", "due", "priority", "write_back", "created_at"]
    list_filter = ["status", "priority", "write_back"]
    search_fields = ["title", "description"]
    raw_id_fields = ["owner", "contact", "conversation", "communication", "suggestion"]
    readonly_fields = ["done_at", "write_back", "write_back_error", "created_at", "updated_at"]
    list_select_related = ["owner"]


@admin.register(AccountAutomation)
class AccountAutomationAdmin(admin.ModelAdmin):
    list_display = ["account", "suggestions_enabled", "write_back"]
    list_filter = ["suggestions_enabled", "write_back"]
    raw_id_fields = ["account"]


@admin.register(AutomationPreferences)
class AutomationPreferencesAdmin(admin.ModelAdmin):
    list_display = ["user", "auto_approve_threshold", "time_zone"]
    raw_id_fields = ["user"]
