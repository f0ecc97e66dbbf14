"""The Connections pages: accounts with their health and live sync progress, connecting,
reconnecting, sharing, disconnecting, and mbox uploads.

Thin views: forms validate, integrations.accounts and integrations.tasks.request_sync do
the work. Every account is looked up among the signed-in user's own (404 otherwise).
"""
from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.timesince import timesince
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_POST

from integrations import grants
from integrations.accounts import disconnect_account, update_account
from integrations.api.serializers import current_run
from integrations.card_extras import attach_card_extras
from integrations.forms import (
    ConnectForm,
    DisconnectForm,
    ImportDirUploadHandler,
    MboxUploadForm,
    ReconnectForm,
    SharingForm,
    SyncRequestForm,
)
from integrations.models import ProviderAccount, SyncRun
from integrations.providers.base import Capability
from integrations.providers.connect import ConnectMethod, OAuthConnect, OAuthError, connect_method
from integrations.providers.registry import PROVIDERS, provider_class
from integrations.tasks import ACTIVE, NotSyncable, SyncInProgress, request_sync

RUNS_SHOWN = 50


def _accounts(request: HttpRequest) -> QuerySet[ProviderAccount]:
    """The user's accounts, with their queued or running syncs."""
    return ProviderAccount.objects.filter(owner=request.user).prefetch_related(
        Prefetch("sync_runs", queryset=SyncRun.objects.filter(status__in=ACTIVE).order_by("-id"),
                 to_attr="active_runs"),
    )


def _account(request: HttpRequest, pk: int) -> ProviderAccount:
    return get_object_or_404(_accounts(request), pk=pk)


def _method(provider: str) -> ConnectMethod:
    try:
        return connect_method(provider)
    except LookupError:
        raise Http404(f"No provider {provider!r}") from None


def _describe(account: ProviderAccount) -> ProviderAccount:
    """Adds what the templates show: the connect method, the current run and the sharing form."""
    account.method = _method(account.provider)
    account.provider_label = PROVIDERS.get(account.provider, (account.provider,))[0]
    account.unavailable = not account.method.is_configured()
    account.current_run = current_run(account)
    account.sharing_form = SharingForm(instance=account, auto_id=f"id_%s_{account.pk}")
    now = timezone.now()
    account.retry_pending = account.next_sync_at is not None and account.next_sync_at > now
    if account.last_synced_at is not None:
        account.last_sync_ago = ("just now" if now - account.last_synced_at < dt.timedelta(minutes=1)
                                 else f"{timesince(account.last_synced_at, now)} ago")
    return account


# The health labels, for the progress script that updates badges.
STATUS_LABELS = dict(ProviderAccount.Status.choices)


def _back(request: HttpRequest, default: str) -> HttpResponse:
    """Back to the page the form was on (a local URL only), else ``default``."""
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        target = default
    return redirect(target)


@login_required
def connections(request: HttpRequest) -> HttpResponse:
    accounts = [_describe(account) for account in _accounts(request)]
    attach_card_extras(request, accounts)
    options = []
    for key, (label, _path) in PROVIDERS.items():
        method = _method(key)
        if method.kind != "none":
            options.append({"key": key, "label": label, "method": method, "available": method.is_configured()})
    return render(request, "integrations/connections.html", {"accounts": accounts, "options": options,
                                                              "status_labels": STATUS_LABELS})


@login_required
def connect(request: HttpRequest, provider: str) -> HttpResponse:
    """Connects a new account of ``provider`` the way it declares: a form, a sign-in redirect, or an upload."""
    method = _method(provider)
    if method.kind == "upload":
        return redirect("integrations:upload")
    if method.kind not in ("credentials", "oauth"):
        raise Http404(f"{provider} accounts cannot be connected here")
    label = PROVIDERS[provider][0]
    if not method.is_configured():
        messages.warning(request, f"{label} is unavailable: its app credentials are not configured on this "
                                  "server. Ask an administrator to set them.")
        return redirect("integrations:connections")
    if method.kind == "oauth":
        if request.method != "POST":  # the redirect starts a sign-in: only from a form (CSRF-protected)
            return render(request, "integrations/connect_oauth.html", {"label": label, "provider": provider})
        return redirect(method.start(request))
    form = ConnectForm(request.POST or None, method=method, provider=provider, owner=request.user)
    if request.method == "POST" and form.is_valid() and (account := form.connect()) is not None:
        messages.success(request, f"Connected {account}. The login worked; its first sync has started.")
        _start_sync(request, account)
        return redirect("integrations:connections")
    return render(request, "integrations/connect.html", {"form": form, "label": label})


@login_required
def oauth_callback(request: HttpRequest, provider: str) -> HttpResponse:
    """Where the provider sends the user back after its consent page (any OAuth provider).

    The provider's ``finish`` checks the state, exchanges the code and saves the account; on
    an OAuthError nothing was stored and the page says why (400).
    """
    method = _method(provider)
    if not isinstance(method, OAuthConnect):
        raise Http404(f"{provider} accounts are not connected by signing in")
    label = PROVIDERS[provider][0]
    try:
        account = method.finish(request)
    except OAuthError as error:
        return render(request, "integrations/oauth_error.html",
                      {"label": label, "provider": provider, "message": str(error), "code": error.code}, status=400)
    messages.success(request, f"Connected {account}: its sync has started.")
    # The user may untick a wider permission a feature asked for (Google's granular consent).
    for missing in grants.missing(account).values():
        messages.warning(request, missing)
    _start_sync(request, account)
    return redirect("integrations:connections")


