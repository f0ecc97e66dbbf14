"""No message can sink its batch: address limits, bounded columns, quarantine, contact caps.

Over-long values are what PostgreSQL refuses (DataError) and SQLite silently stores, so
the column checks here read back what was stored on either database.
"""
from __future__ import annotations

import dataclasses

import pytest
from django.db import connection, models

from contacts.models import Company, Contact, ContactIdentifier
from contacts.normalize import is_valid_email, normalize_email
from conversations.attachments import storage_name, start_storing
from conversations.ingest import remove_ref_ranges, store_batch
from conversations.messages import (
    Address,
    AddressKind,
    ParsedAttachment,
    message_from_json,
    message_to_json,
)
from conversations.models import Attachment, Communication, Conversation, MessageRef, Participant, ThreadKey
from integrations.models import QuarantinedMessage, SyncRun
from integrations.quarantine import retry
from integrations.sync import sync_account
from tests.factories import email, message, phone
from tests.test_sync_engine import ScriptedProvider, scripted, scripted_account  # noqa: F401  fixtures

pytestmark = pytest.mark.django_db

VALID_LONGEST_DOMAIN = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters


# --- RFC 5321 limits -------------------------------------------------------------------------

@pytest.mark.parametrize("address", [
    "x" * 65 + "@acme.com",  # local part over 64
    "bob@" + "d" * 300 + ".com",  # domain over 253
    "bob@" + "l" * 64 + ".com",  # a label over 63
    "bob@acme..com",  # an empty label
    "x" * 64 + "@" + VALID_LONGEST_DOMAIN + "x",  # total over 320 via a 254-character domain
])
def test_addresses_over_rfc5321_limits_are_not_addresses(address):
    assert normalize_email(address) == ""
    assert not is_valid_email(address)


def test_addresses_at_the_limits_are_kept():
    longest = "x" * 64 + "@" + VALID_LONGEST_DOMAIN
    assert normalize_email(longest.upper()) == longest
    assert len(longest) == 318 and is_valid_email(longest)


# --- every bounded column of the ingest path, pushed one past its limit ---------------------

INGEST_MODELS = (Communication, Participant, Attachment, MessageRef, ThreadKey, Conversation, Contact, Company,
                 ContactIdentifier)
# Bounded columns no message value reaches unchecked: fixed choices, or values ingest computes.
NOT_FROM_MESSAGES = {
    (Communication, "channel"), (Communication, "direction"), (Communication, "snippet"),
    (Conversation, "channel"), (Participant, "role"), (Participant, "kind"), (Attachment, "sha256"),
    (Attachment, "stored_name"), (Contact, "created_from"), (ContactIdentifier, "kind"),
    # A company's name comes from its domain's labels (63 characters at most).
    (Company, "name"),
}
FED_ONE_PAST = {
    (Communication, "provider_message_id"), (Communication, "rfc_message_id"),
    (Communication, "provider_thread_id"), (Communication, "in_reply_to"), (Communication, "delivery_status"),
    (Participant, "address"), (Participant, "display_name"), (Attachment, "filename"),
    (Attachment, "content_type"), (Attachment, "content_id"), (MessageRef, "ref"), (MessageRef, "label"),
    (ThreadKey, "key"), (Contact, "name"), (Company, "domain"), (ContactIdentifier, "value"),
}


def _bounded_columns() -> set[tuple[type[models.Model], str]]:
    return {
        (model, field.name)
        for model in INGEST_MODELS
        for field in model._meta.get_fields()
        if isinstance(field, models.CharField) and field.max_length
    }


def _over(model: type[models.Model], name: str, fill: str = "x") -> str:
    return fill * (model._meta.get_field(name).max_length + 1)


def test_the_oversize_test_feeds_every_bounded_column():
    assert _bounded_columns() == FED_ONE_PAST | NOT_FROM_MESSAGES


