"""The Suggestions page: the feed of pending suggestions (approve, edit then approve, dismiss,
approve all above a confidence) and a small task list with "done"; and its settings page: the
user's preferences (auto-approve, time zone) and each account's switches (suggestions, write-back).

Thin views: forms validate, automation.services decides. Everything is looked up among the
signed-in user's own objects (404 otherwise).
"""
from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from automation import services
from automation.forms import AccountSwitchesForm, ApproveAboveForm, ApproveForm, DismissForm, PreferencesForm
from automation.models import AutomationPreferences, Suggestion, Task

FEED_SIZE = 100
TASKS_SHOWN = 50


@login_required
def suggestions(request: HttpRequest) -> HttpResponse:
    pending = list(Suggestion.objects.filter(owner=request.user, status=Suggestion.Status.PENDING)
                   .order_by("-confidence", "-id")[:FEED_SIZE])
    open_tasks = list(Task.objects.filter(owner=request.user, status=Task.Status.OPEN).order_by("due", "-id")[:TASKS_SHOWN])
    done_tasks = list(Task.objects.filter(owner=request.user, status=Task.Status.DONE).order_by("-done_at")[:10])
    return render(request, "automation/suggestions.html", {
        "pending": pending, "open_tasks": open_tasks, "done_tasks": done_tasks,
        "above_form": ApproveAboveForm(initial={"min_confidence": 0.7}),
        "threshold": services.preferences(request.user).threshold,
    })


def _pending(request: HttpRequest, pk: int) -> Suggestion:
    return get_object_or_404(Suggestion, pk=pk, owner=request.user)


@login_required
@require_POST
def approve(request: HttpRequest, pk: int) -> HttpResponse:
    suggestion = _pending(request, pk)
    form = ApproveForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The edits were not valid: " + "; ".join(
            f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()))
        return redirect("automation:suggestions")
    data = form.cleaned_data
    try:
        task = services.approve(suggestion, title=data["title"] or None, due=data["due"],
                                priority=data["priority"] or None)
    except services.AlreadyDecided:
        messages.warning(request, "That suggestion was already decided.")
    else:
        messages.success(request, f"Task created: {task.title}")
    return redirect("automation:suggestions")


@login_required
@require_POST
def dismiss(request: HttpRequest, pk: int) -> HttpResponse:
    suggestion = _pending(request, pk)
    form = DismissForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        services.dismiss(suggestion, reason)
    except services.AlreadyDecided:
        messages.warning(request, "That suggestion was already decided.")
    else:
        messages.success(request, f"Dismissed: {suggestion.title}")
    return redirect("automation:suggestions")


@login_required
@require_POST
def approve_above(request: HttpRequest) -> HttpResponse:
    form = ApproveAboveForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give a confidence from 0 to 1.")
        return redirect("automation:suggestions")
    tasks = services.bulk_approve(Suggestion.objects.filter(owner=request.user),
                                  min_confidence=form.cleaned_data["min_confidence"])
    messages.success(request, f"Approved {len(tasks)} suggestion{'s' if len(tasks) != 1 else ''}.")
    return redirect("automation:suggestions")


@login_required
@require_POST
def task_done(request: HttpRequest, pk: int) -> HttpResponse:
    task = get_object_or_404(Task, pk=pk, owner=request.user)
    services.complete(task)
    messages.success(request, f"Done: {task.title}")
    return redirect("automation:suggestions")


# ------------------------------------------------------------------------------------ settings

@login_required
def automation_settings(request: HttpRequest) -> HttpResponse:
    """The settings page; a POST here saves the preferences (each account row posts to
    account_switches). An invalid form is shown again as typed, with its errors (400)."""
    stored = AutomationPreferences.objects.filter(user=request.user).first()
    form = PreferencesForm(request.POST or None, initial=PreferencesForm.initial_for(stored))
    if request.method == "POST" and form.is_valid():
        services.save_preferences(request.user, auto_approve_threshold=form.auto_approve_threshold,
                                  time_zone=form.cleaned_data["time_zone"])
        messages.success(request, "Saved.")
        return redirect("automation:settings")
    return render(request, "automation/settings.html", {
        "form": form,
        "account_forms": [AccountSwitchesForm(row=row) for row in services.account_settings(request.user)],
    }, status=400 if form.is_bound else 200)


def _account_row(request: HttpRequest, pk: int) -> services.AccountSettings:
    """The settings of one of the user's (not disabled) accounts; 404 for any other."""
    for row in services.account_settings(request.user):
        if row.account.pk == pk:
            return row
    raise Http404("No such account of yours.")


@login_required
@require_POST
def account_switches(request: HttpRequest, pk: int) -> HttpResponse:
    form = AccountSwitchesForm(request.POST, row=_account_row(request, pk))
    if form.is_valid():  # two checkboxes; a disabled write-back keeps its initial value (off)
        services.save_account_settings(form.row.account, **form.cleaned_data)
        messages.success(request, f"Saved: {form.row.account}.")
        blocker = _account_row(request, pk).write_back_blocker
        if blocker:
            messages.warning(request, blocker)
    else:
        messages.error(request, f"Not saved: {form.errors.as_text()}")
    return redirect(reverse("automation:settings") + f"#account-{pk}")
