"""Hears of new communications (integrations.signals) and queues their suggestion; never more."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django_q.tasks import async_task

SUGGEST_TASK = "automation.tasks.suggest_communications"
# Ids per queued task: a big batch becomes a few tasks, each done in well under a minute.
CHUNK = 200


def queue_new_communications(sender: Any, account: Any, communication_ids: Sequence[int], origin: str,
                             **kwargs: Any) -> None:
    """Queues the suggestion of a stored batch (sent after the batch commits). The task decides
    what to skip (accounts with suggestions off, outbound, too old): no query here."""
    ids = list(communication_ids)
    for start in range(0, len(ids), CHUNK):
        async_task(SUGGEST_TASK, account.pk, ids[start:start + CHUNK],
                   task_name=f"suggest tasks for account {account.pk} ({origin})", group="suggestions")


TRIGGERS_TASK = "automation.tasks.fire_triggers"


def queue_trigger_evaluation(sender: Any, account: Any, communication_ids: Sequence[int], origin: str,
                             **kwargs: Any) -> None:
    """Queues the evaluation of the triggers listening to the account on a committed batch.

    One indexed existence query first: most accounts have no trigger, and a backfill of a
    hundred thousand messages should not queue hundreds of tasks that find nothing to do.
    """
    from automation.triggers.services import BACKFILL_ORIGINS, triggers_for

    listening = triggers_for(account)
    if origin in BACKFILL_ORIGINS:
        listening = listening.filter(include_backfill=True)
    if not listening.exists():
        return
    ids = list(communication_ids)
    for start in range(0, len(ids), CHUNK):
        async_task(TRIGGERS_TASK, account.pk, ids[start:start + CHUNK], origin,
                   task_name=f"triggers for account {account.pk} ({origin})", group="triggers")