def test_every_bounded_column_takes_max_plus_one_without_losing_the_batch(account):
    rfc_id = _over(Communication, "rfc_message_id") + "@x"
    poison = message(
        provider_message_id=_over(Communication, "provider_message_id"),
        rfc_message_id=rfc_id,
        provider_thread_id=_over(Communication, "provider_thread_id"),
        in_reply_to=_over(Communication, "in_reply_to"),
        references=(rfc_id + "ref",),
        delivery_status=_over(Communication, "delivery_status"),
        sender=email("x" * 65 + "@acme.com", _over(Participant, "display_name")),
        to=(email("bob@" + "d" * 300 + ".com"), email("carol@" + VALID_LONGEST_DOMAIN, _over(Contact, "name")),
            email("dave@" + "e" * 400 + ".org")),
        cc=(Address(AddressKind.EMAIL, _over(Participant, "address") + "@x.org"),
            phone(_over(ContactIdentifier, "value", "9"))),
        labels=(_over(MessageRef, "label"),),
        ref=_over(MessageRef, "ref"),
        attachments=(ParsedAttachment.from_bytes(
            _over(Attachment, "filename"), _over(Attachment, "content_type"), b"data",
            content_id=_over(Attachment, "content_id"),
        ),),
    )
    good = [message(), message()]

    result = store_batch(account, [good[0], poison, good[1]])

    assert result.created == 3
    assert Communication.objects.filter(account=account).count() == 3
    for model, name in _bounded_columns():
        limit = model._meta.get_field(name).max_length
        longest = max((len(v) for v in model.objects.values_list(name, flat=True) if v), default=0)
        assert longest <= limit, f"{model.__name__}.{name} holds {longest} > {limit} characters"
    # Invalid addresses stay participants' raw text and never become contacts or companies.
    stored = Communication.objects.get(rfc_message_id__startswith="xxx")
    addresses = set(stored.participants.values_list("address", "contact_id"))
    assert any(address.startswith("bob@ddd") and contact is None for address, contact in addresses)
    assert not Company.objects.filter(domain__startswith="ddd").exists()
    assert not ContactIdentifier.objects.filter(value__startswith="xxxxxxxx").exists()
    assert not ContactIdentifier.objects.filter(value__startswith="99999").exists()
    # The longest valid domain still makes its company and contact.
    assert Company.objects.filter(domain=VALID_LONGEST_DOMAIN).exists()
    assert ContactIdentifier.objects.filter(value="carol@" + VALID_LONGEST_DOMAIN).exists()
    # Storing it again is a no-op: the long provider id maps to the same stored id.
    assert store_batch(account, [poison]).created == 0


def test_long_provider_ids_sharing_a_prefix_stay_two_messages(account):
    prefix = "p" * 300
    result = store_batch(account, [message(provider_message_id=prefix + "1"), message(provider_message_id=prefix + "2")])
    assert result.created == 2


# --- quarantine ------------------------------------------------------------------------------

def _poison(**fields) -> object:
    # A negative size breaks the column's CHECK constraint on every database: a message no
    # clipping can save, as a provider bug or a hostile input might produce.
    return message(raw_size=-1, **fields)


def test_a_poison_message_is_quarantined_and_the_rest_of_its_batch_stored(scripted_account, scripted):
    from integrations.providers.base import Batch

    good = [message() for _ in range(7)]
    bad = _poison(subject="the poison one", ref="INBOX:1:99")
    scripted.script = [lambda: Batch(messages=[*good[:3], bad, *good[3:]], new_cursor={"c": 2})]

    outcome = sync_account(scripted_account.pk)

    assert outcome.status == "succeeded", outcome
    assert "1 quarantined" in outcome.message
    assert Communication.objects.filter(account=scripted_account).count() == 7
    run = SyncRun.objects.get(account=scripted_account)
    assert (run.created, run.failed, run.fetched) == (7, 1, 8)
    item = QuarantinedMessage.objects.get()
    assert item.provider_message_id == bad.provider_message_id and item.ref == "INBOX:1:99"
    assert "IntegrityError" in item.reason and item.attempts == 1
    assert "poison" not in item.reason and "Body of" not in item.reason  # no content in the reason
    scripted_account.refresh_from_db()
    assert scripted_account.sync_cursor == {"c": 2}  # the mailbox moved on


