"""An encrypted JSON field for provider credentials."""
from __future__ import annotations

import json
from typing import Any

from cryptography.fernet import InvalidToken
from django.core.exceptions import ImproperlyConfigured
from django.db import models
from encrypted_fields.fields import EncryptedFieldMixin


class EncryptedJSONField(EncryptedFieldMixin, models.TextField):
    """A dict stored as one Fernet token (the library's own JSON field leaves keys in clear text).

    Keys come from SECRET_KEY + SECRET_KEY_FALLBACKS x SALT_KEY, so rotation works by
    prepending a new key and re-saving. A token no key can read raises instead of
    returning ciphertext as if it were the credentials.
    """

    def get_prep_value(self, value: Any) -> str | None:
        if value is None:
            return None
        return self.f.encrypt(json.dumps(value, sort_keys=True).encode()).decode()

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if value is None:
            return {}
        try:
            return json.loads(self.f.decrypt(value.encode()))
        except InvalidToken:
            raise ImproperlyConfigured(
                "Stored credentials cannot be decrypted: SECRET_KEY or SALT_KEY changed without "
                "keeping the old value in SECRET_KEY_FALLBACKS / SALT_KEY"
            ) from None

    def to_python(self, value: Any) -> Any:
        if isinstance(value, dict) or value is None:
            return value or {}
        # loaddata hands back what value_to_string wrote: the encrypted token, not JSON.
        try:
            return json.loads(self.f.decrypt(value.encode()))
        except InvalidToken:
            return json.loads(value)

    def value_to_string(self, obj: models.Model) -> str:
        # Serialisation (dumpdata) must not leak the secret in clear text.
        return self.get_prep_value(self.value_from_object(obj)) or ""
