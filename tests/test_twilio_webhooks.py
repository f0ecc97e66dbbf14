"""Twilio webhooks: recorded payloads (tests/fixtures/twilio/) signed by the real RequestValidator."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.utils.module_loading import import_string
from django_q.models import OrmQ
from django_q.signing import SignedPackage

from conversations.models import Communication
from integrations.providers.twilio.webhooks import STORE_TASK
from integrations.signals import communications_created
from integrations.sync import sync_account
from tests.fakes.twilio import FakeTwilio
from tests.providers.twilio_harness import OUR_NUMBER, TwilioHarness

pytestmark = pytest.mark.django_db(transaction=False)

FIXTURES = Path(__file__).parent / "fixtures" / "twilio"
PUBLIC = "https://crm.example.com"


@pytest.fixture
def harness(twilio_fake, user, settings):
    settings.APP_PUBLIC_URL = PUBLIC
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "10.0.0.5"]  # the proxy forwards to this host
    return TwilioHarness(twilio_fake, user)


def queued_stores() -> list[dict]:
    """The inbound-message tasks in django-q2's database queue, as the cluster would read them."""
    tasks = [SignedPackage.loads(row.payload) for row in OrmQ.objects.order_by("pk")]
    return [task for task in tasks if task["func"] == STORE_TASK]


def run_queued() -> int:
    """Runs (and removes) the queued inbound-message tasks, as a qcluster worker would; their count."""
    ran = 0
    for row in OrmQ.objects.order_by("pk"):
        task = SignedPackage.loads(row.payload)
        if task["func"] != STORE_TASK:
            continue  # automation's follow-ups, not under test here
        row.delete()
        import_string(task["func"])(*task["args"], **task["kwargs"])
        ran += 1
    return ran


def payload(name: str, harness: TwilioHarness, **changes: str) -> dict[str, str]:
    params = json.loads((FIXTURES / f"{name}.json").read_text())
    return {**params, "AccountSid": harness.twilio.sid, **changes}


def post(client, path: str, params: dict[str, str], token: str | None, **headers: str):
    signed = FakeTwilio.signed_webhook(token, f"{PUBLIC}{path}", params) if token else {}
    extra = {f"HTTP_{name.upper().replace('-', '_')}": value for name, value in {**signed, **headers}.items()}
    return client.post(path, params, **extra)


def test_inbound_sms_is_queued_then_stored_once_and_announced(client, harness, django_capture_on_commit_callbacks,
                                                               django_assert_max_num_queries):
    account = harness.make_account()
    seen = []

    def receiver(sender, account, communication_ids, origin, **kwargs):
        seen.append((origin, list(communication_ids)))

    # Behind a proxy: Django is reached as another host; the signature covers the public URL.
    with django_assert_max_num_queries(2):  # the accounts of the AccountSid, the queue insert
        response = post(client, "/webhooks/twilio/sms", payload("inbound_sms", harness), harness.twilio.auth_token,
                        Host="10.0.0.5:8000")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml") and b"<Response/>" in response.content
    assert not Communication.objects.exists()  # answered before storing: the payload waits in the queue
    [task] = queued_stores()
    assert task["args"][0] == [account.pk]
    communications_created.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert run_queued() == 1
    finally:
        communications_created.disconnect(receiver)
    stored = Communication.objects.get(account=account)
    assert stored.provider_message_id == "SM0c6f4b3e4a0d4b1c9a7e2f3d5b6c7d8e"
    assert (stored.channel, stored.direction, stored.body_text) == ("sms", "inbound",
                                                                    "Hi, can we move our call to 3pm?")
    assert seen == [("webhook", [stored.pk])]


def test_webhook_and_poll_of_one_sid_stay_one_communication(client, harness):
    account = harness.make_account()
    params = payload("inbound_sms", harness)
    assert post(client, "/webhooks/twilio/sms", params, harness.twilio.auth_token).status_code == 200
    assert post(client, "/webhooks/twilio/sms", params, harness.twilio.auth_token).status_code == 200  # a retry
    assert run_queued() == 2
    assert Communication.objects.filter(account=account).count() == 1
    harness.fake.add_message(harness.twilio, sid=params["MessageSid"], from_=params["From"], to=params["To"],
                             body=params["Body"])
    assert sync_account(account.pk).status == "succeeded"
    assert Communication.objects.filter(account=account).count() == 1


@pytest.mark.parametrize("token", [None, "a-wrong-token"])
def test_bad_or_missing_signature_is_refused_and_nothing_stored(client, harness, token):
    harness.make_account()
    response = post(client, "/webhooks/twilio/sms", payload("inbound_sms", harness), token)
    assert response.status_code == 403
    assert not queued_stores() and not Communication.objects.exists()


def test_signature_over_another_url_is_refused(client, harness):
    """Signed for the Host the server was reached by, not the public URL Twilio posts to."""
    harness.make_account()
    params = payload("inbound_sms", harness)
    signed = FakeTwilio.signed_webhook(harness.twilio.auth_token, "http://testserver/webhooks/twilio/sms", params)
    response = client.post("/webhooks/twilio/sms", params, HTTP_X_TWILIO_SIGNATURE=signed["X-Twilio-Signature"])
    assert response.status_code == 403 and not queued_stores() and not Communication.objects.exists()


