"""A trigger's match conditions: validation (field by field, unknown fields rejected) and
compilation into matchers that test one message in well under a microsecond each.

Conditions (all optional, ANDed):

===================  ===========================================================
``direction``        "inbound" or "outbound"
``sender``           an address (alice@acme.com, +14155550123) or a domain
                     (acme.com or @acme.com; its subdomains match too)
``subject_contains`` text, case-insensitive
``body_contains``    text, case-insensitive
``label``            a label or folder the message carries, case-insensitive
``contact``          a contact id: one of the participants resolved to it
``company``          a company id: one of the participants resolved to it
``has_attachment``   true or false
===================  ===========================================================

On a teammate's connector a condition never looks at what its sharing level hides
(``CONDITION_LEVELS``): the API refuses such a condition, and if the sharing is lowered later
the trigger simply stops matching.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from conversations.visibility import Level

CONDITION_FIELDS = ("direction", "sender", "subject_contains", "body_contains", "label", "contact", "company",
                    "has_attachment")
CONDITION_LEVELS: dict[str, Level] = {
    "subject_contains": Level.SUBJECT,
    "body_contains": Level.EVERYTHING,
    "label": Level.EVERYTHING,
    "has_attachment": Level.EVERYTHING,
}
TYPE_CHANNELS: dict[str, frozenset[str] | None] = {
    "email": frozenset({"email"}),
    "sms": frozenset({"sms", "mms"}),
    "any": None,
}
MAX_TEXT = 200


def type_error(value: Any) -> str | None:
    """Why ``value`` is not an allowed trigger type, or None."""
    if value in TYPE_CHANNELS:
        return None
    if isinstance(value, str) and ":" in value:
        return (f"{value!r} is a legacy provider-specific type and is no longer accepted: use the type "
                f"{value.split(':')[0] or 'email'!r} (one of email, sms, any) and name the connector instead.")
    return f"{value!r} is not a trigger type: use one of email, sms, any."


def clean_conditions(raw: Any) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """(cleaned conditions, errors by field). Unknown fields are errors; empty values are dropped."""
    if raw is None:
        return {}, {}
    if not isinstance(raw, Mapping):
        return {}, {"non_field_errors": ["An object of conditions."]}
    cleaned: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, value in raw.items():
        if name not in CONDITION_FIELDS:
            errors[str(name)] = [f"Unknown condition; the conditions are: {', '.join(CONDITION_FIELDS)}."]
            continue
        if value is None or value == "":
            continue
        if name == "direction":
            if value not in ("inbound", "outbound"):
                errors[name] = ["One of: inbound, outbound."]
            else:
                cleaned[name] = value
        elif name == "has_attachment":
            if not isinstance(value, bool):
                errors[name] = ["true or false."]
            else:
                cleaned[name] = value
        elif name in ("contact", "company"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                errors[name] = [f"A {name} id."]
            else:
                cleaned[name] = value
        else:
            if not isinstance(value, str) or not value.strip():
                errors[name] = ["A non-empty string."]
            elif len(value) > MAX_TEXT:
                errors[name] = [f"At most {MAX_TEXT} characters."]
            elif name == "sender" and (" " in value.strip() or value.strip() in ("@", ".")):
                errors[name] = ["An address (alice@acme.com, +14155550123) or a domain (acme.com)."]
            else:
                cleaned[name] = value.strip().lower() if name in ("sender", "label") else value.strip()
    return cleaned, errors


def hidden_conditions(conditions: Mapping[str, Any], level: Level) -> list[str]:
    """The conditions that look at what ``level`` does not show."""
    return [name for name in conditions if CONDITION_LEVELS.get(name, Level.METADATA) > level]


@dataclass(slots=True)
class Facts:
    """What matching reads of one communication, computed once per message, not per trigger."""

    id: int
    account_id: int
    channel: str
    direction: str
    senders: frozenset[str]
    subject: str  # lower-cased
    body: str  # lower-cased
    labels: frozenset[str]  # lower-cased
    contact_ids: frozenset[int]
    company_ids: frozenset[int]
    has_attachment: bool


Check = Callable[[Facts], bool]


def _sender_check(sender: str) -> Check:
    if "@" in sender and not sender.startswith("@"):
        return lambda facts: sender in facts.senders
    if sender.startswith("+"):  # a phone number
        return lambda facts: sender in facts.senders
    domain = sender.lstrip("@")
    suffix = "." + domain

    def check(facts: Facts) -> bool:
        for address in facts.senders:
            host = address.rpartition("@")[2]
            if host == domain or host.endswith(suffix):
                return True
        return False

    return check


@dataclass(slots=True)
class Matcher:
    """One trigger, compiled: ``matches(facts)`` runs its checks, cheapest first. ``anchor`` is a
    key the message must carry for the trigger to match at all (MatcherIndex), or None."""

    trigger_id: int
    channels: frozenset[str] | None
    direction: str | None
    checks: tuple[Check, ...]
    anchor: tuple[str, Any] | None = None

    def matches(self, facts: Facts) -> bool:
        if self.channels is not None and facts.channel not in self.channels:
            return False
        if self.direction is not None and facts.direction != self.direction:
            return False
        for check in self.checks:
            if not check(facts):
                return False
        return True


def compile_matcher(trigger_id: int, trigger_type: str, conditions: Mapping[str, Any], level: Level) -> Matcher | None:
    """The trigger's matcher, or None when it can never match (a condition hidden at ``level``,
    a type outside the allowlist)."""
    if trigger_type not in TYPE_CHANNELS or hidden_conditions(conditions, level):
        return None
    checks: list[Check] = []
    if "has_attachment" in conditions:
        wanted = bool(conditions["has_attachment"])
        checks.append(lambda facts: facts.has_attachment is wanted)
    if "contact" in conditions:
        contact = conditions["contact"]
        checks.append(lambda facts: contact in facts.contact_ids)
    if "company" in conditions:
        company = conditions["company"]
        checks.append(lambda facts: company in facts.company_ids)
    if "label" in conditions:
        label = str(conditions["label"]).lower()
        checks.append(lambda facts: label in facts.labels)
    if "sender" in conditions:
        checks.append(_sender_check(str(conditions["sender"]).lower()))
    if "subject_contains" in conditions:
        needle = str(conditions["subject_contains"]).lower()
        checks.append(lambda facts: needle in facts.subject)
    if "body_contains" in conditions:
        needle = str(conditions["body_contains"]).lower()
        checks.append(lambda facts: needle in facts.body)
    return Matcher(trigger_id, TYPE_CHANNELS[trigger_type], conditions.get("direction"), tuple(checks),
                   _anchor(conditions))


def _anchor(conditions: Mapping[str, Any]) -> tuple[str, Any] | None:
    """The most selective exact key among the conditions: a message without it cannot match."""
    if "contact" in conditions:
        return ("contact", conditions["contact"])
    if "company" in conditions:
        return ("company", conditions["company"])
    if "sender" in conditions:
        sender = str(conditions["sender"]).lower()
        if sender.startswith("+") or ("@" in sender and not sender.startswith("@")):
            return ("sender", sender)
        return ("domain", sender.lstrip("@"))
    if "label" in conditions:
        return ("label", str(conditions["label"]).lower())
    return None


def message_keys(facts: Facts) -> list[tuple[str, Any]]:
    """The anchor keys a message carries (a sender's domain and each parent domain included)."""
    keys: list[tuple[str, Any]] = [("contact", c) for c in facts.contact_ids]
    keys += [("company", c) for c in facts.company_ids]
    keys += [("label", label) for label in facts.labels]
    for address in facts.senders:
        keys.append(("sender", address))
        host = address.rpartition("@")[2] if "@" in address else ""
        while host:
            keys.append(("domain", host))
            host = host.partition(".")[2]
    return keys


class MatcherIndex:
    """Matchers bucketed by anchor, so a message is tested only against the triggers whose exact
    key it carries, plus those without one: with a thousand triggers on sender, label or contact,
    a message meets a handful instead of all of them."""

    def __init__(self, matchers: list[Matcher]) -> None:
        self.unanchored: list[Matcher] = []
        self.anchored: dict[tuple[str, Any], list[Matcher]] = {}
        for matcher in matchers:
            if matcher.anchor is None:
                self.unanchored.append(matcher)
            else:
                self.anchored.setdefault(matcher.anchor, []).append(matcher)

    def matching(self, facts: Facts) -> list[int]:
        """Ids of the triggers that match, in no particular order, each once."""
        found = [m.trigger_id for m in self.unanchored if m.matches(facts)]
        seen: set[int] = set()
        for key in message_keys(facts):
            for matcher in self.anchored.get(key, ()):
                if matcher.trigger_id not in seen and matcher.matches(facts):
                    seen.add(matcher.trigger_id)
                    found.append(matcher.trigger_id)
        return found
