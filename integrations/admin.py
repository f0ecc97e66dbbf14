from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import URLPattern, path, reverse

from conversations.admin import with_content_visibility
from conversations.permissions import HIDDEN
from crmext.pagination import EstimatedCountPaginator
from integrations.accounts import enable_accounts
from integrations.models import OAuthState, ProviderAccount, QuarantinedMessage, SyncRun
from integrations.providers.gmail.enroll import BadAddresses, BadKey, Enrolled, enroll, load_key, parse_addresses
from integrations.quarantine import retry
from integrations.tasks import NotSyncable, SyncInProgress, request_sync


class SyncRunInline(admin.TabularInline):
    model = SyncRun
    extra = 0
    fields = ["kind", "status", "started_at", "finished_at", "fetched", "created", "skipped", "failed", "error"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True
    ordering = ["-started_at"]
    max_num = 0  # history only: no add row

    def get_queryset(self, request: HttpRequest):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).order_by("-started_at")


class EnrollGmailForm(forms.Form):
    """Domain-wide delegation: the service account's key file, the owner, the mailboxes."""

    key_file = forms.FileField(label="Service account key (JSON)",
                               help_text="The key file of a service account whose client id the Workspace admin "
                                         "granted gmail.readonly for the domain. It is stored encrypted, never shown.")
    owner = forms.ModelChoiceField(queryset=get_user_model().objects.order_by("username"),
                                   help_text="The user who owns the accounts (and sees their mail).")
    users = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}),
                            help_text="Mailboxes to enroll, separated by commas or new lines.")

    def clean_key_file(self) -> dict[str, Any]:
        upload = self.cleaned_data["key_file"]
        if upload.size > 64 * 1024:
            raise forms.ValidationError("This file is too big to be a service account key.")
        try:
            return load_key(upload.read())
        except BadKey as error:
            raise forms.ValidationError(str(error)) from None

    def clean_users(self) -> list[str]:
        try:
            return parse_addresses(self.cleaned_data["users"])
        except BadAddresses as error:
            raise forms.ValidationError(str(error)) from None


@admin.register(ProviderAccount)
class ProviderAccountAdmin(admin.ModelAdmin):
    list_display = ["__str__", "owner", "provider", "status", "last_synced_at", "next_sync_at"]
    list_filter = ["provider", "status"]
    list_select_related = ["owner"]
    search_fields = ["display_name", "external_address", "owner__username", "owner__email"]
    autocomplete_fields = ["owner"]
    # credentials is editable=False and never listed: secrets are not shown, not even masked.
    readonly_fields = ["has_credentials", "status", "last_error", "sync_cursor", "backfill_state", "last_synced_at",
                       "claimed_at", "consecutive_failures", "consecutive_resyncs", "created_at", "updated_at"]
    fields = ["owner", "provider", "display_name", "external_address", "config", "has_credentials", "status",
              "last_error", "sync_interval", "next_sync_at", "last_synced_at", "claimed_at", "consecutive_failures",
              "consecutive_resyncs", "sync_cursor", "backfill_state", "created_at", "updated_at"]
    inlines = [SyncRunInline]
    actions = ["sync_now", "enable", "enroll_gmail"]

    def get_readonly_fields(self, request: HttpRequest, obj: ProviderAccount | None = None) -> list[str]:
        # Connection settings (host, port, security, username, path) are never edited here: a
        # staff user could otherwise send the owner's stored password to a server of theirs, or
        # import any file the server can read. The owner reconnects through the app instead.
        readonly = list(self.readonly_fields)
        return readonly if obj is None else [*readonly, "owner", "provider", "config"]

    def save_model(self, request: HttpRequest, obj: ProviderAccount, form, change: bool) -> None:  # type: ignore[no-untyped-def]
        if not change:
            super().save_model(request, obj, form, change)
            return
        # Only what the form changed: a full save from this page would overwrite the claim,
        # cursor and backfill position of a sync running meanwhile.
        obj.save(update_fields=[*form.changed_data, "updated_at"])

    @admin.action(description="Re-enable (after fixing what disabled it)", permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[ProviderAccount]) -> None:
        count = enable_accounts(queryset)
        self.message_user(request, f"Re-enabled {count} account(s); they sync on the next scheduler tick.")

    @admin.action(description="Sync now", permissions=["change"])
    def sync_now(self, request: HttpRequest, queryset: QuerySet[ProviderAccount]) -> None:
        # The same service as the API and the pages: a queued run, never two at once.
        queued = busy = blocked = 0
        for account in queryset:
            try:
                request_sync(account, kind="delta")
                queued += 1
            except SyncInProgress:
                busy += 1
            except NotSyncable:
                blocked += 1
        self.message_user(request, f"Queued a sync of {queued} account(s).", messages.SUCCESS)
        if busy:
            self.message_user(request, f"{busy} account(s) already have a sync queued or running.", messages.INFO)
        if blocked:
            self.message_user(
                request, f"{blocked} account(s) need attention first (disabled or re-authentication required).",
                messages.WARNING,
            )

    # --- Gmail domain-wide delegation: a form page, reached from the changelist or the action

    def get_urls(self) -> list[URLPattern]:
        return [path("enroll-gmail/", self.admin_site.admin_view(self.enroll_gmail_view),
                     name="integrations_provideraccount_enroll_gmail"), *super().get_urls()]

    @admin.action(description="Enroll Gmail mailboxes (service account with domain-wide delegation)…",
                  permissions=["add"])
    def enroll_gmail(self, request: HttpRequest, queryset: QuerySet[ProviderAccount]) -> HttpResponseRedirect:
        # The form, filled in with the selected Gmail accounts (to move them to a service account
        # or a new key); new mailboxes are typed in there.
        selected = list(queryset.filter(provider="gmail").values_list("owner_id", "external_address"))
        owners = {owner for owner, _address in selected}
        query = {"users": ", ".join(address for _owner, address in selected if address)}
        if len(owners) == 1:
            query["owner"] = str(owners.pop())
        return HttpResponseRedirect(f"{reverse('admin:integrations_provideraccount_enroll_gmail')}?{urlencode(query)}")

    def enroll_gmail_view(self, request: HttpRequest) -> HttpResponse:
        if not (self.has_add_permission(request) and self.has_change_permission(request)):
            raise PermissionDenied
        results: list[Enrolled] = []
        if request.method == "POST":
            form = EnrollGmailForm(request.POST, request.FILES)
            if form.is_valid():
                data = form.cleaned_data
                results = enroll(data["key_file"], data["owner"], data["users"])
                enrolled = sum(result.ok for result in results)
                if enrolled:
                    self.message_user(request, f"Enrolled {enrolled} Gmail mailbox(es).", messages.SUCCESS)
                if enrolled < len(results):
                    self.message_user(request, f"{len(results) - enrolled} mailbox(es) were refused; see below.",
                                      messages.WARNING)
                # The form comes back without the key: it is never sent back to the browser.
                form = EnrollGmailForm(initial={"owner": data["owner"].pk,
                                                "users": ", ".join(r.address for r in results if not r.ok)})
        else:
            form = EnrollGmailForm(initial={key: request.GET[key] for key in ("owner", "users") if key in request.GET})
        return render(request, "admin/integrations/provideraccount/enroll_gmail.html", {
            **self.admin_site.each_context(request), "opts": self.model._meta, "title": "Enroll Gmail mailboxes",
            "form": form, "results": results,
        })

    @admin.display(boolean=True, description="Credentials stored")
    def has_credentials(self, obj: ProviderAccount) -> bool:
        return bool(obj.credentials)


