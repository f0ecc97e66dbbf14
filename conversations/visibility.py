"""Who sees which communications, and how much of each: the one rule every read path applies.

Contacts, companies and conversations are organisation-wide; a communication belongs to
the account that synced it, and that account's ``sharing`` decides what teammates see:

=============  ==========================================================================
``private``    nothing: the communication does not exist for them (the default)
``metadata``   channel, direction, times, participants, sizes, delivery status
``subject``    the above and the subject
``everything`` the above and snippet, body, attachments, labels, read/starred flags
=============  ==========================================================================

The account's owner sees all of their own at ``everything``; so do superusers and holders
of ``conversations.view_all_content`` for every account (conversations.permissions).
Staff status alone grants nothing here.

``visible_communications(user)`` is the set, each row annotated with ``visible_level``;
``shows(level, field)`` says whether a field is readable at a level; ``search`` and
``with_label`` look only at what each row shows, so a hidden word or label never decides
whether a row is found.
"""
from __future__ import annotations

from enum import IntEnum
from typing import Any

from django.db import connections
from django.db.models import (
    BooleanField, Case, Count, Exists, F, Func, IntegerField, Max, Min, OuterRef, Q, QuerySet, Subquery, Value,
    When,
)

from conversations.models import Communication, Conversation, SearchDocument
from conversations.permissions import can_view_all_content


class Level(IntEnum):
    """How much of a communication a user sees; each level includes the ones below it."""

    METADATA = 1
    SUBJECT = 2
    EVERYTHING = 3

    @property
    def label(self) -> str:
        return self.name.lower()


# The account's sharing values (integrations.ProviderAccount.Sharing) that let teammates in,
# with the level each grants. Any other value, "private" included, lets no one in.
SHARED_LEVELS: dict[str, Level] = {
    "metadata": Level.METADATA,
    "subject": Level.SUBJECT,
    "everything": Level.EVERYTHING,
}

# The least level at which each content field is shown; fields not named are metadata.
FIELD_LEVELS: dict[str, Level] = {
    "subject": Level.SUBJECT,
    "snippet": Level.EVERYTHING,
    "body_text": Level.EVERYTHING,
    "body_html": Level.EVERYTHING,
    "attachments": Level.EVERYTHING,
    # The owner's own filing and reading state: nobody else's business below "everything".
    "labels": Level.EVERYTHING,
    "is_read": Level.EVERYTHING,
    "is_starred": Level.EVERYTHING,
}


def shows(level: int, field: str) -> bool:
    """True if a row at ``level`` shows ``field``."""
    return level >= FIELD_LEVELS.get(field, Level.METADATA)


def visible_account_levels(user: Any) -> dict[int, Level]:
    """The accounts whose communications ``user`` sees, with the level of each.

    Read once, from the (small) account table, so that queries over millions of
    communications filter on ``account_id`` alone: no join to the accounts, and the planner
    sees a plain list it can estimate instead of an OR across a join.
    """
    accounts = Communication._meta.get_field("account").related_model._default_manager
    rows = accounts.filter(Q(owner_id=user.pk) | Q(sharing__in=list(SHARED_LEVELS))).values_list(
        "pk", "owner_id", "sharing")
    return {pk: Level.EVERYTHING if owner_id == user.pk else SHARED_LEVELS[sharing]
            for pk, owner_id, sharing in rows}


def visible_communications(user: Any) -> QuerySet[Communication]:
    """The communications ``user`` may see, each annotated with ``visible_level`` (a Level value).

    The visible accounts are read when this is called (see visible_account_levels): build the
    queryset per request, not once for later.
    """
    communications = Communication.objects.all()
    if not getattr(user, "is_authenticated", False):  # anonymous (the schema generator included): nothing
        return communications.none().annotate(visible_level=Value(0, output_field=IntegerField()))
    if can_view_all_content(user):
        return communications.annotate(visible_level=Value(int(Level.EVERYTHING), output_field=IntegerField()))
    levels = visible_account_levels(user)
    if not levels:
        return communications.none().annotate(visible_level=Value(0, output_field=IntegerField()))
    by_level: dict[Level, list[int]] = {}
    for account_id, level in sorted(levels.items()):
        by_level.setdefault(level, []).append(account_id)
    if len(by_level) == 1:
        (level, _ids), = by_level.items()
        visible_level: Value | Case = Value(int(level), output_field=IntegerField())
    else:
        visible_level = Case(*(When(account_id__in=ids, then=Value(int(level))) for level, ids in by_level.items()),
                             default=Value(0), output_field=IntegerField())
    return communications.filter(account_id__in=sorted(levels)).annotate(visible_level=visible_level)


