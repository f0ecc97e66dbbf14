"""store_batch: idempotency, threading, contact resolution, owner and robot skipping."""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from contacts.models import Company, Contact, ContactIdentifier
from conversations.ingest import store_batch
from conversations.messages import Channel, Direction, ParsedAttachment
from conversations.models import Attachment, Communication, Conversation, Participant
from tests.factories import email, message, phone

pytestmark = pytest.mark.django_db


def test_stores_a_message_with_participants(account):
    result = store_batch(account, [message(cc=(email("dan@globex.io", "Dan"),))])
    assert (result.created, result.updated, result.skipped) == (1, 0, 0)
    communication = Communication.objects.get()
    assert result.created_ids == [communication.pk]
    roles = sorted(communication.participants.values_list("role", "address"))
    assert roles == [("cc", "dan@globex.io"), ("from", "carol@acme.com"), ("to", "alice@example.org")]
    assert communication.snippet.startswith("Body of message")


def test_same_batch_twice_is_idempotent(account):
    batch = [message() for _ in range(5)]
    store_batch(account, batch)
    counts = (Communication.objects.count(), Participant.objects.count(), Contact.objects.count(),
              Conversation.objects.count(), Company.objects.count())
    again = store_batch(account, batch)
    assert (again.created, again.updated, again.skipped) == (0, 0, 5)
    assert counts == (Communication.objects.count(), Participant.objects.count(), Contact.objects.count(),
                      Conversation.objects.count(), Company.objects.count())


def test_duplicate_ids_within_one_batch_store_once(account):
    first = message()
    result = store_batch(account, [first, first])
    assert (result.created, result.skipped) == (1, 1)
    assert Communication.objects.count() == 1


def test_changed_labels_count_as_updated(account):
    original = message(labels=("INBOX",))
    store_batch(account, [original])
    result = store_batch(account, [dataclasses.replace(original, labels=("INBOX", "Starred"))])
    assert (result.created, result.updated, result.skipped) == (0, 1, 0)
    assert Communication.objects.get().labels == ["INBOX", "Starred"]


def test_same_provider_id_in_two_accounts_is_two_communications(account, other_account):
    shared = message(provider_message_id="same-id")
    store_batch(account, [shared])
    store_batch(other_account, [shared])
    assert Communication.objects.filter(provider_message_id="same-id").count() == 2


def test_query_count_does_not_grow_with_batch_size(account):
    def queries_for(n: int) -> int:
        batch = [message(sender=email(f"person{i}-{n}@corp{i % 7}-{n}.com")) for i in range(n)]
        with CaptureQueriesContext(connection) as captured:
            store_batch(account, batch)
        return len(captured)

    # Bulk inserts split into a few statements under SQLite's 999-parameter limit, but no query
    # is per message: 195 more messages must cost far fewer than 195 more queries.
    small, large = queries_for(5), queries_for(200)
    assert large - small < 20, (small, large)


# --- threading ---------------------------------------------------------------------------

def test_threads_by_provider_thread_id_first(account):
    first = message(provider_thread_id="T1")
    second = message(provider_thread_id="T1", subject="totally different")
    store_batch(account, [first])
    store_batch(account, [second])
    assert Conversation.objects.count() == 1
    conversation = Conversation.objects.get()
    assert conversation.message_count == 2
    assert conversation.subject == first.subject


def test_provider_thread_ids_are_scoped_to_the_account(account, other_account):
    store_batch(account, [message(provider_thread_id="T1")])
    store_batch(other_account, [message(provider_thread_id="T1")])
    assert Conversation.objects.count() == 2


def test_threads_by_references_across_accounts(account, other_account):
    parent = message(rfc_message_id="root@acme.com", subject="Pricing")
    reply = message(rfc_message_id="reply@example.net", in_reply_to="root@acme.com",
                    references=("root@acme.com",), subject="Re: Pricing")
    store_batch(account, [parent])
    store_batch(other_account, [reply])
    assert Conversation.objects.count() == 1
    assert Conversation.objects.get().subject == "Pricing"