def test_the_same_message_failing_again_counts_an_attempt(scripted_account, scripted):
    from integrations.providers.base import Batch

    bad = _poison()
    scripted.script = [lambda: Batch(messages=[bad, message()], new_cursor={"c": 1}),
                       lambda: Batch(messages=[bad], new_cursor={"c": 2})]
    sync_account(scripted_account.pk)
    sync_account(scripted_account.pk)
    assert QuarantinedMessage.objects.get().attempts == 2


def test_a_batch_where_every_message_fails_is_a_systemic_failure_not_quarantine(scripted_account, scripted):
    from integrations.providers.base import Batch

    scripted.script = [lambda: Batch(messages=[_poison() for _ in range(12)], new_cursor={"c": 1})]
    outcome = sync_account(scripted_account.pk)
    assert outcome.status == "failed"
    assert "SystemicStoreFailure" in outcome.message or "Internal error" in outcome.message
    assert not QuarantinedMessage.objects.exists()
    scripted_account.refresh_from_db()
    assert scripted_account.sync_cursor == {}  # nothing skipped: the batch is fetched again


def test_retry_stores_a_quarantined_message_once_it_can_be_stored(account):
    from integrations.quarantine import quarantine

    bad = _poison(body_text="keep me", attachments=(ParsedAttachment.from_bytes("a.txt", "text/plain", b"hi"),))
    item = quarantine(account, bad, ValueError("boom"))
    assert retry([item]) == (0, 1)
    item.refresh_from_db()
    assert item.attempts == 2 and "IntegrityError" in item.reason

    item.copy = {**item.copy, "raw_size": 10}  # whatever made it fail is fixed
    item.save()
    assert retry([item]) == (1, 0)
    stored = Communication.objects.get(account=account, provider_message_id=bad.provider_message_id)
    assert stored.body_text == "keep me"
    assert stored.attachments.get().open().read() == b"hi"
    assert not QuarantinedMessage.objects.exists()


def test_json_copy_round_trips_and_is_capped():
    original = message(
        labels=("INBOX",), references=("a@b",), warnings=("w",), cc=(phone("+15551234567"),),
        attachments=(ParsedAttachment.from_bytes("big.bin", "application/octet-stream", b"x" * 5000),),
    )
    copy, truncated = message_to_json(original, max_bytes=100_000)
    assert not truncated and message_from_json(copy) == original
    copy, truncated = message_to_json(dataclasses.replace(original, body_text="y" * 10_000), max_bytes=1000)
    restored = message_from_json(copy)
    assert truncated and len(restored.body_text) == 500
    assert restored.attachments[0].content is None and restored.attachments[0].sha256


# --- contacts per message ----------------------------------------------------------------------

def test_a_mass_mailing_creates_contacts_for_the_first_recipients_only(account, settings):
    settings.CRM_MAX_CONTACTS_PER_MESSAGE = 10
    known = Contact.objects.create(name="Known")
    ContactIdentifier.objects.create(contact=known, kind="email", value="known@far.example")
    recipients = tuple(email(f"r{n}@d{n}.example") for n in range(200)) + (email("known@far.example"),)
    store_batch(account, [message(to=recipients)])
    assert ContactIdentifier.objects.count() == 10 + 1  # the sender and 9 recipients, plus the known one
    assert Company.objects.count() <= 10
    # Past the cap an existing contact is still recognised.
    participant = Participant.objects.get(address="known@far.example")
    assert participant.contact_id == known.pk


# --- VANISHED-style ranges ------------------------------------------------------------------------

def test_wide_ranges_are_matched_against_stored_refs_not_expanded(account, django_assert_max_num_queries):
    store_batch(account, [message(ref=f"INBOX:7:{uid}", labels=("INBOX",)) for uid in (3, 5, 40_000_000)])
    store_batch(account, [message(ref="Sent:7:4", labels=("Sent",))])
    deleted = remove_ref_ranges(account, [("INBOX:7:", 1, 20_000_000), ("INBOX:7:", 4, 4)])
    assert deleted == 2
    assert set(MessageRef.objects.values_list("ref", flat=True)) == {"INBOX:7:40000000", "Sent:7:4"}
    assert remove_ref_ranges(account, [("INBOX:7:", 39_999_999, 40_000_001)]) == 1


# --- attachment files ------------------------------------------------------------------------------

