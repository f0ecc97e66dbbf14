"""Write-back: when a task made from an e-mail is done, the provider's copy is marked processed.

Through the provider interface: a provider with Capability.MARK_READ implements
``mark_read(refs)`` (IMAP sets \\Seen on every copy the account has; Gmail removes UNREAD;
Outlook sets isRead).
Turning write-back on for an account makes it *want* MARK_READ (integrations.grants, registered
by ``wanted_capabilities``), so the next sign-in asks for gmail.modify or Mail.ReadWrite; until the user has
allowed it, the provider's ``missing_grant`` says what to do and that is the task's failure.
The outcome, and any failure, is stored on the task.
"""
from __future__ import annotations

from collections.abc import Iterable

from automation.models import AccountAutomation, Task
from conversations.models import MessageRef
from integrations.models import ProviderAccount
from integrations.providers.base import Capability, ProviderError
from integrations.providers.registry import provider_class


def wanted_capabilities(account: ProviderAccount) -> Iterable[Capability]:
    """integrations.grants wanter: MARK_READ for an account whose write-back is on."""
    if AccountAutomation.objects.filter(account=account, write_back=True).exists():
        return (Capability.MARK_READ,)
    return ()


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
            missing = provider.missing_grant(account, Capability.MARK_READ)
            if missing:
                raise ProviderError(missing)
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
