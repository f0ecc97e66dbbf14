from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from automation import services
from automation.models import AccountAutomation, AutomationPreferences, Suggestion, Task, Trigger, WebhookDelivery
from automation.triggers import services as triggers
from automation.triggers.conditions import clean_conditions, type_error
from automation.triggers.outbound import literal_refusal


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


class TriggerForm(forms.ModelForm):
    """The admin's trigger form: the API's checks on type, conditions and URL; the secret is write-only."""

    url = forms.URLField(required=False, max_length=2000, assume_scheme="https")
    new_secret = forms.CharField(required=False, min_length=16, max_length=200, widget=forms.PasswordInput,
                                 help_text="Sets (or rotates) the signing secret. Never shown back: see the hint.")

    class Meta:
        model = Trigger
        fields = ["owner", "name", "connector", "enabled", "type", "conditions", "action", "url", "task_template",
                  "include_backfill"]

    def clean_type(self) -> str:
        value = self.cleaned_data["type"]
        problem = type_error(value)
        if problem:
            raise forms.ValidationError(problem)
        return value

    def clean_conditions(self) -> dict:
        cleaned, errors = clean_conditions(self.cleaned_data.get("conditions"))
        if errors:
            raise forms.ValidationError([f"{name}: {'; '.join(messages)}" for name, messages in errors.items()])
        return cleaned

    def clean_url(self) -> str:
        url = self.cleaned_data.get("url", "")
        problem = literal_refusal(url) if url else None
        if problem:
            raise forms.ValidationError(problem)
        return url

    def save(self, commit: bool = True) -> Trigger:
        trigger = super().save(commit=False)
        if self.cleaned_data.get("new_secret"):
            trigger.set_secret(self.cleaned_data["new_secret"])
        if commit:
            trigger.save()
        return trigger


@admin.register(Trigger)
class TriggerAdmin(admin.ModelAdmin):
    form = TriggerForm
    list_display = ["name", "owner", "connector", "type", "action", "enabled", "include_backfill", "created_at"]
    list_filter = ["enabled", "type", "action", "include_backfill"]
    search_fields = ["name", "url"]
    raw_id_fields = ["owner", "connector"]
    readonly_fields = ["secret_hint", "created_at", "updated_at"]
    list_select_related = ["owner", "connector"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["__str__", "trigger", "event", "status", "attempts", "response_code", "duration_ms",
                    "created_at", "delivered_at"]
    list_filter = ["status", "event"]
    search_fields = ["trigger__name"]
    raw_id_fields = ["trigger", "communication"]
    readonly_fields = ["trigger", "communication", "event", "status", "attempts", "attempt_log", "response_code",
                       "duration_ms", "error", "next_attempt_at", "claimed_at", "delivered_at", "created_at",
                       "updated_at"]
    list_select_related = ["trigger"]
    actions = ["redeliver_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # deliveries are made by triggers firing

    @admin.action(description="Redeliver the selected finished deliveries")
    def redeliver_selected(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        done = 0
        for delivery in queryset:
            try:
                triggers.redeliver(delivery)
                done += 1
            except triggers.NotFinished:
                pass
        self.message_user(request, f"Queued {done} redelivery(ies); {queryset.count() - done} still under way.")
