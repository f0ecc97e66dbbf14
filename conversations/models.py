"""Communications, the conversations (threads) they form, their participants and attachments."""
from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.core.files.storage import default_storage
from django.db import models

from contacts.models import Company, Contact
from conversations.messages import AddressKind, Channel, Direction


# Text searched per communication: at most this many characters of subject and body. PostgreSQL
# refuses a tsvector over 1 MB (an insert would fail, and with it the whole batch); 200,000
# characters are at most 800 KB of UTF-8, whatever the words.
SEARCH_TEXT_LIMIT = 200_000


class SearchDocument(models.Func):
    """PostgreSQL ``to_tsvector('simple', ...)`` of the given text columns, joined by spaces.

    The GIN index on communications is built on ``SearchDocument("subject", "body_text")``,
    and text search (conversations.visibility) matches this same expression so that the
    planner can use it. Constants are in the template, not parameters: the index holds
    literals, and a query must spell the expression the same way. 'simple' (no stemming,
    no stop words) because mail is in every language.
    """

    template = f"to_tsvector('simple'::regconfig, left(%(expressions)s, {SEARCH_TEXT_LIMIT}))"
    arg_joiner = " || ' ' || "
    output_field = SearchVectorField()

    def __init__(self, *columns: str) -> None:
        super().__init__(*(
            models.Func(models.F(column), template="coalesce(%(expressions)s, '')", output_field=models.TextField())
            for column in columns
        ))


class Conversation(models.Model):
    """A thread. Shared across accounts: two users' copies of one e-mail thread meet here."""

    subject = models.TextField(blank=True)
    channel = models.CharField(max_length=10, choices=[(c.value, c.name.title()) for c in Channel])
    first_message_at = models.DateTimeField(null=True, blank=True)
    last_message_at = models.DateTimeField(null=True, blank=True)
    message_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-last_message_at"]
        indexes = [models.Index(fields=["-last_message_at"]), models.Index(fields=["channel", "-last_message_at"])]

    def __str__(self) -> str:
        # No subject: __str__ shows up wherever the admin names an object (raw-id labels, the
        # action log, delete confirmations), also to staff who may not read the content.
        return f"Conversation #{self.pk}"

    @property
    def title(self) -> str:
        return self.subject or str(self)


class ThreadKey(models.Model):
    """A key that places a message in a conversation.

    Keys are "thread:<account>:<provider thread id>", "rfc:<Message-ID>" (a message's own
    id and every id it references) and "sms:<address>|<address>". Registering the ids a
    message references lets a reply that arrives before its parent still meet it.
    """

    key = models.CharField(max_length=255, unique=True)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="thread_keys")

    def __str__(self) -> str:
        return self.key


class Communication(models.Model):
    # No single-column indexes on these two: the composite indexes below start with them,
    # and every index costs each of the many inserts.
    account = models.ForeignKey(
        settings.CRM_ACCOUNT_MODEL, on_delete=models.CASCADE, related_name="communications", db_index=False
    )
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="communications", db_index=False
    )
    provider_message_id = models.CharField(max_length=255)
    rfc_message_id = models.CharField(max_length=512, blank=True, db_index=True)
    provider_thread_id = models.CharField(max_length=255, blank=True)
    channel = models.CharField(max_length=10, choices=[(c.value, c.name.title()) for c in Channel])
    direction = models.CharField(max_length=8, choices=[(d.value, d.name.title()) for d in Direction])
    subject = models.TextField(null=True, blank=True)
    body_text = models.TextField(blank=True)
    body_html = models.TextField(blank=True, help_text="Stored raw; only ever rendered through nh3.")
    snippet = models.CharField(max_length=300, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    in_reply_to = models.CharField(max_length=512, blank=True)
    references = models.JSONField(default=list, blank=True)
    labels = models.JSONField(default=list, blank=True)
    delivery_status = models.CharField(max_length=30, blank=True)
    raw_size = models.PositiveBigIntegerField(null=True, blank=True)
    is_read = models.BooleanField(null=True, blank=True)
    is_starred = models.BooleanField(null=True, blank=True)
    deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when the message disappeared at the provider (soft delete)."
    )
    parse_warnings = models.JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-sent_at", "-id"]
        permissions = [("view_all_content", "Can read the content of every user's communications")]
        constraints = [
            models.UniqueConstraint(fields=["account", "provider_message_id"], name="communication_unique_provider_id")
        ]
        indexes = [
            models.Index(fields=["-sent_at", "-id"], name="communication_sent_idx"),
            models.Index(fields=["account", "-sent_at"], name="communication_account_sent_idx"),
            models.Index(fields=["channel", "-sent_at"], name="communication_channel_sent_idx"),
            models.Index(fields=["direction", "-sent_at"], name="communication_direction_idx"),
            models.Index(fields=["conversation", "sent_at"], name="communication_thread_idx"),
            # PostgreSQL only (migration 0003 skips it elsewhere): full-text search of `q`. A 64 MB
            # pending list lets ingest append entries and autovacuum merge them, off the batch's
            # transaction; the index still costs ingest about a third of its PostgreSQL throughput.
            GinIndex(SearchDocument("subject", "body_text"), name="communication_search_idx", fastupdate=True,
                     gin_pending_list_limit=65536),
        ]

    def __str__(self) -> str:
        # Content-free, as Conversation.__str__; ``title`` is for readers allowed the content.
        return f"{self.channel or 'message'} #{self.pk}"

    @property
    def title(self) -> str:
        return self.subject or self.snippet[:60] or self.provider_message_id


