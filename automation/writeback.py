"""Write-back: when a task made from an e-mail is done, the provider's copy is marked processed.

Through the provider interface: a provider with Capability.MARK_READ implements
``mark_read(refs)`` (IMAP sets \\Seen on every copy the account has). Gmail would remove UNREAD,
which needs the gmail.modify scope the connect flow does not ask for yet: it is recorded as
unsupported rather than faked. The outcome, and any failure, is stored on the task.
"""
from __future__ import annotations

from automation.models import Task
from conversations.models import MessageRef
from integrations.providers.base import Capability, ProviderError
from integrations.providers.registry import provider_class


def write_back(task: Task) -> str:
    """Marks the task's message processed at its provider; records and returns the outcome."""
    communication = task.communication
    if communication is None:
        return "no message"
    account = communication.account
    provider = provider_class(account.provider)
    if Capability.MARK_READ not in provider.capabilities:
        task.write_back = Task.WriteBack.UNSUPPORTED
        task.write_back_error = f"Write-back is not available for {provider.display_name} ({account.provider}) accounts yet."
    else:
        try:
            refs = list(MessageRef.objects.filter(account=account, communication=communication)
                        .values_list("ref", flat=True))
            if not refs:
                raise ProviderError("The message's place at the provider is not known (no reference stored).")
            with provider(account) as connection:
                connection.mark_read(refs)
            task.write_back, task.write_back_error = Task.WriteBack.DONE, ""
        except Exception as error:  # noqa: BLE001 - any failure is shown on the task, never raised
            task.write_back, task.write_back_error = Task.WriteBack.FAILED, str(error)[:1000] or type(error).__name__
    Task.objects.filter(pk=task.pk).update(write_back=task.write_back, write_back_error=task.write_back_error)
    return task.write_back
