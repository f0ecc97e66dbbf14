"""How a Twilio account is connected: its account SID and the numbers to sync (settings), an
API key SID and secret or the auth token (credentials), tested with one call before saving.

The numbers are given, not picked from a list: the form of the Connections page is built
before any credentials exist, and the list of the account's numbers needs them. So they are
checked when the credentials are tested (TwilioProvider.authenticate, one IncomingPhoneNumbers
listing): a number the account does not have is refused with the list of those it has.
"""
from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from rest_framework import serializers

from contacts.normalize import normalize_phone
from integrations.providers.connect import CredentialsConnect

ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
API_KEY_SID = re.compile(r"SK[0-9a-fA-F]{32}")
WHATSAPP = "whatsapp:"


def normalized_number(value: str) -> str:
    """A configured number in E.164 (keeping a whatsapp: prefix); ValidationError if it is none."""
    text = value.strip()
    whatsapp = text.lower().startswith(WHATSAPP)
    bare = text[len(WHATSAPP):].strip() if whatsapp else text
    number = normalize_phone(bare, settings.PHONE_DEFAULT_REGION)
    if not number:
        raise serializers.ValidationError(f"{value!r} is not a phone number.")
    return f"{WHATSAPP}{number}" if whatsapp else number


class TwilioConfigSerializer(serializers.Serializer):
    account_sid = serializers.CharField(max_length=34, help_text="The Account SID (AC...), from the Twilio console.")
    numbers = serializers.ListField(
        child=serializers.CharField(max_length=64), min_length=1, max_length=50,
        help_text="The account's phone numbers to sync, in E.164 (+15551230000); write whatsapp:+15551230000 for "
                  "its WhatsApp messages. Checked against the account's incoming numbers when you connect.")

    def validate_account_sid(self, value: str) -> str:
        value = value.strip()
        if not ACCOUNT_SID.fullmatch(value):
            raise serializers.ValidationError("An Account SID is AC followed by 32 hexadecimal characters.")
        return value

    def validate_numbers(self, value: list[str]) -> list[str]:
        return list(dict.fromkeys(normalized_number(number) for number in value))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The numbers are the owner's own addresses (integrations.models.ProviderAccount.own_addresses):
        # never contacts, and they mark outbound messages.
        attrs["aliases"] = list(dict.fromkeys(n.removeprefix(WHATSAPP) for n in attrs["numbers"]))
        return attrs


class TwilioCredentialsSerializer(serializers.Serializer):
    auth_token = serializers.CharField(
        required=False, write_only=True, trim_whitespace=True, max_length=128, style={"input_type": "password"},
        help_text="The account's auth token. Needed to accept webhooks (their signatures are made with it).")
    api_key_sid = serializers.CharField(
        required=False, write_only=True, max_length=34,
        help_text="Or an API key SID (SK...) and its secret, instead of the auth token, for polling only.")
    api_key_secret = serializers.CharField(required=False, write_only=True, max_length=128, trim_whitespace=True,
                                           style={"input_type": "password"})

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = {name: value.strip() for name, value in attrs.items() if value and value.strip()}
        key, secret = attrs.get("api_key_sid"), attrs.get("api_key_secret")
        if bool(key) != bool(secret):
            raise serializers.ValidationError("An API key needs both its SID and its secret.")
        if key and not API_KEY_SID.fullmatch(key):
            raise serializers.ValidationError({"api_key_sid": ["An API key SID is SK followed by 32 hexadecimal "
                                                               "characters."]})
        if not key and not attrs.get("auth_token"):
            raise serializers.ValidationError("Give the auth token, or an API key SID and secret.")
        return attrs


class TwilioConnect(CredentialsConnect):
    summary = ("Enter your account SID, an API key or the auth token, and the numbers to sync; Twilio checks "
               "them before anything is saved.")
    config_serializer = TwilioConfigSerializer
    credentials_serializer = TwilioCredentialsSerializer
    identity_keys = ("account_sid",)

    def account_defaults(self, config: dict[str, Any]) -> dict[str, str]:
        first = config["numbers"][0].removeprefix(WHATSAPP)
        more = len(config["numbers"]) - 1
        return {"display_name": f"Twilio {first}{f' (+{more})' if more else ''}", "external_address": first}
