"""How an IMAP mailbox is connected: host, port, security and username, and a password tested by logging in.

Security "none" is refused here, before any password is accepted, unless settings allow it
(security.insecure_refusal).
"""
from __future__ import annotations

from typing import Any

from rest_framework import serializers

from integrations.providers.connect import CredentialsConnect
from integrations.providers.imap.security import SECURITY_CHOICES, insecure_refusal


class ImapConfigSerializer(serializers.Serializer):
    host = serializers.CharField(max_length=255)
    port = serializers.IntegerField(min_value=1, max_value=65535, required=False,
                                    help_text="Default: 993 for ssl, 143 otherwise.")
    security = serializers.ChoiceField(choices=SECURITY_CHOICES, default="ssl",
                                       help_text='"none" sends the password in clear text: refused unless allowed.')
    username = serializers.CharField(max_length=320, help_text="The IMAP login name.")
    folders = serializers.ListField(child=serializers.CharField(max_length=255), required=False, max_length=100,
                                    help_text="Folders to sync. Default: INBOX and the Sent folder.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        refusal = insecure_refusal(attrs["host"], attrs["security"])
        if refusal:
            raise serializers.ValidationError({"security": [refusal]})
        attrs.setdefault("port", 993 if attrs["security"] == "ssl" else 143)
        return attrs


class ImapCredentialsSerializer(serializers.Serializer):
    password = serializers.CharField(write_only=True, trim_whitespace=False, max_length=1024,
                                     style={"input_type": "password"})


class ImapConnect(CredentialsConnect):
    summary = "Enter the server settings and your password; the login is tested before anything is saved."
    config_serializer = ImapConfigSerializer
    credentials_serializer = ImapCredentialsSerializer
    identity_keys = ("host", "username")

    def account_defaults(self, config: dict[str, Any]) -> dict[str, str]:
        username, host = config["username"], config["host"]
        return {"display_name": f"{username} on {host}", "external_address": username if "@" in username else ""}
