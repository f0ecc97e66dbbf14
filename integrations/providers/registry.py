"""The one explicit list of providers: key -> (label, dotted path of the provider class).

``ProviderAccount.provider`` choices are built from it. Adding a provider is its module
plus one line here.
"""
from __future__ import annotations

PROVIDERS: dict[str, tuple[str, str]] = {
    "mbox": ("Mbox import", "integrations.providers.mbox.MboxProvider"),
}


def provider_choices() -> list[tuple[str, str]]:
    return [(key, label) for key, (label, _path) in PROVIDERS.items()]