def test_reply_arriving_before_its_parent_joins_it(account):
    reply = message(rfc_message_id="child@x", in_reply_to="parent@x", references=("parent@x",))
    parent = message(rfc_message_id="parent@x")
    store_batch(account, [reply])
    store_batch(account, [parent])
    assert Conversation.objects.count() == 1


def test_thread_within_one_batch(account):
    parent = message(rfc_message_id="p@x")
    replies = [message(rfc_message_id=f"r{i}@x", in_reply_to="p@x", references=("p@x",)) for i in range(3)]
    store_batch(account, [parent, *replies])
    assert Conversation.objects.count() == 1
    assert Conversation.objects.get().message_count == 4


def test_sms_threads_by_participant_pair(account):
    account.external_address = "+15550000001"
    account.save()
    inbound = message(channel=Channel.SMS, subject=None, rfc_message_id="", sender=phone("+15551234567"),
                      to=(phone("+15550000001"),))
    outbound = message(channel=Channel.SMS, subject=None, rfc_message_id="", sender=phone("+15550000001"),
                       to=(phone("+15551234567"),))
    other = message(channel=Channel.SMS, subject=None, rfc_message_id="", sender=phone("+15559999999"),
                    to=(phone("+15550000001"),))
    store_batch(account, [inbound, outbound, other])
    assert Conversation.objects.count() == 2
    assert Communication.objects.get(provider_message_id=outbound.provider_message_id).direction == "outbound"


def test_unrelated_messages_get_their_own_conversations(account):
    store_batch(account, [message(), message()])
    assert Conversation.objects.count() == 2


# --- contact resolution ------------------------------------------------------------------

def test_exact_identifier_match_wins(account):
    existing = Contact.objects.create(name="Carol (manual)")
    ContactIdentifier.objects.create(contact=existing, kind="email", value="carol@acme.com")
    store_batch(account, [message()])
    participant = Participant.objects.get(role="from")
    assert participant.contact == existing
    assert Contact.objects.filter(identifiers__value="carol@acme.com").count() == 1


def test_unknown_address_creates_contact_and_company(account):
    store_batch(account, [message(sender=email("eve@initech.co.uk", "Eve Smith"))])
    contact = Contact.objects.get(identifiers__value="eve@initech.co.uk")
    assert contact.name == "Eve Smith"
    assert contact.company.domain == "initech.co.uk"
    assert contact.company.name == "Initech"
    assert Participant.objects.get(role="from").company == contact.company


def test_free_mail_domains_never_become_companies(account):
    store_batch(account, [message(sender=email("frank@gmail.com")), message(sender=email("gina@outlook.com"))])
    assert not Company.objects.filter(domain__in=["gmail.com", "outlook.com"]).exists()
    assert Contact.objects.get(identifiers__value="frank@gmail.com").company is None


def test_extra_free_mail_domains_are_configurable(account, settings):
    settings.CRM_EXTRA_FREE_MAIL_DOMAINS = ["isp.example"]
    store_batch(account, [message(sender=email("hal@isp.example"))])
    assert not Company.objects.exists() or not Company.objects.filter(domain="isp.example").exists()


def test_owner_addresses_are_not_contacts_and_mark_outbound(account):
    store_batch(account, [message(sender=email("alice@example.org"), to=(email("carol@acme.com"),))])
    assert not ContactIdentifier.objects.filter(value="alice@example.org").exists()
    assert Communication.objects.get().direction == Direction.OUTBOUND
    owner_participant = Participant.objects.get(address="alice@example.org")
    assert owner_participant.is_owner and owner_participant.contact is None


def test_account_aliases_count_as_owner(account):
    account.config = {"aliases": ["Alice.Alias@Example.org"]}
    account.save()
    store_batch(account, [message(to=(email("alice.alias@example.org"),))])
    assert not ContactIdentifier.objects.filter(value="alice.alias@example.org").exists()


@pytest.mark.parametrize("robot", ["no-reply@acme.com", "noreply@acme.com", "mailer-daemon@mx.acme.com",
                                   "do-not-reply@acme.com", "postmaster@acme.com"])
def test_robot_senders_are_skipped(account, robot):
    store_batch(account, [message(sender=email(robot))])
    assert not ContactIdentifier.objects.filter(value=robot).exists()
    assert Participant.objects.get(role="from").contact is None