def test_api_key_only_account_cannot_verify_webhooks(client, harness, caplog):
    account = harness.make_account()
    key, secret = harness.fake.add_api_key(harness.twilio)
    account.credentials = {"api_key_sid": key, "api_key_secret": secret}
    account.save()
    response = post(client, "/webhooks/twilio/sms", payload("inbound_sms", harness), harness.twilio.auth_token)
    assert response.status_code == 403 and not queued_stores() and not Communication.objects.exists()
    assert "API key only" in caplog.text and secret not in caplog.text and harness.twilio.auth_token not in caplog.text


@pytest.mark.parametrize("changes", [{"MessageSid": "", "SmsSid": ""}, {"NumMedia": "many"}, {"From": ""},
                                     {"NumMedia": "1"}])
def test_malformed_parameters_get_400(client, harness, changes):
    harness.make_account()
    response = post(client, "/webhooks/twilio/sms", payload("inbound_sms", harness, **changes),
                    harness.twilio.auth_token)
    assert response.status_code == 400 and not queued_stores() and not Communication.objects.exists()


def test_missing_account_sid_gets_400(client, harness):
    harness.make_account()
    params = payload("inbound_sms", harness)
    del params["AccountSid"]
    assert post(client, "/webhooks/twilio/sms", params, harness.twilio.auth_token).status_code == 400


def test_get_is_not_allowed(client, harness):
    assert client.get("/webhooks/twilio/sms").status_code == 405


def test_status_callback_updates_delivery_status_and_never_goes_back(client, harness):
    account = harness.make_account()
    params = payload("status_delivered", harness)
    harness.fake.add_message(harness.twilio, sid=params["MessageSid"], from_=OUR_NUMBER, to=params["To"],
                             body="See you at 3", direction="outbound-api", status="sent")
    sync_account(account.pk)
    stored = Communication.objects.get(account=account)
    assert (stored.direction, stored.delivery_status) == ("outbound", "sent")
    response = post(client, "/webhooks/twilio/status", params, harness.twilio.auth_token)
    assert response.status_code == 204
    stored.refresh_from_db()
    assert stored.delivery_status == "delivered"
    late = {**params, "MessageStatus": "sent", "SmsStatus": "sent"}  # out of order
    assert post(client, "/webhooks/twilio/status", late, harness.twilio.auth_token).status_code == 204
    stored.refresh_from_db()
    assert stored.delivery_status == "delivered"
    assert Communication.objects.filter(account=account).count() == 1


def test_status_callback_with_bad_signature_changes_nothing(client, harness):
    account = harness.make_account()
    params = payload("status_delivered", harness)
    harness.fake.add_message(harness.twilio, sid=params["MessageSid"], from_=OUR_NUMBER, to=params["To"],
                             direction="outbound-api", status="sent")
    sync_account(account.pk)
    assert post(client, "/webhooks/twilio/status", params, "not-the-token").status_code == 403
    assert Communication.objects.get(account=account).delivery_status == "sent"


def test_inbound_mms_media_become_attachments(client, harness, twilio_fake):
    account = harness.make_account()
    message = twilio_fake.add_message(harness.twilio, from_="+14155550123", to=OUR_NUMBER, body="Photo",
                                      media=[("image/jpeg", b"\xff\xd8jpeg-bytes")])
    media = message.media[0]
    url = f"{twilio_fake.base_url}/2010-04-01/Accounts/{harness.twilio.sid}/Messages/{message.sid}/Media/{media.sid}"
    params = payload("inbound_sms", harness, MessageSid=message.sid, SmsSid=message.sid, NumMedia="1",
                     MediaUrl0=url, MediaContentType0="image/jpeg", Body="Photo")
    assert post(client, "/webhooks/twilio/sms", params, harness.twilio.auth_token).status_code == 200
    assert run_queued() == 1  # the media are fetched by the task, not while Twilio waits
    stored = Communication.objects.get(account=account)
    assert stored.channel == "mms"
    attachment = stored.attachments.get()
    assert (attachment.content_type, attachment.size) == ("image/jpeg", len(media.content))
    assert attachment.filename.endswith(".jpg")


def test_a_queue_failure_is_503_never_500(client, harness, monkeypatch, caplog):
    harness.make_account()

    def broken(*args, **kwargs):
        raise RuntimeError("the queue is down")

    monkeypatch.setattr("integrations.providers.twilio.webhooks.async_task", broken)
    response = post(client, "/webhooks/twilio/sms", payload("inbound_sms", harness), harness.twilio.auth_token)
    assert response.status_code == 503 and not Communication.objects.exists()  # Twilio retries it
    assert harness.twilio.auth_token not in caplog.text


def test_the_task_stores_with_the_arrival_time_and_skips_disconnected_accounts(client, harness):
    account = harness.make_account()
    assert post(client, "/webhooks/twilio/sms", payload("inbound_sms", harness), harness.twilio.auth_token).status_code == 200
    [task] = queued_stores()
    assert run_queued() == 1
    stored = Communication.objects.get(account=account)
    assert stored.sent_at.isoformat() == task["args"][2]
    # Disabled between the answer and the task: nothing is stored for it.
    Communication.objects.all().delete()
    assert post(client, "/webhooks/twilio/sms", payload("inbound_sms", harness), harness.twilio.auth_token).status_code == 200
    type(account).objects.filter(pk=account.pk).update(status=type(account).Status.DISABLED)
    assert run_queued() == 1 and not Communication.objects.exists()
