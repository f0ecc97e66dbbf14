"""Extra sections of a connector's card on the Connections page, supplied by the apps above.

integrations never imports those apps (dependencies point automation -> integrations): an
app registers a CardExtra in its AppConfig.ready, and the Connections view renders every
registered extra into each card. ``load`` reads what all the cards need at once (one or two
queries for the page, not per card) and returns it by account id.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.safestring import SafeString

from integrations.models import ProviderAccount


@dataclass(frozen=True)
class CardExtra:
    key: str
    template: str  # rendered with request, account and data (what load returned for the account, or None)
    load: Callable[[HttpRequest, Sequence[ProviderAccount]], Mapping[int, Any]]


CARD_EXTRAS: dict[str, CardExtra] = {}


def register(extra: CardExtra) -> None:
    """Adds (or replaces, by key) an extra section of the connector cards."""
    CARD_EXTRAS[extra.key] = extra


def attach_card_extras(request: HttpRequest, accounts: Sequence[ProviderAccount]) -> None:
    """Sets ``account.card_extras`` (rendered HTML sections) on each account."""
    for account in accounts:
        account.card_extras = []
    for extra in CARD_EXTRAS.values():
        data = extra.load(request, accounts) if accounts else {}
        for account in accounts:
            html = render_to_string(extra.template, {"account": account, "data": data.get(account.pk)}, request)
            account.card_extras.append(SafeString(html))
