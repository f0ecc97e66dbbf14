"""Twilio provider: connect, overlap dedupe, status updates, MMS, WhatsApp, threading, phone identity."""
from __future__ import annotations

import datetime as dt

import pytest
from rest_framework.test import APIClient

from contacts.models import Contact, ContactIdentifier
from contacts.normalize import normalize_phone
from conversations.models import Communication, Conversation
from integrations.models import ProviderAccount
from integrations.providers.twilio.provider import phone_address
from integrations.sync import sync_account
from tests.providers.twilio_harness import OUR_NUMBER, TwilioHarness

pytestmark = pytest.mark.django_db

THEM = "+14155550123"


@pytest.fixture
def harness(twilio_fake, user):
    return TwilioHarness(twilio_fake, user)


def add(harness: TwilioHarness, **kwargs):
    kwargs.setdefault("from_", THEM)
    kwargs.setdefault("to", OUR_NUMBER)
    return harness.fake.add_message(harness.twilio, **kwargs)


# --- connecting ------------------------------------------------------------------------------

def test_connect_through_the_api_checks_the_credentials_and_hides_them(harness, user):
    api = APIClient()
    api.force_authenticate(user)
    body = {"provider": "twilio", "config": {"account_sid": harness.twilio.sid, "numbers": ["(500) 555-0006"]},
            "credentials": {"auth_token": "wrong-token"}}
    refused = api.post("/api/v1/connectors/", body, format="json")
    assert refused.status_code == 400 and "Twilio refused the credentials" in str(refused.data)
    assert "wrong-token" not in refused.content.decode() and not ProviderAccount.objects.exists()

    body["credentials"] = {"auth_token": harness.twilio.auth_token}
    created = api.post("/api/v1/connectors/", body, format="json")
    assert created.status_code == 201, created.data
    assert created.data["config"] == {"account_sid": harness.twilio.sid, "numbers": [OUR_NUMBER]}
    assert harness.twilio.auth_token not in created.content.decode()
    account = ProviderAccount.objects.get()
    assert account.config["aliases"] == [OUR_NUMBER] and account.external_address == OUR_NUMBER
    assert account.credentials == {"auth_token": harness.twilio.auth_token}


def test_connect_refuses_a_number_the_account_does_not_have(harness, user):
    api = APIClient()
    api.force_authenticate(user)
    response = api.post("/api/v1/connectors/", {
        "provider": "twilio", "config": {"account_sid": harness.twilio.sid, "numbers": ["+15005550999"]},
        "credentials": {"auth_token": harness.twilio.auth_token}}, format="json")
    assert response.status_code == 400
    assert "+15005550999 is not an incoming number" in str(response.data) and OUR_NUMBER in str(response.data)


def test_connect_with_the_web_form_and_an_api_key(harness, client, user):
    key, secret = harness.fake.add_api_key(harness.twilio)
    client.force_login(user)
    form = {"account_sid": harness.twilio.sid, "numbers": f"{OUR_NUMBER}\nwhatsapp:{OUR_NUMBER}",
            "api_key_sid": key, "api_key_secret": "not-the-secret"}
    page = client.post("/connections/connect/twilio/", form)
    assert page.status_code == 200 and "Twilio refused the credentials" in page.content.decode()
    assert "not-the-secret" not in page.content.decode() and not ProviderAccount.objects.exists()
    page = client.post("/connections/connect/twilio/", {**form, "api_key_secret": secret})
    assert page.status_code == 302
    account = ProviderAccount.objects.get()
    assert account.config["numbers"] == [OUR_NUMBER, f"whatsapp:{OUR_NUMBER}"]
    assert account.credentials == {"api_key_sid": key, "api_key_secret": secret}
    assert harness.fake.calls("IncomingPhoneNumbers") and not harness.fake.calls("Messages")


def test_credentials_need_a_token_or_a_whole_key(harness, client, user):
    client.force_login(user)
    page = client.post("/connections/connect/twilio/", {"account_sid": harness.twilio.sid, "numbers": OUR_NUMBER})
    assert "Give the auth token, or an API key SID and secret." in page.content.decode()
    assert not harness.fake.requests


# --- syncing ---------------------------------------------------------------------------------

def test_overlap_rereads_without_duplicates_and_catches_late_arrivals(harness, settings):
    account = harness.make_account()
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    add(harness, body="old", sent_at=now - dt.timedelta(days=2))
    add(harness, body="recent", sent_at=now - dt.timedelta(minutes=3))
    add(harness, body="too old", sent_at=now - dt.timedelta(days=settings.TWILIO_INITIAL_DAYS + 1))
    sync_account(account.pk)
    assert sorted(Communication.objects.values_list("body_text", flat=True)) == ["old", "recent"]
    # Listed late, dated inside the overlap window before the cursor: the next poll still gets it.
    add(harness, body="late", sent_at=now - dt.timedelta(minutes=5))
    sync_account(account.pk)
    assert sorted(Communication.objects.values_list("body_text", flat=True)) == ["late", "old", "recent"]
    listings = harness.fake.calls(r"Messages\.json")
    assert all("DateSent%3E=" in target for target in listings)
    sync_account(account.pk)
    assert Communication.objects.count() == 3


