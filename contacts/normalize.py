"""Canonical forms of addresses, the keys that ContactIdentifier.value is unique on."""
from __future__ import annotations

import re

import phonenumbers

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")

# RFC 5321 §4.5.3.1: the longest local part, domain and domain label a server must accept.
# Anything longer is no deliverable address: it stays a participant's raw text and never
# becomes a contact or a company (and never reaches a bounded column).
MAX_LOCAL_PART = 64
MAX_DOMAIN = 253
MAX_LABEL = 63
MAX_EMAIL = 320


def normalize_email(value: str) -> str:
    """Lower-cases and trims an e-mail address; returns "" for something that is not one.

    Addresses over the RFC 5321 limits (local part 64, domain 253, label 63, total 320)
    are not addresses either.
    """
    value = value.strip().strip("<>").strip().lower()
    if value.count("@") != 1 or len(value) > MAX_EMAIL + 1:  # +1: a trailing root dot
        return ""
    local, domain = value.split("@")
    domain = domain.rstrip(".")
    if not local or not domain or " " in value:
        return ""
    if len(local) > MAX_LOCAL_PART or len(domain) > MAX_DOMAIN:
        return ""
    if any(not label or len(label) > MAX_LABEL for label in domain.split(".")):
        return ""
    return f"{local}@{domain}"


def is_valid_email(value: str) -> bool:
    """True for an address that normalize_email keeps as it is (already normalised and within limits)."""
    return bool(value) and normalize_email(value) == value


def is_valid_phone(value: str) -> bool:
    """True for an E.164 number ("+" and up to 15 digits), the only phone form stored as an identifier."""
    return _E164.fullmatch(value) is not None


def normalize_phone(value: str, default_region: str = "US") -> str:
    """Returns the E.164 form of a phone number, or "" when it cannot be parsed as one."""
    if len(value) > 64:  # no phone number is this long; phonenumbers would refuse it slowly
        return ""
    try:
        number = phonenumbers.parse(value, None if value.strip().startswith("+") else default_region)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_possible_number(number):
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def email_domain(value: str) -> str:
    return value.rpartition("@")[2]