@admin.register(SyncRun)
class SyncRunAdmin(admin.ModelAdmin):
    list_display = ["account", "kind", "status", "started_at", "duration", "fetched", "created", "updated",
                    "skipped", "failed", "api_calls"]
    list_filter = ["status", "kind"]
    list_select_related = ["account"]
    search_fields = ["account__display_name", "account__external_address", "error"]
    date_hierarchy = "started_at"
    raw_id_fields = ["account"]
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(QuarantinedMessage)
class QuarantinedMessageAdmin(admin.ModelAdmin):
    """Messages that failed to store. Read-only; "Retry" stores them again once the cause is fixed."""

    list_display = ["provider_message_id", "account", "summary", "short_reason", "attempts", "truncated",
                    "last_attempt_at"]
    list_filter = ["truncated", "account__provider"]
    list_select_related = ["account"]
    search_fields = ["=provider_message_id", "=ref", "account__display_name", "account__external_address"]
    raw_id_fields = ["account"]
    fields = ["account", "provider_message_id", "ref", "summary", "reason", "raw_size", "truncated", "attempts",
              "created_at", "last_attempt_at"]
    readonly_fields = fields
    actions = ["retry_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        # Retrying writes communications: it takes the change permission, though no field of a
        # quarantined message can be edited.
        return request.user.has_perm("integrations.change_quarantinedmessage")

    @admin.action(description="Retry storing the selected messages", permissions=["retry"])
    def retry_selected(self, request: HttpRequest, queryset: QuerySet[QuarantinedMessage]) -> None:
        stored, failing = retry(queryset.select_related("account", "account__owner"))
        if stored:
            self.message_user(request, f"Stored {stored} message(s); they left the quarantine.", messages.SUCCESS)
        if failing:
            self.message_user(request, f"{failing} message(s) still fail to store; see their reason.", messages.WARNING)

    @admin.display(description="Message")
    def summary(self, obj: QuarantinedMessage) -> str:
        # The copy is the message itself: its sender and subject show only to readers of its content.
        if not getattr(obj, "content_visible", False):
            return HIDDEN
        sender = (obj.copy.get("sender") or {}).get("value", "")
        return f"{sender}: {obj.copy.get('subject') or '(no subject)'}"[:200]

    @admin.display(description="Reason")
    def short_reason(self, obj: QuarantinedMessage) -> str:
        return obj.reason[:120]

    def get_queryset(self, request: HttpRequest) -> QuerySet[QuarantinedMessage]:
        return with_content_visibility(super().get_queryset(request), request, "account__owner_id")


@admin.register(OAuthState)
class OAuthStateAdmin(admin.ModelAdmin):
    """Sign-ins in progress or finished (pruned after a day). Read-only; the state and the PKCE
    verifier are never shown."""

    list_display = ["provider", "user", "account", "created_at", "used_at"]
    list_filter = ["provider"]
    list_select_related = ["user", "account"]
    fields = ["provider", "user", "account", "created_at", "used_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