def test_a_status_change_updates_delivery_status_never_a_duplicate(harness):
    account = harness.make_account()
    sent = add(harness, from_=OUR_NUMBER, to=THEM, body="On my way", direction="outbound-api", status="queued")
    sync_account(account.pk)
    stored = Communication.objects.get()
    assert (stored.direction, stored.delivery_status, stored.subject) == ("outbound", "queued", "")
    harness.fake.set_status(harness.twilio, sent.sid, "delivered")
    sync_account(account.pk)
    stored.refresh_from_db()
    assert stored.delivery_status == "delivered" and Communication.objects.count() == 1


def test_mms_media_become_attachments_under_the_cap(harness, settings):
    settings.ATTACHMENT_MAX_BYTES = 1000
    account = harness.make_account()
    add(harness, body="Two pictures", media=[("image/png", b"\x89PNG small"), ("image/jpeg", b"x" * 5000)])
    sync_account(account.pk)
    stored = Communication.objects.get()
    assert stored.channel == "mms"
    small, big = sorted(stored.attachments.all(), key=lambda a: a.content_type)[::-1]
    assert (small.content_type, small.size, bool(small.stored_name)) == ("image/png", 10, True)
    assert (big.content_type, big.size, big.stored_name) == ("image/jpeg", 5000, "")


def test_whatsapp_messages_have_their_channel_and_conversation(harness):
    harness.numbers = [OUR_NUMBER, f"whatsapp:{OUR_NUMBER}"]
    account = harness.make_account()
    add(harness, from_=f"whatsapp:{THEM}", to=f"whatsapp:{OUR_NUMBER}", body="Hola")
    add(harness, body="An SMS from the same person")
    sync_account(account.pk)
    whatsapp = Communication.objects.get(channel="whatsapp")
    sms = Communication.objects.get(channel="sms")
    assert whatsapp.participants.filter(address=THEM).exists()
    assert whatsapp.conversation_id != sms.conversation_id


def test_one_to_one_conversation_holds_both_directions(harness):
    account = harness.make_account()
    add(harness, body="Question?")
    add(harness, from_=OUR_NUMBER, to=THEM, body="Answer.", direction="outbound-reply")
    add(harness, from_="+14155550999", body="Someone else")
    sync_account(account.pk)
    question, answer = (Communication.objects.get(body_text=b) for b in ("Question?", "Answer."))
    assert question.conversation_id == answer.conversation_id
    assert Communication.objects.get(body_text="Someone else").conversation_id != question.conversation_id
    assert Conversation.objects.count() == 2


def test_group_mms_conversation_is_the_participant_set(harness):
    account = harness.make_account()
    group = f"{OUR_NUMBER},+14155550111"
    add(harness, to=group, body="To the group", media=[("image/gif", b"GIF89a")])
    add(harness, from_="+14155550111", to=f"{OUR_NUMBER},{THEM}", body="Reply to the group")
    add(harness, body="Just to us")
    sync_account(account.pk)
    first, reply, alone = (Communication.objects.get(body_text=b) for b in
                           ("To the group", "Reply to the group", "Just to us"))
    assert first.conversation_id == reply.conversation_id != alone.conversation_id
    assert set(first.participants.values_list("address", flat=True)) == {OUR_NUMBER, THEM, "+14155550111"}


def test_one_contact_across_email_and_phone(harness):
    contact = Contact.objects.create(name="Carol")
    ContactIdentifier.objects.create(contact=contact, kind="email", value="carol@acme.com")
    ContactIdentifier.objects.create(contact=contact, kind="phone", value=THEM)
    account = harness.make_account()
    add(harness, from_="(415) 555-0123", body="National format")
    sync_account(account.pk)
    participant = Communication.objects.get().participants.get(role="from")
    assert participant.address == THEM and participant.contact_id == contact.pk
    assert Contact.objects.count() == 1  # our own number never becomes a contact


@pytest.mark.parametrize(("raw", "region", "expected"), [
    ("+1 415-555-0123", "US", "+14155550123"),
    ("(415) 555-0123", "US", "+14155550123"),
    ("whatsapp:+44 20 7946 0958", "US", "+442079460958"),
    ("020 7946 0958", "GB", "+442079460958"),
    ("0044 20 7946 0958", "GB", "+442079460958"),
    ("ACME", "US", "ACME"),  # an alphanumeric sender id stays as it is
])
def test_phone_normalisation(raw, region, expected, settings):
    settings.PHONE_DEFAULT_REGION = region
    assert phone_address(raw).value == expected
    assert normalize_phone("+14155550123") == "+14155550123"


def test_rate_limit_and_server_errors_are_retried_later(harness):
    account = harness.make_account()
    add(harness, body="Hello")
    harness.fake.fail(r"Messages\.json", 429, retry_after="7")
    outcome = sync_account(account.pk)
    account.refresh_from_db()
    # Throttled, not broken: retried on schedule, never reauth_required.
    assert outcome.status == "failed" and account.status != "reauth_required" and account.next_sync_at is not None
    harness.fake.fail(r"Messages\.json", 503)
    assert sync_account(account.pk).status == "failed"
    account.refresh_from_db()
    assert account.status == "error" and "retried" in account.last_error
    assert sync_account(account.pk).status == "succeeded"
    assert Communication.objects.count() == 1
