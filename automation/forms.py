"""Forms of the Suggestions page."""
from __future__ import annotations

from django import forms

from automation.models import Priority


class ApproveForm(forms.Form):
    title = forms.CharField(max_length=200, required=False)
    due = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    priority = forms.ChoiceField(choices=[("", "As suggested"), *Priority.choices], required=False)


class DismissForm(forms.Form):
    reason = forms.CharField(max_length=500, required=False)


class ApproveAboveForm(forms.Form):
    min_confidence = forms.FloatField(min_value=0.0, max_value=1.0, label="Approve all at or above")
