"""Canonical forms of addresses, the keys that ContactIdentifier.value is unique on."""
from __future__ import annotations

import phonenumbers


def normalize_email(value: str) -> str:
    """Lower-cases and trims an e-mail address; returns "" for something that is not one."""
    value = value.strip().strip("<>").strip().lower()
    if value.count("@") != 1:
        return ""
    local, domain = value.split("@")
    if not local or not domain or " " in value:
        return ""
    return f"{local}@{domain.rstrip('.')}"


def normalize_phone(value: str, default_region: str = "US") -> str:
    """Returns the E.164 form of a phone number, or "" when it cannot be parsed as one."""
    try:
        number = phonenumbers.parse(value, None if value.strip().startswith("+") else default_region)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_possible_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def email_domain(value: str) -> str:
    return value.rpartition("@")[2]