def _start_sync(request: HttpRequest, account: ProviderAccount) -> SyncRun | None:
    try:
        return request_sync(account, kind="delta")
    except (NotSyncable, SyncInProgress) as error:
        messages.info(request, str(error))
    return None


@csrf_exempt  # the upload handlers must be set before anything reads the body; csrf_protect below checks it
@login_required
def upload(request: HttpRequest) -> HttpResponse:
    """An mbox file or a Takeout archive, streamed into MBOX_IMPORT_DIR and imported by a queued sync."""
    if request.method == "POST":
        request.upload_handlers = [ImportDirUploadHandler(request)]
    return _upload(request)


@csrf_protect
def _upload(request: HttpRequest) -> HttpResponse:
    form = MboxUploadForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        for account in form.save(request.user):
            _start_sync(request, account)
            messages.success(request, f"Uploaded {account}: its import has started.")
        return redirect("integrations:connections")
    return render(request, "integrations/upload.html", {"form": form})


@login_required
def account_detail(request: HttpRequest, pk: int) -> HttpResponse:
    account = _describe(_account(request, pk))
    runs = list(account.sync_runs.order_by("-started_at", "-id")[:RUNS_SHOWN])
    return render(request, "integrations/account.html", {
        "account": account, "sync_form": SyncRequestForm(auto_id="id_sync_%s"),
        "fetches_ranges": Capability.DATE_RANGE in provider_class(account.provider).capabilities, "runs": runs, "more_runs": len(runs) == RUNS_SHOWN,
        "quarantined": account.quarantined_messages.count(),
        "settings": [(name.replace("_", " ").capitalize(), ", ".join(map(str, value)) if isinstance(value, list)
                      else value) for name, value in account.method.public_config(account.config or {}).items()],
        "status_labels": STATUS_LABELS,
    })


@login_required
@require_POST
def sync_now(request: HttpRequest, pk: int) -> HttpResponse:
    """Sync now (the delta), or from the account page a full resync or a historical date range."""
    account = _account(request, pk)
    form = SyncRequestForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(error for errors in form.errors.values() for error in errors))
        return _back(request, reverse("integrations:connections"))
    kind, since, until = form.cleaned_data["kind"], form.cleaned_data["since"], form.cleaned_data["until"]
    try:
        run = request_sync(account, kind=kind, since=since, until=until)
    except (NotSyncable, ValueError) as error:
        messages.error(request, str(error))
    except SyncInProgress as busy:
        messages.info(request, str(busy))
    else:
        run.refresh_from_db()
        if run.status == SyncRun.Status.SUCCEEDED:  # a worker ran it at once
            messages.success(request, f"Synced {account}: {run.created:,} new, {run.updated:,} updated.")
        elif run.status == SyncRun.Status.FAILED:
            messages.error(request, f"The sync of {account} failed: {run.error}")
        elif kind == "historical":
            messages.success(request, f"Fetching the mail of {account} from {since:%Y-%m-%d} until {until:%Y-%m-%d}: "
                                      "month by month, newest first, between its regular syncs.")
        elif kind == "full":
            messages.success(request, f"A full resync of {account} has started: everything is fetched again, "
                                      "and nothing is stored twice.")
        else:
            messages.success(request, f"A sync of {account} has started.")
    return _back(request, reverse("integrations:connections"))


@login_required
def reconnect(request: HttpRequest, pk: int) -> HttpResponse:
    account = _describe(_account(request, pk))
    method = account.method
    if method.kind == "upload":
        return render(request, "integrations/reconnect.html", {"account": account})
    if method.kind == "oauth":
        if request.method == "POST" and not account.unavailable:
            return redirect(method.start(request, account=account))
        return render(request, "integrations/reconnect.html", {"account": account})
    form = ReconnectForm(request.POST or None, method=method, account=account)
    if request.method == "POST" and form.is_valid() and form.reconnect() is not None:
        messages.success(request, f"Reconnected {account}: the login worked and syncing resumes.")
        return redirect("integrations:connections")
    return render(request, "integrations/reconnect.html", {"account": account, "form": form})


@login_required
@require_POST
def sharing(request: HttpRequest, pk: int) -> HttpResponse:
    account = _account(request, pk)
    form = SharingForm(request.POST)
    if form.is_valid():
        update_account(account, {"sharing": form.cleaned_data["sharing"]})
        messages.success(request, f"{account}: teammates now see {account.get_sharing_display().lower()}.")
    else:
        messages.error(request, "Choose one of the sharing levels offered.")
    return _back(request, reverse("integrations:connections"))


@login_required
def disconnect(request: HttpRequest, pk: int) -> HttpResponse:
    account = _describe(_account(request, pk))
    form = DisconnectForm(request.POST or None, initial={
        "purge": "delete" if account.status == ProviderAccount.Status.DISABLED else "keep"})
    if request.method == "POST" and form.is_valid():
        purge = form.cleaned_data["purge"]
        disconnect_account(account, purge=purge, by=request.user)
        messages.success(request, f"Disconnected {account}: its credentials were erased"
                         + (" and its messages are being deleted." if purge else "; its messages are kept."))
        return redirect("integrations:connections")
    return render(request, "integrations/disconnect.html", {"account": account, "form": form})

