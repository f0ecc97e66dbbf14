"""Forms of the Suggestions page and of its settings page."""
from __future__ import annotations

import zoneinfo
from functools import cache
from typing import Any

from django import forms
from django.conf import settings

from automation import services
from automation.models import AutomationPreferences, Priority


class ApproveForm(forms.Form):
    title = forms.CharField(max_length=200, required=False)
    due = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    priority = forms.ChoiceField(choices=[("", "As suggested"), *Priority.choices], required=False)


class DismissForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False)


class ApproveAboveForm(forms.Form):
    min_confidence = forms.FloatField(min_value=0.0, max_value=1.0, label="Approve all at or above")


# ------------------------------------------------------------------------------------ settings page

AUTO_APPROVE_OFF = 1.01  # a threshold above any confidence: nothing becomes a task on its own


@cache
def time_zone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(zoneinfo.available_timezones())]


class PreferencesForm(forms.Form):
    """A user's AutomationPreferences as the settings page asks for them: auto-approve as
    server default / at or above a confidence / never, and a time zone (blank: the server's)."""

    DEFAULT, AT, NEVER = "default", "at", "never"

    auto_approve = forms.ChoiceField(widget=forms.RadioSelect, label="Auto-approve")
    threshold = forms.FloatField(
        required=False, min_value=0.0, max_value=1.0, label="Confidence",
        widget=forms.NumberInput(attrs={"min": "0", "max": "1", "step": "0.01", "inputmode": "decimal"}),
        error_messages={"min_value": "Give a confidence from 0 to 1, e.g. 0.9.",
                        "max_value": "Give a confidence from 0 to 1, e.g. 0.9.",
                        "invalid": "Give a confidence from 0 to 1, e.g. 0.9."})
    time_zone = forms.ChoiceField(required=False, label="Time zone",
                                  error_messages={"invalid_choice": "%(value)s is not a time zone in the list."})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["auto_approve"].choices = [
            (self.DEFAULT, f"Server default ({settings.SUGGESTIONS_AUTO_APPROVE_THRESHOLD:.2f})"),
            (self.AT, "At or above a confidence of"),
            (self.NEVER, "Never: every suggestion waits for me"),
        ]
        self.fields["time_zone"].choices = [("", f"Server default ({settings.TIME_ZONE})"), *time_zone_choices()]

    @classmethod
    def initial_for(cls, row: AutomationPreferences | None) -> dict[str, Any]:
        """The form's initial data from the user's stored row (None: never saved)."""
        threshold = row.auto_approve_threshold if row is not None else None
        if threshold is None:
            choice = cls.DEFAULT
        elif threshold > 1:
            choice, threshold = cls.NEVER, None
        else:
            choice = cls.AT
        return {"auto_approve": choice, "threshold": threshold, "time_zone": row.time_zone if row else ""}

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("auto_approve") != self.AT:
            # The number belongs to "at or above" only: what is left in it otherwise is no error.
            self.errors.pop("threshold", None)
            data["threshold"] = None
        elif data.get("threshold") is None and "threshold" not in self.errors:
            self.add_error("threshold", "Give a confidence from 0 to 1, e.g. 0.9, or choose another option.")
        return data

    @property
    def auto_approve_threshold(self) -> float | None:
        """What to store: None for the server default, above 1 for never (valid forms only)."""
        return {self.DEFAULT: None, self.NEVER: AUTO_APPROVE_OFF}.get(
            self.cleaned_data["auto_approve"], self.cleaned_data["threshold"])


class AccountSwitchesForm(forms.Form):
    """One account's switches. Write-back is disabled (its posted value ignored) for a provider
    that cannot write back."""

    suggestions_enabled = forms.BooleanField(required=False, label="Suggest tasks from new messages")
    write_back = forms.BooleanField(required=False, label="Mark read at the provider when a task is done")

    def __init__(self, *args: Any, row: services.AccountSettings, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"suggestions_enabled": row.suggestions_enabled, "write_back": row.write_back})
        kwargs.setdefault("auto_id", f"id_%s_{row.account.pk}")
        super().__init__(*args, **kwargs)
        self.row = row
        if not row.can_write_back:
            self.fields["write_back"].disabled = True
            self.fields["write_back"].help_text = f"Not available for {row.account.get_provider_display()} accounts."
