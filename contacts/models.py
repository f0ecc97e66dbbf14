"""People and organisations, shared across the whole organisation (not per user)."""
from __future__ import annotations

from django.db import models


class Company(models.Model):
    name = models.CharField(max_length=200)
    domain = models.CharField(max_length=253, unique=True, help_text="Lower-cased e-mail domain.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "companies"
        ordering = ["name"]
        indexes = [models.Index(fields=["name"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.domain})"


class Contact(models.Model):
    class CreatedFrom(models.TextChoices):
        MANUAL = "manual", "Entered by hand"
        EMAIL = "email", "E-mail participant"
        PHONE = "phone", "Phone participant"
        IMPORT = "import", "Import"

    name = models.CharField(max_length=200, blank=True)
    company = models.ForeignKey(
        Company, null=True, blank=True, on_delete=models.SET_NULL, related_name="contacts"
    )
    created_from = models.CharField(max_length=10, choices=CreatedFrom.choices, default=CreatedFrom.MANUAL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        indexes = [models.Index(fields=["name"]), models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return self.name or f"Contact #{self.pk}"


class ContactIdentifier(models.Model):
    """One normalised address of a contact: a lower-cased e-mail or an E.164 phone number."""

    class Kind(models.TextChoices):
        EMAIL = "email", "E-mail"
        PHONE = "phone", "Phone"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="identifiers")
    kind = models.CharField(max_length=5, choices=Kind.choices)
    value = models.CharField(max_length=320, unique=True)

    class Meta:
        ordering = ["value"]

    def __str__(self) -> str:
        return self.value