def test_contact_creation_can_be_turned_off(account, settings):
    settings.CRM_CREATE_CONTACTS = False
    store_batch(account, [message()])
    assert not Contact.objects.exists()
    participant = Participant.objects.get(role="from")
    assert participant.contact is None
    assert participant.company.domain == "acme.com"


def test_same_address_in_one_batch_makes_one_contact(account):
    store_batch(account, [message(), message(), message(cc=(email("carol@acme.com"),))])
    assert ContactIdentifier.objects.filter(value="carol@acme.com").count() == 1
    assert Contact.objects.filter(identifiers__value="carol@acme.com").count() == 1
    assert len(set(Participant.objects.filter(address="carol@acme.com").values_list("contact_id", flat=True))) == 1


def test_phone_participants_resolve_by_e164(account):
    store_batch(account, [message(channel=Channel.SMS, subject=None, sender=phone("+447700900123"),
                                  to=(phone("+15550000001"),))])
    identifier = ContactIdentifier.objects.get(value="+447700900123")
    assert identifier.kind == "phone"
    assert identifier.contact.company is None


# --- attachments ---------------------------------------------------------------------------

def test_attachment_content_is_stored_once_per_sha256(account):
    blob = ParsedAttachment.from_bytes("report.pdf", "application/pdf", b"%PDF-1.4 same bytes")
    store_batch(account, [message(attachments=(blob,)), message(attachments=(blob,))])
    attachments = list(Attachment.objects.all())
    assert len(attachments) == 2
    assert {a.stored_name for a in attachments} == {attachments[0].stored_name}
    with attachments[1].open() as handle:
        assert handle.read() == b"%PDF-1.4 same bytes"


def test_attachment_over_the_cap_keeps_metadata_only(account, settings):
    settings.ATTACHMENT_MAX_BYTES = 10
    blob = ParsedAttachment.from_bytes("big.bin", "application/octet-stream", b"x" * 11)
    store_batch(account, [message(attachments=(blob,))])
    attachment = Attachment.objects.get()
    assert (attachment.size, attachment.stored_name, attachment.sha256) == (11, "", blob.sha256)
    with pytest.raises(FileNotFoundError):
        attachment.open()


def test_lazy_attachment_is_fetched_when_stored(account):
    calls = []

    def fetch() -> bytes:
        calls.append(1)
        return b"lazy content"

    store_batch(account, [message(attachments=(ParsedAttachment("a.txt", "text/plain", None, fetch=fetch),))])
    attachment = Attachment.objects.get()
    assert calls == [1]
    assert attachment.size == 12 and len(attachment.sha256) == 64


def test_failing_lazy_attachment_keeps_the_message(account):
    def fetch() -> bytes:
        raise ConnectionError("gone")

    store_batch(account, [message(attachments=(ParsedAttachment("a.txt", "text/plain", 5, fetch=fetch),))])
    assert Communication.objects.count() == 1
    assert Attachment.objects.get().stored_name == ""


def test_nul_characters_never_reach_the_database(account):
    store_batch(account, [message(subject="a\x00b", body_text="c\x00d", body_html="<p>e\x00</p>")])
    communication = Communication.objects.get()
    assert (communication.subject, communication.body_text, communication.body_html) == ("ab", "cd", "<p>e</p>")


def test_a_failing_batch_stores_nothing(account, monkeypatch):
    import conversations.ingest as ingest

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    # Fails after communications and participants went in: all of it must roll back.
    monkeypatch.setattr(ingest, "start_storing", boom)
    with pytest.raises(RuntimeError):
        store_batch(account, [message(), message()])
    assert not Communication.objects.exists()
    assert not Contact.objects.exists()
    assert not Conversation.objects.exists()


# --- provider copies (refs), flags and deletions ----------------------------------------

from conversations.ingest import apply_updates, mark_deleted, remove_refs  # noqa: E402


def test_same_message_in_two_folders_is_stored_once_with_both_labels(account):
    inbox = message(provider_message_id="mid:x@y", labels=("INBOX",), ref="INBOX:1:5")
    archive = dataclasses.replace(inbox, labels=("Archive",), ref="Archive:7:9")
    store_batch(account, [inbox], merge_labels=True)
    result = store_batch(account, [archive], merge_labels=True)
    assert result.updated == 1
    communication = Communication.objects.get()
    assert communication.labels == ["INBOX", "Archive"]
    assert sorted(communication.refs.values_list("ref", flat=True)) == ["Archive:7:9", "INBOX:1:5"]