class MessageRef(models.Model):
    """Where a provider keeps one copy of a communication, e.g. IMAP "INBOX:uidvalidity:uid".

    One communication may have several (the same message in two folders); ``label`` is
    the folder name each contributes to the communication's labels.
    """

    account = models.ForeignKey(settings.CRM_ACCOUNT_MODEL, on_delete=models.CASCADE, related_name="message_refs")
    communication = models.ForeignKey(Communication, on_delete=models.CASCADE, related_name="refs")
    ref = models.CharField(max_length=255)
    label = models.CharField(max_length=255, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["account", "ref"], name="messageref_unique")]

    def __str__(self) -> str:
        return self.ref


class Participant(models.Model):
    class Role(models.TextChoices):
        FROM = "from", "From"
        TO = "to", "To"
        CC = "cc", "Cc"
        BCC = "bcc", "Bcc"

    communication = models.ForeignKey(Communication, on_delete=models.CASCADE, related_name="participants")
    role = models.CharField(max_length=4, choices=Role.choices)
    kind = models.CharField(max_length=5, choices=[(k.value, k.name.title()) for k in AddressKind])
    address = models.CharField(max_length=320)
    display_name = models.CharField(max_length=200, blank=True)
    # Participants are the biggest table (several rows per message) and these two links are
    # derived, re-resolvable data: no database-level constraint checks on every insert
    # (Sentry does the same on its hot tables). Deletes through the ORM still null them.
    contact = models.ForeignKey(
        Contact, null=True, blank=True, on_delete=models.SET_NULL, related_name="participations",
        db_constraint=False, db_index=False,  # indexed with the communication below
    )
    company = models.ForeignKey(
        Company, null=True, blank=True, on_delete=models.SET_NULL, related_name="participations",
        db_constraint=False, db_index=False,
    )
    is_owner = models.BooleanField(default=False, help_text="One of the account owner's own addresses.")

    class Meta:
        indexes = [
            models.Index(fields=["address"]),
            # A timeline reads a contact's (or company's) communication ids from the index alone.
            models.Index(fields=["contact", "communication"], name="participant_contact_idx"),
            models.Index(fields=["company", "communication"], name="participant_company_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.role}: {self.address}"


class Attachment(models.Model):
    communication = models.ForeignKey(Communication, on_delete=models.CASCADE, related_name="attachments")
    filename = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=255, blank=True)
    size = models.PositiveBigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    content_id = models.CharField(max_length=255, blank=True)
    inline = models.BooleanField(default=False)
    stored_name = models.CharField(
        max_length=255, blank=True, help_text="Path in the storage; blank when over the size cap or not fetched."
    )

    def __str__(self) -> str:
        return self.filename or f"attachment #{self.pk}"

    @property
    def is_stored(self) -> bool:
        return bool(self.stored_name)

    def open(self):  # type: ignore[no-untyped-def]
        """Opens the stored content (shared by every attachment with the same sha256)."""
        if not self.stored_name:
            raise FileNotFoundError(f"Content of {self} was not stored")
        return default_storage.open(self.stored_name, "rb")