def visible_conversations(user: Any) -> QuerySet[Conversation]:
    """Conversations with at least one communication ``user`` may see, annotated from those alone.

    ``visible_count``, ``visible_first_at`` and ``visible_last_at`` count and date only the
    communications the user sees (the stored counters include everyone's, and would tell
    when a private message was sent). ``visible_subject`` is the subject of the earliest
    communication whose subject the user sees, or None: the conversation's stored subject
    comes from its first message, which may be another user's private one.
    """
    theirs = visible_communications(user).filter(conversation=OuterRef("pk")).order_by()

    def per_conversation(aggregate: Any) -> Subquery:
        return Subquery(theirs.values("conversation").annotate(value=aggregate).values("value"))

    return Conversation.objects.filter(Exists(theirs)).annotate(
        visible_count=per_conversation(Count("pk")),
        visible_first_at=per_conversation(Min("sent_at")),
        visible_last_at=per_conversation(Max("sent_at")),
        visible_subject=Subquery(
            theirs.filter(visible_level__gte=Level.SUBJECT, subject__isnull=False)
            .order_by(F("sent_at").asc(nulls_last=True), "pk").values("subject")[:1]
        ),
    )


def with_label(communications: QuerySet[Communication], label: str) -> QuerySet[Communication]:
    """Rows labelled ``label``, among those whose labels the user sees."""
    communications = communications.filter(visible_level__gte=FIELD_LEVELS["labels"])
    if connections[communications.db].vendor == "postgresql":
        return communications.filter(labels__contains=[label])
    # SQLite's JSON has no containment operator: look through the array with json_each.
    return communications.filter(_JsonArrayHolds(F("labels"), Value(label)))


class _JsonArrayHolds(Func):
    """SQLite: the JSON array (first expression) holds the value (second)."""

    template = "EXISTS (SELECT 1 FROM json_each(%(expressions)s))"
    arg_joiner = ") WHERE value = ("
    output_field = BooleanField()


class _Matches(Func):
    arg_joiner = " @@ "
    template = "%(expressions)s"
    output_field = BooleanField()


class _PlainQuery(Func):
    template = "plainto_tsquery('simple'::regconfig, %(expressions)s)"
    output_field = BooleanField()  # a tsquery; only ever compared with @@


def search(communications: QuerySet[Communication], text: str) -> QuerySet[Communication]:
    """Rows whose visible subject or body contains ``text``.

    Rows at ``everything`` match on subject and body, rows at ``subject`` on the subject
    alone, rows at ``metadata`` never. On PostgreSQL ``text`` is a plain full-text query
    (every word must appear, no operators) over SearchDocument, which the GIN index
    communication_search_idx holds: the index finds candidates on subject and body, and a
    subject-level candidate is kept only if its subject alone matches. That split is sound
    because a plain query has no negation: a row that matches on the subject alone also
    matches on subject and body, so the index never drops it. Elsewhere each word must be
    a case-insensitive substring of a field the row shows.
    """
    if connections[communications.db].vendor == "postgresql":
        query = _PlainQuery(Value(text))
        in_content = _Matches(SearchDocument("subject", "body_text"), query)
        in_subject = _Matches(SearchDocument("subject"), query)
    else:
        words = text.split() or [text]
        in_content = Q(*(Q(subject__icontains=word) | Q(body_text__icontains=word) for word in words))
        in_subject = Q(*(Q(subject__icontains=word) for word in words))
    # Two separate filters: the first is the indexed condition, whole and on its own.
    return communications.filter(in_content).filter(
        Q(visible_level__gte=Level.EVERYTHING) | (Q(visible_level=Level.SUBJECT) & Q(in_subject))
    )
