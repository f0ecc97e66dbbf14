"""Team sharing on every API read path: what a teammate sees of an account at each sharing level.

Alice owns the account; Bob is her teammate. One message with a subject, a body word, a
label and a stored attachment; each test sets the account's sharing and reads as Bob.
"""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversations.ingest import store_batch
from conversations.messages import ParsedAttachment
from conversations.models import Communication
from conversations.visibility import SHARED_LEVELS
from integrations.models import ProviderAccount
from tests.factories import email, message

pytestmark = pytest.mark.django_db

SUBJECT_WORD = "initech"
BODY_WORD = "marzipan"
HIDDEN_BELOW_EVERYTHING = ("snippet", "labels", "is_read", "is_starred")


def client_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def alice(user) -> APIClient:
    return client_for(user)


@pytest.fixture
def bob(other_user) -> APIClient:
    return client_for(other_user)


@pytest.fixture
def mail(account) -> Communication:
    stored = store_batch(account, [message(
        subject=f"Acquisition of {SUBJECT_WORD.title()}",
        body_text=f"The price is {BODY_WORD}.",
        body_html=f"<p>The price is <b>{BODY_WORD}</b>.<script>alert(1)</script></p>",
        sender=email("carol@acme.com", "Carol Jones"),
        labels=("Deals",),
        is_read=True,
        attachments=(ParsedAttachment.from_bytes("terms.pdf", "application/pdf", b"%PDF-1.4 the terms"),),
    )])
    return Communication.objects.get(pk=stored.created_ids[0])


def share(account: ProviderAccount, sharing: str) -> None:
    account.sharing = sharing
    account.save(update_fields=["sharing"])


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def attachment_url(mail: Communication) -> str:
    return f"/api/v1/communications/{mail.pk}/attachments/{mail.attachments.get().pk}/"


def contact_id(mail: Communication) -> int:
    return mail.participants.get(role="from").contact_id


# ------------------------------------------------------------------------------------- private

def test_private_mail_does_not_exist_for_a_teammate(bob, account, mail):
    assert account.sharing == "private"  # the default
    assert ids(bob.get("/api/v1/communications/")) == []
    assert bob.get(f"/api/v1/communications/{mail.pk}/").status_code == 404
    assert bob.get(attachment_url(mail)).status_code == 404
    assert ids(bob.get(f"/api/v1/contacts/{contact_id(mail)}/timeline/")) == []
    assert ids(bob.get("/api/v1/conversations/")) == []
    assert bob.get(f"/api/v1/conversations/{mail.conversation_id}/").status_code == 404
    assert ids(bob.get("/api/v1/communications/", {"q": BODY_WORD})) == []


def test_the_owner_sees_everything_of_private_mail(alice, mail):
    detail = alice.get(f"/api/v1/communications/{mail.pk}/").json()
    assert detail["access"] == "everything"
    assert detail["subject"] == "Acquisition of Initech"
    assert detail["body_text"] == "The price is marzipan."
    assert detail["labels"] == ["Deals"] and detail["is_read"] is True
    assert [a["filename"] for a in detail["attachments"]] == ["terms.pdf"]
    download = alice.get(attachment_url(mail))
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"%PDF-1.4 the terms"
    assert download["Content-Disposition"].startswith('attachment; filename="terms.pdf"')
    assert ids(alice.get("/api/v1/communications/", {"q": BODY_WORD})) == [mail.pk]


# ------------------------------------------------------------------------------------ metadata

def test_metadata_shows_participants_and_times_only(bob, account, mail):
    share(account, "metadata")
    [row] = bob.get("/api/v1/communications/").json()["results"]
    assert row["access"] == "metadata"
    assert row["sent_at"] and row["channel"] == "email" and row["direction"] == "inbound"
    assert [p["address"] for p in row["participants"]] == ["carol@acme.com", "alice@example.org"]
    assert row["subject"] is None
    assert all(row[field] is None for field in HIDDEN_BELOW_EVERYTHING)
    detail = bob.get(f"/api/v1/communications/{mail.pk}/").json()
    assert detail["subject"] is None and detail["body_text"] is None and detail["body_html"] is None
    assert detail["attachments"] is None
    assert "marzipan" not in str(detail) and "Initech" not in str(detail) and "terms.pdf" not in str(detail)


def test_metadata_hides_what_search_and_labels_would_reveal(bob, account, mail):
    share(account, "metadata")
    assert ids(bob.get("/api/v1/communications/", {"q": SUBJECT_WORD})) == []
    assert ids(bob.get("/api/v1/communications/", {"q": BODY_WORD})) == []
    assert ids(bob.get("/api/v1/communications/", {"label": "Deals"})) == []
    assert bob.get(attachment_url(mail)).status_code == 404


def test_metadata_conversation_has_no_subject(bob, account, mail):
    share(account, "metadata")
    conversation = bob.get(f"/api/v1/conversations/{mail.conversation_id}/").json()
    assert conversation["subject"] is None
    assert conversation["message_count"] == 1
    assert [c["id"] for c in conversation["communications"]] == [mail.pk]
    assert conversation["communications"][0]["subject"] is None


# ------------------------------------------------------------------------------------- subject

def test_subject_adds_the_subject_and_nothing_more(bob, account, mail):
    share(account, "subject")
    [row] = bob.get("/api/v1/communications/").json()["results"]
    assert row["access"] == "subject"
    assert row["subject"] == "Acquisition of Initech"
    assert all(row[field] is None for field in HIDDEN_BELOW_EVERYTHING)
    detail = bob.get(f"/api/v1/communications/{mail.pk}/").json()
    assert detail["body_text"] is None and detail["body_html"] is None and detail["attachments"] is None
    assert bob.get(attachment_url(mail)).status_code == 404


