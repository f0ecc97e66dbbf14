"""Which conversation a message belongs to, decided from keys.

Precedence: the provider's thread id (scoped to the account, since Gmail thread ids are
per mailbox); then RFC 5322 In-Reply-To/References (global, so two users' copies of one
thread meet); then, for SMS/MMS, the set of participants.
"""
from __future__ import annotations

import hashlib
import re

from conversations.messages import Channel, ParsedMessage

_KEY_LIMIT = 255
_REPLY_PREFIX = re.compile(r"^\s*((re|fwd?|aw|wg|sv|vs|antw|tr|rv|réf)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


def fit_key(key: str) -> str:
    """The key itself if it fits a 255-character column, else a prefix plus its sha256: still unique."""
    if len(key) <= _KEY_LIMIT:
        return key
    return f"{key[:190]}#{hashlib.sha256(key.encode()).hexdigest()}"


def thread_key(account_id: int, provider_thread_id: str) -> str:
    return fit_key(f"thread:{account_id}:{provider_thread_id}")


def rfc_key(message_id: str) -> str:
    return fit_key(f"rfc:{message_id}")


def sms_key(message: ParsedMessage) -> str:
    values = sorted({address.value for _role, address in message.participants()})
    return fit_key("sms:" + "|".join(values))


def candidate_keys(account_id: int, message: ParsedMessage) -> list[list[str]]:
    """Keys in tiers of precedence; the first tier with a known key decides the conversation.

    Within the RFC tier the direct parent (In-Reply-To) comes first, then the references
    from the newest back, then the message's own id (a reply that arrived earlier
    registered it).
    """
    tiers: list[list[str]] = []
    if message.provider_thread_id:
        tiers.append([thread_key(account_id, message.provider_thread_id)])
    rfc_ids: list[str] = []
    if message.in_reply_to:
        rfc_ids.append(message.in_reply_to)
    rfc_ids.extend(reversed(message.references))
    if message.rfc_message_id:
        rfc_ids.append(message.rfc_message_id)
    if rfc_ids:
        tiers.append([rfc_key(i) for i in dict.fromkeys(rfc_ids)])
    if message.channel in (Channel.SMS, Channel.MMS) and message.participants():
        tiers.append([sms_key(message)])
    return tiers


def conversation_subject(subject: str | None) -> str:
    """The thread's subject: the message subject without reply/forward prefixes."""
    return _REPLY_PREFIX.sub("", subject or "").strip()
