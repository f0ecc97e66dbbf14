"""The triggers section of each connector's card on the Connections page (integrations.card_extras)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db.models import Q
from django.http import HttpRequest

from automation.models import Trigger
from integrations.card_extras import CardExtra, register
from integrations.models import ProviderAccount

TEMPLATE = "automation/_connector_triggers.html"


def load(request: HttpRequest, accounts: Sequence[ProviderAccount]) -> Mapping[int, Any]:
    """Per account: the user's triggers listening to it (naming it, or any connector), each with
    its last delivery. Two queries for the whole page."""
    from automation.triggers.services import last_deliveries

    ids = [account.pk for account in accounts]
    triggers = list(Trigger.objects.filter(owner=request.user).filter(
        Q(connector_id__in=ids) | Q(connector__isnull=True)).order_by("name", "pk"))
    last = last_deliveries([trigger.pk for trigger in triggers])
    for trigger in triggers:
        trigger.last_delivery = last.get(trigger.pk)
    return {account.pk: [t for t in triggers if t.connector_id in (None, account.pk)] for account in accounts}


def register_card_extra() -> None:
    register(CardExtra(key="automation.triggers", template=TEMPLATE, load=load))
