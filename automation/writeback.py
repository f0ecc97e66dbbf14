"""Write-back: when a task made from an e-mail is done, the provider's copy is marked processed.

One function per provider key (an explicit registry, like the providers' own). IMAP sets
``\\Seen`` on every copy the account has (MessageRef "folder:uidvalidity:uid"). Gmail would
remove UNREAD, which needs the gmail.modify scope the connect flow does not ask for yet: it is
recorded as unsupported rather than faked. The outcome, and any failure, is stored on the task.
"""
from __future__ import annotations

from collections.abc import Callable

from automation.models import Task
from conversations.models import Communication, MessageRef
from integrations.models import ProviderAccount
from integrations.providers.base import ProviderError


def _imap_mark_seen(account: ProviderAccount, communication: Communication) -> None:
    from imapclient import SEEN

    from integrations.providers.imap.connection import ImapConnection

    refs = list(MessageRef.objects.filter(account=account, communication=communication).values_list("ref", flat=True))
    if not refs:
        raise ProviderError("The message's place in the mailbox is not known (no IMAP reference).")
    connection = ImapConnection(account)
    try:
        for ref in refs:
            folder, uidvalidity, uid = ref.rsplit(":", 2)
            with connection._errors(f"marking {folder} message {uid} as seen"):  # noqa: SLF001 - the one error map
                status = connection._client().select_folder(folder)  # noqa: SLF001 - read-write this time
                if int(status.get(b"UIDVALIDITY", 0)) != int(uidvalidity):
                    raise ProviderError(f"The folder {folder} was recreated since the sync (UIDVALIDITY changed).")
                connection._client().add_flags([int(uid)], [SEEN])  # noqa: SLF001
    finally:
        connection.close()


WRITE_BACKS: dict[str, Callable[[ProviderAccount, Communication], None]] = {
    "imap": _imap_mark_seen,
}


def write_back(task: Task) -> str:
    """Marks the task's message processed at its provider; records and returns the outcome."""
    communication = task.communication
    if communication is None:
        return "no message"
    account = communication.account
    marker = WRITE_BACKS.get(account.provider)
    if marker is None:
        task.write_back = Task.WriteBack.UNSUPPORTED
        task.write_back_error = f"Write-back is not available for {account.provider} accounts yet."
    else:
        try:
            marker(account, communication)
            task.write_back, task.write_back_error = Task.WriteBack.DONE, ""
        except Exception as error:  # noqa: BLE001 - any failure is shown on the task, never raised
            task.write_back, task.write_back_error = Task.WriteBack.FAILED, str(error)[:1000] or type(error).__name__
    Task.objects.filter(pk=task.pk).update(write_back=task.write_back, write_back_error=task.write_back_error)
    return task.write_back