def test_subject_level_search_finds_subject_words_only(bob, account, mail):
    share(account, "subject")
    assert ids(bob.get("/api/v1/communications/", {"q": SUBJECT_WORD})) == [mail.pk]
    assert ids(bob.get("/api/v1/communications/", {"q": BODY_WORD})) == []
    # A subject word and a body word together: the body word must not make it match.
    assert ids(bob.get("/api/v1/communications/", {"q": f"{SUBJECT_WORD} {BODY_WORD}"})) == []
    assert ids(bob.get("/api/v1/communications/", {"label": "Deals"})) == []


def test_subject_level_conversation_shows_its_subject(bob, account, mail):
    share(account, "subject")
    [conversation] = bob.get("/api/v1/conversations/").json()["results"]
    assert conversation["subject"] == "Acquisition of Initech"


# ---------------------------------------------------------------------------------- everything

def test_everything_shows_body_and_attachments(bob, account, mail):
    share(account, "everything")
    detail = bob.get(f"/api/v1/communications/{mail.pk}/").json()
    assert detail["access"] == "everything"
    assert detail["subject"] == "Acquisition of Initech"
    assert detail["snippet"] == "The price is marzipan."
    assert detail["body_text"] == "The price is marzipan."
    assert "<b>marzipan</b>" in detail["body_html"] and "script" not in detail["body_html"]
    assert detail["labels"] == ["Deals"]
    [attachment] = detail["attachments"]
    assert attachment["download_url"].endswith(attachment_url(mail))
    download = bob.get(attachment["download_url"])
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"%PDF-1.4 the terms"


def test_everything_is_searchable_by_body_and_label(bob, account, mail):
    share(account, "everything")
    assert ids(bob.get("/api/v1/communications/", {"q": BODY_WORD})) == [mail.pk]
    assert ids(bob.get("/api/v1/communications/", {"q": f"{SUBJECT_WORD} {BODY_WORD}"})) == [mail.pk]
    assert ids(bob.get("/api/v1/communications/", {"label": "Deals"})) == [mail.pk]


# ---------------------------------------------------------------------------------- timelines

@pytest.mark.parametrize("sharing, visible, subject", [
    ("private", False, None),
    ("metadata", True, None),
    ("subject", True, "Acquisition of Initech"),
    ("everything", True, "Acquisition of Initech"),
])
def test_a_contacts_timeline_follows_each_accounts_sharing(bob, other_account, account, mail, sharing, visible,
                                                           subject):
    share(account, sharing)
    # Bob's own mail with Carol is always on his timeline of her, at "everything".
    own = store_batch(other_account, [message(sender=email("carol@acme.com"), to=(email("bob@example.net"),),
                                              subject="Bob and Carol")]).created_ids
    rows = bob.get(f"/api/v1/contacts/{contact_id(mail)}/timeline/").json()["results"]
    assert [(r["id"], r["access"], r["subject"]) for r in rows] == [
        (own[0], "everything", "Bob and Carol"),
        *([(mail.pk, sharing, subject)] if visible else []),
    ]


# ------------------------------------------------------------------------ who reads everything

def test_view_all_content_holders_and_superusers_read_private_mail(account, mail):
    auditor = get_user_model().objects.create_user("audit", password="pw-audit-123")
    auditor.user_permissions.add(Permission.objects.get(codename="view_all_content"))
    root = get_user_model().objects.create_superuser("root", password="pw-root-123")
    for reader in (auditor, root):
        detail = client_for(reader).get(f"/api/v1/communications/{mail.pk}/").json()
        assert detail["access"] == "everything" and detail["body_text"] == "The price is marzipan."


def test_staff_status_alone_grants_nothing(account, mail):
    staff = get_user_model().objects.create_user("staff", password="pw-staff-123", is_staff=True)
    assert client_for(staff).get(f"/api/v1/communications/{mail.pk}/").status_code == 404


def test_an_unknown_sharing_value_lets_no_one_in(bob, account, mail):
    ProviderAccount.objects.filter(pk=account.pk).update(sharing="team")  # not a level: treated as private
    assert ids(bob.get("/api/v1/communications/")) == []


def test_sharing_levels_are_the_accounts_choices():
    assert set(SHARED_LEVELS) | {"private"} == set(ProviderAccount.Sharing.values)


# ----------------------------------------------------------------------- conversation subjects

def test_a_conversation_is_named_only_from_subjects_the_reader_sees(bob, account, other_account, mail):
    # Bob replies in Alice's private thread: the conversation is shared, her subject is not.
    reply = store_batch(other_account, [message(
        subject="Re: lunch on Friday", in_reply_to=Communication.objects.get(pk=mail.pk).rfc_message_id,
        sender=email("bob@example.net"), to=(email("alice@example.org"),),
    )]).created_ids[0]
    assert Communication.objects.get(pk=reply).conversation_id == mail.conversation_id
    conversation = bob.get(f"/api/v1/conversations/{mail.conversation_id}/").json()
    assert conversation["subject"] == "lunch on Friday"  # his own, without "Re:"
    assert conversation["message_count"] == 1
    assert [c["id"] for c in conversation["communications"]] == [reply]
    assert "Initech" not in str(conversation)
    assert client_for(account.owner).get(f"/api/v1/conversations/{mail.conversation_id}/").json()[
        "subject"] == "Acquisition of Initech"