def test_a_half_written_attachment_file_is_rewritten_not_reused(account, _media_root):
    content = b"the whole attachment " * 100
    parsed = ParsedAttachment.from_bytes("a.bin", "application/octet-stream", content)
    path = _media_root / storage_name(parsed.sha256)
    path.parent.mkdir(parents=True)
    path.write_bytes(content[:50])  # what a killed worker left behind
    store_batch(account, [message(attachments=(parsed,))])
    assert path.read_bytes() == content
    assert Attachment.objects.get().open().read() == content


def test_attachment_files_are_written_under_a_temporary_name_then_renamed(account, _media_root, monkeypatch):
    import os

    renames = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (renames.append((str(src), str(dst))), real_replace(src, dst)))
    parsed = ParsedAttachment.from_bytes("b.bin", "application/octet-stream", b"content")
    start_storing([parsed]).result()
    final = str(_media_root / storage_name(parsed.sha256))
    assert len(renames) == 1 and renames[0][1] == final and ".tmp-" in renames[0][0]
    assert not [p for p in (_media_root / "attachments").rglob(".tmp-*")]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="only PostgreSQL enforces lengths")
def test_postgresql_enforces_what_the_clipping_prevents(account):
    from django.db import DataError, transaction

    with pytest.raises(DataError), transaction.atomic():
        Company.objects.create(domain="x" * 300, name="X")


def test_many_narrow_ranges_are_not_expanded_past_the_limit(account, django_assert_max_num_queries):
    store_batch(account, [message(ref="INBOX:7:5", labels=("INBOX",))])
    # 400,000 numbers in 40 narrow ranges: matched against the one stored ref, not looked up.
    ranges = [("INBOX:7:", start, start + 9_999) for start in range(1, 400_000, 10_000)]
    with django_assert_max_num_queries(12):
        assert remove_ref_ranges(account, ranges) == 1


def test_an_io_failure_while_storing_fails_the_sync_instead_of_quarantining(scripted_account, scripted, monkeypatch):
    import integrations.quarantine as quarantine_module
    from integrations.providers.base import Batch

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(quarantine_module, "store_batch", disk_full)
    scripted.script = [lambda: Batch(messages=[message()], new_cursor={"c": 1})]
    assert sync_account(scripted_account.pk).status == "failed"
    assert not QuarantinedMessage.objects.exists()
    scripted_account.refresh_from_db()
    assert scripted_account.sync_cursor == {}


def test_parsed_addresses_over_the_limits_stay_participants_without_contacts(account):
    from conversations.parsing import parse_message

    long_local = "x" * 65 + "@acme.com"
    long_domain = "bob@" + "d" * 300 + ".com"
    raw = (f"From: Eve <{long_local}>\r\nTo: {long_domain}, carol@acme.com\r\nSubject: s\r\n"
           "Message-ID: <m1@x>\r\n\r\nbody\r\n").encode()
    parsed = parse_message(raw)
    assert parsed.sender.value == long_local and parsed.sender.display_name == "Eve"
    assert [a.value for a in parsed.to] == [long_domain, "carol@acme.com"]
    assert any("RFC 5321" in w for w in parsed.warnings)
    store_batch(account, [parsed])
    participants = dict(Participant.objects.values_list("address", "contact_id"))
    assert participants[long_local] is None and participants[long_domain[:320]] is None
    assert participants["carol@acme.com"] is not None
    assert not Company.objects.filter(domain__startswith="ddd").exists()


@pytest.mark.parametrize("pattern", ["<li><ul>", "<form><div>", "<div>", "<b></i>"])
def test_previews_of_hostile_html_are_linear(pattern):
    import time

    from conversations.rendering import sanitize_html

    hostile = pattern * 40_000 + "<p>last words</p><script>alert(1)</script>"
    started = time.perf_counter()
    shown = sanitize_html(hostile)
    assert time.perf_counter() - started < 2
    assert "last words" in shown and "<script" not in shown and "too complex" in shown


def test_ordinary_html_is_still_sanitised_as_html():
    from conversations.rendering import sanitize_html

    shown = sanitize_html("<table>" + "<tr><td><b>cell</b></td></tr>" * 500 + "</table><script>x</script>")
    assert "<b>cell</b>" in shown and "<script" not in shown and "too complex" not in shown
