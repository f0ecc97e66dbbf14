"""django-q2 tasks of the automation app: suggesting from new communications, and write-back."""
from __future__ import annotations

from django_q.tasks import async_task

from automation import services
from automation.models import Task
from automation.writeback import write_back

WRITE_BACK_TASK = "automation.tasks.write_back_task"


def suggest_communications(account_id: int, communication_ids: list[int]) -> str:
    outcome = services.suggest_for(account_id, communication_ids)
    return (f"{outcome.suggested} suggested ({outcome.auto_approved} auto-approved), {outcome.updated} updated, "
            f"{outcome.withdrawn} withdrawn, {outcome.skipped} skipped")


def queue_write_back(task: Task) -> None:
    async_task(WRITE_BACK_TASK, task.pk, task_name=f"write back task {task.pk}", group="write-back")


def write_back_task(task_id: int) -> str:
    task = Task.objects.select_related("communication__account").filter(pk=task_id).first()
    if task is None:
        return "task gone"
    return write_back(task)


def fire_triggers(account_id: int, communication_ids: list[int], origin: str) -> str:
    """Evaluates triggers on a committed batch's new communications (queued by automation.receivers)."""
    from automation.triggers import services as triggers

    outcome = triggers.fire(account_id, communication_ids, origin)
    return f"{outcome.matched} matched: {len(outcome.deliveries)} webhook(s) queued, {outcome.tasks} task(s) made"


def deliver_webhook(delivery_id: int) -> str:
    """One attempt of a webhook delivery (queued at firing, by a retry's schedule, a redelivery)."""
    from automation.triggers import services as triggers

    return triggers.deliver(delivery_id)