def test_flag_updates_by_ref(account):
    store_batch(account, [message(ref="INBOX:1:1", is_read=False), message(ref="INBOX:1:2", is_read=False)])
    assert apply_updates(account, [("INBOX:1:1", True, True), ("INBOX:1:2", None, None)]) == 1
    states = dict(Communication.objects.values_list("refs__ref", "is_read"))
    assert states == {"INBOX:1:1": True, "INBOX:1:2": False}
    assert Communication.objects.get(refs__ref="INBOX:1:1").is_starred is True


def test_label_updates_replace_the_whole_label_set(account):
    store_batch(account, [message(ref="g1", labels=("INBOX", "UNREAD")), message(ref="g2", labels=("INBOX",))])
    assert apply_updates(account, [("g1", None, None, ("Work", "INBOX", "Work")), ("g2", None, None, None)]) == 1
    labels = dict(Communication.objects.values_list("refs__ref", "labels"))
    assert labels == {"g1": ["INBOX", "Work"], "g2": ["INBOX"]}


def test_removing_the_last_copy_soft_deletes(account):
    shared = message(provider_message_id="mid:a@b", labels=("INBOX",), ref="INBOX:1:1")
    store_batch(account, [shared, dataclasses.replace(shared, labels=("Sent",), ref="Sent:1:4")], merge_labels=True)
    assert remove_refs(account, ["INBOX:1:1"]) == 0
    communication = Communication.objects.get()
    assert communication.labels == ["Sent"] and communication.deleted_at is None
    assert remove_refs(account, ["Sent:1:4"]) == 1
    assert Communication.objects.get().deleted_at is not None


def test_re_seen_message_is_undeleted(account):
    original = message()
    store_batch(account, [original])
    assert mark_deleted(account, [original.provider_message_id]) == 1
    assert store_batch(account, [original]).updated == 1
    assert Communication.objects.get().deleted_at is None


def test_conversation_counters_cover_every_batch(account):
    base = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    store_batch(account, [message(provider_thread_id="T9", sent_at=base + dt.timedelta(hours=2))])
    store_batch(account, [message(provider_thread_id="T9", sent_at=base),
                          message(provider_thread_id="T9", sent_at=None),
                          message(provider_thread_id="T9", sent_at=base + dt.timedelta(hours=5))])
    conversation = Conversation.objects.get()
    assert conversation.message_count == 4
    assert conversation.first_message_at == base
    assert conversation.last_message_at == base + dt.timedelta(hours=5)


def _count(account) -> int:
    account.refresh_from_db(fields=["communication_count"])
    return account.communication_count


def test_account_count_follows_creates_deletes_and_revivals(account, other_account):
    from django.core.management import call_command

    first, second = message(provider_message_id="a", ref="r-a"), message(provider_message_id="b", ref="r-b")
    store_batch(account, [first, second, message(provider_message_id="c")])
    store_batch(other_account, [message(provider_message_id="a")])
    store_batch(account, [first])  # seen again: no change
    assert (_count(account), _count(other_account)) == (3, 1)
    mark_deleted(account, ["a", "a", "missing"])
    remove_refs(account, ["r-b"])
    assert _count(account) == 1
    mark_deleted(account, ["a"])  # already deleted: counted once
    assert _count(account) == 1
    store_batch(account, [first])  # back at the provider
    assert _count(account) == 2
    # A plain save of a copy read before those changes does not write back its stale count.
    stale = type(account).objects.get(pk=account.pk)
    store_batch(account, [message(provider_message_id="d")])
    stale.display_name = "Renamed"
    stale.save()
    assert _count(account) == 3 == Communication.objects.filter(account=account, deleted_at__isnull=True).count()
    type(account).objects.filter(pk=account.pk).update(communication_count=99)
    call_command("recount_communications", stdout=open("/dev/null", "w"))
    assert _count(account) == 3 and _count(other_account) == 1
