"""Strict environment readers: a bad value stops start-up with a message naming the variable.

django-environ parses, these wrappers make sure that garbage (``DEBUG=yes please``)
never silently becomes ``False``.
"""
from __future__ import annotations

from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off"}


class StrictEnv:
    """Reads typed settings from the process environment (and .env) or fails loudly."""

    def __init__(self, env: environ.Env) -> None:
        self.env = env

    def raw(self, name: str) -> str | None:
        """The stripped value, or None when unset or empty (an empty line in .env means "default")."""
        value = self.env.str(name, default=None)
        value = None if value is None else value.strip()
        return value or None

    def str(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def bool(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() in TRUE_WORDS:
            return True
        if value.lower() in FALSE_WORDS:
            return False
        raise ImproperlyConfigured(f"{name} must be true or false, got {value!r}")

    def int(self, name: str, default: int, minimum: int | None = None) -> int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be a whole number, got {value!r}") from None
        if minimum is not None and number < minimum:
            raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {number}")
        return number

    def float(self, name: str, default: float, minimum: float | None = None) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None
        if number != number or (minimum is not None and number < minimum):  # NaN, or below the minimum
            raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value!r}")
        return number

    def list(self, name: str, default: list[str]) -> list[str]:
        value = self.raw(name)
        if value is None:
            return list(default)
        return [item.strip() for item in value.split(",") if item.strip()]

    def db(self, name: str, default: str) -> dict[str, Any]:
        value = self.raw(name) or default
        try:
            return environ.Env.db_url_config(value)
        except Exception as error:  # environ raises several types for bad URLs
            raise ImproperlyConfigured(f"{name} is not a usable database URL: {error}") from None
