"""/api/v1/communications/ and /api/v1/conversations/: filters, text search, keyset pages, errors."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from conversations.ingest import store_batch
from conversations.messages import Channel, Direction, ParsedAttachment
from conversations.models import Communication
from conversations.visibility import search, visible_communications
from tests.api.test_sharing import client_for
from tests.factories import email, message, phone

pytestmark = pytest.mark.django_db

NOON = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
postgresql_only = pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL full-text search")


@pytest.fixture
def api(user) -> APIClient:
    return client_for(user)


def store(account, *messages) -> list[int]:
    return store_batch(account, list(messages)).created_ids


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def walk(api, url: str, params: dict) -> list[int]:
    """Every id of a list, page after page."""
    seen, response = [], api.get(url, params)
    while True:
        seen += ids(response)
        following = response.json()["next"]
        if following is None:
            return seen
        response = api.get(following)


# ------------------------------------------------------------------------------------ listing

def test_lists_newest_first_with_participants(api, account):
    older, newer = store(account, message(sent_at=NOON), message(sent_at=NOON + dt.timedelta(hours=1)))
    rows = api.get("/api/v1/communications/").json()["results"]
    assert [r["id"] for r in rows] == [newer, older]
    assert rows[0]["participants"][0] == {
        "role": "from", "kind": "email", "address": "carol@acme.com", "display_name": "Carol Jones",
        "contact": rows[0]["participants"][0]["contact"], "company": rows[0]["participants"][0]["company"],
        "is_owner": False,
    }
    assert rows[0]["owner"] == account.owner_id and rows[0]["account"] == account.pk
    assert "body_text" not in rows[0]  # bodies are in the detail only


def test_detail_has_sanitised_html_with_remote_images_on_request(api, account):
    [pk] = store(account, message(body_html='<p onclick="x()">Hi <img src="https://track.example/p.gif"></p>'))
    detail = api.get(f"/api/v1/communications/{pk}/").json()
    assert detail["body_html"] == "<p>Hi <img></p>"
    assert detail["attachments"] == []
    with_images = api.get(f"/api/v1/communications/{pk}/", {"remote_images": "true"}).json()
    assert 'src="https://track.example/p.gif"' in with_images["body_html"]


def test_an_attachment_over_the_size_cap_has_no_download(api, account, settings):
    settings.ATTACHMENT_MAX_BYTES = 10
    [pk] = store(account, message(attachments=(ParsedAttachment.from_bytes("big.bin", "x/y", b"x" * 11),)))
    [attachment] = api.get(f"/api/v1/communications/{pk}/").json()["attachments"]
    assert attachment["download_url"] is None and attachment["size"] == 11
    response = api.get(f"/api/v1/communications/{pk}/attachments/{attachment['id']}/")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_an_attachment_of_another_communication_is_not_found(api, account):
    first, second = store(account, message(attachments=(ParsedAttachment.from_bytes("a.txt", "text/plain", b"a"),)),
                          message())
    attachment = Communication.objects.get(pk=first).attachments.get()
    assert api.get(f"/api/v1/communications/{second}/attachments/{attachment.pk}/").status_code == 404


def test_a_downloaded_html_attachment_is_never_rendered(api, account):
    blob = ParsedAttachment.from_bytes("page.html", "text/html; charset=utf-8", b"<script>alert(1)</script>")
    [pk] = store(account, message(attachments=(blob,)))
    attachment = Communication.objects.get(pk=pk).attachments.get()
    response = api.get(f"/api/v1/communications/{pk}/attachments/{attachment.pk}/")
    assert response["Content-Type"] == "text/html"
    assert response["Content-Disposition"].startswith("attachment;")
    assert response["Content-Security-Policy"] == "default-src 'none'; sandbox"


def test_requires_authentication():
    response = APIClient().get("/api/v1/communications/")
    assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"


# ------------------------------------------------------------------------------------ filters

def test_filters(api, account, other_account):
    other_account.sharing = "everything"
    other_account.save(update_fields=["sharing"])
    email_in, email_out, sms = store(
        account,
        message(sent_at=NOON, labels=("INBOX", "Deals")),
        message(sent_at=NOON + dt.timedelta(days=1), sender=email("alice@example.org"),
                to=(email("dave@globex.com"),)),
        message(sent_at=NOON + dt.timedelta(days=2), channel=Channel.SMS, subject=None,
                sender=phone("+14155550100"), to=(phone("+14155550199"),)),
    )
    [bobs] = store(other_account, message(sent_at=NOON + dt.timedelta(days=3), sender=email("dave@globex.com"),
                                          to=(email("bob@example.net"),)))
    dave = Communication.objects.get(pk=bobs).participants.get(role="from")
    url = "/api/v1/communications/"
    assert ids(api.get(url, {"account": account.pk})) == [sms, email_out, email_in]
    assert ids(api.get(url, {"account": other_account.pk})) == [bobs]
    assert ids(api.get(url, {"channel": "sms"})) == [sms]
    assert ids(api.get(url, {"direction": "outbound"})) == [email_out]
    assert ids(api.get(url, {"contact": dave.contact_id})) == [bobs, email_out]
    assert ids(api.get(url, {"company": dave.company_id})) == [bobs, email_out]
    assert ids(api.get(url, {"conversation": Communication.objects.get(pk=sms).conversation_id})) == [sms]
    assert ids(api.get(url, {"sent_after": "2026-11-02T12:01:00Z"})) == [bobs, sms]
    assert ids(api.get(url, {"sent_before": "2026-11-02T12:01:00Z"})) == [email_out, email_in]
    assert ids(api.get(url, {"sent_after": "2026-11-02", "sent_before": "2026-11-03"})) == [email_out]
    assert ids(api.get(url, {"label": "Deals"})) == [email_in]
    assert ids(api.get(url, {"label": "Dea"})) == []  # whole labels only
    assert ids(api.get(url, {"contact": 999_999})) == []


def test_a_contact_twice_in_one_message_lists_it_once(api, account):
    [pk] = store(account, message(sender=email("carol@acme.com"), cc=(email("carol@acme.com"),)))
    carol = Communication.objects.get(pk=pk).participants.get(role="from").contact_id
    assert ids(api.get("/api/v1/communications/", {"contact": carol})) == [pk]
    assert ids(api.get(f"/api/v1/contacts/{carol}/timeline/")) == [pk]


def test_deleted_filter(api, account):
    kept, gone = store(account, message(), message())
    Communication.objects.filter(pk=gone).update(deleted_at=NOON)
    url = "/api/v1/communications/"
    assert ids(api.get(url)) == [gone, kept]
    assert ids(api.get(url, {"deleted": "true"})) == [gone]
    assert ids(api.get(url, {"deleted": "false"})) == [kept]


def test_text_search_on_subject_and_body(api, account):
    quarterly, other = store(account, message(subject="Quarterly numbers", body_text="Revenue grew in Europe."),
                             message(subject="Lunch", body_text="Pizza or sushi?"))
    url = "/api/v1/communications/"
    assert ids(api.get(url, {"q": "quarterly"})) == [quarterly]
    assert ids(api.get(url, {"q": "europe revenue"})) == [quarterly]
    assert ids(api.get(url, {"q": "europe pizza"})) == []
    assert ids(api.get(url, {"q": "SUSHI"})) == [other]


@pytest.mark.parametrize("params, field", [
    ({"sent_after": "yesterday"}, "sent_after"),
    ({"sent_before": "2026-13-45"}, "sent_before"),
    ({"sent_after": "2026-11-03", "sent_before": "2026-11-02"}, "sent_before"),
    ({"account": "abc"}, "account"),
    ({"account": "9" * 30}, "account"),  # past 64 bits: refused here, not by the database
    ({"sent_after": "0001-01-01T00:00:00+05:00"}, "sent_after"),  # before year 1 in UTC
    ({"contact": "-1"}, "contact"),
    ({"company": "1.5"}, "company"),
    ({"conversation": "1;drop"}, "conversation"),
    ({"channel": "fax"}, "channel"),
    ({"direction": "sideways"}, "direction"),
    ({"deleted": "perhaps"}, "deleted"),
    ({"q": "x" * 201}, "q"),
])
def test_bad_filters_are_400_with_field_errors(api, account, params, field):
    response = api.get("/api/v1/communications/", params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid" and field in error["fields"]


def test_bad_timeline_filters_are_400_too(api, account):
    [pk] = store(account, message())
    contact = Communication.objects.get(pk=pk).participants.get(role="from").contact_id
    response = api.get(f"/api/v1/contacts/{contact}/timeline/", {"sent_before": "soon"})
    assert response.status_code == 400 and "sent_before" in response.json()["error"]["fields"]


def test_a_bad_cursor_is_refused_like_every_list(api, account):
    store(account, message())
    for cursor in ("%%%", "cD0xMjM=", "cD1ub25zZW5zZXwx"):  # not base64; p=123 (no id); p=nonsense|1
        response = api.get("/api/v1/communications/", {"cursor": cursor})
        assert response.status_code == 404 and response.json()["error"]["message"] == "Invalid cursor"


def test_unknown_ids_are_404(api):
    assert api.get("/api/v1/communications/999999/").status_code == 404
    assert api.get("/api/v1/communications/abc/").status_code == 404
    assert api.get("/api/v1/communications/abc/attachments/1/").status_code == 404
    assert api.get("/api/v1/conversations/999999/").status_code == 404
    assert api.get("/api/v1/contacts/999999/timeline/").status_code == 404


# --------------------------------------------------------------------------------- pagination

def full_order() -> list[int]:
    """Every communication in list order: dated ones newest first, then undated ones by id."""
    dated = Communication.objects.filter(sent_at__isnull=False).order_by("-sent_at", "-pk")
    undated = Communication.objects.filter(sent_at__isnull=True).order_by("-pk")
    return [*dated.values_list("pk", flat=True), *undated.values_list("pk", flat=True)]


def test_pages_are_stable_under_inserts(api, account):
    # Ties on sent_at across page boundaries, and undated messages (they come last).
    first_batch = store(account, *(message(sent_at=NOON + dt.timedelta(minutes=n // 2)) for n in range(6)),
                        message(sent_at=None), message(sent_at=None))
    page = api.get("/api/v1/communications/", {"page_size": 3}).json()
    first_page = [r["id"] for r in page["results"]]
    # Now a newer message, one at the same time as page 1's last (so before it, by id) and an undated one.
    tied = dt.datetime.fromisoformat(page["results"][-1]["sent_at"].replace("Z", "+00:00"))
    later = store(account, message(sent_at=NOON + dt.timedelta(days=1)), message(sent_at=tied),
                  message(sent_at=None))
    rest = walk(api, page["next"], {})
    order = full_order()
    assert rest == order[order.index(first_page[-1]) + 1:]  # the same keyset, no duplicate, no skip
    assert sorted(first_page + rest) == sorted([*first_batch, later[2]])


def test_previous_pages_mirror_next_pages(api, account):
    store(account, *(message(sent_at=NOON + dt.timedelta(minutes=n % 3)) for n in range(5)),
          message(sent_at=None), message(sent_at=None), message(sent_at=None))
    url = "/api/v1/communications/"
    pages = [api.get(url, {"page_size": 3}).json()]
    while pages[-1]["next"]:
        pages.append(api.get(pages[-1]["next"]).json())
    assert [len(p["results"]) for p in pages] == [3, 3, 2]
    assert pages[0]["previous"] is None
    for earlier, later in zip(pages, pages[1:]):
        back = api.get(later["previous"]).json()
        assert back["results"] == earlier["results"]


def test_walks_every_row_once(api, account):
    created = store(account, *(message(sent_at=None if n % 4 == 0 else NOON + dt.timedelta(minutes=n % 5))
                               for n in range(23)))
    seen = walk(api, "/api/v1/communications/", {"page_size": 4})
    assert sorted(seen) == sorted(created)


@pytest.mark.parametrize("path", ["/api/v1/communications/", "/api/v1/conversations/", "timeline"])
def test_list_queries_do_not_grow_with_rows(api, account, path):
    def queries_for_a_page_of(rows: int) -> int:
        Communication.objects.all().delete()
        store(account, *(message(cc=(email(f"cc{n}@acme.com"),)) for n in range(rows)))
        url = path
        if path == "timeline":
            url = f"/api/v1/contacts/{Communication.objects.first().participants.get(role='from').contact_id}/timeline/"
        with CaptureQueriesContext(connection) as queries:
            assert len(ids(api.get(url))) == rows
        return len(queries)

    few = queries_for_a_page_of(2)
    assert queries_for_a_page_of(30) == few
    # Token, the two permission lookups of view_all_content, the visible accounts, and at most:
    # page, participants, undated part, (timeline) the contact.
    assert few <= 8


# ------------------------------------------------------------------------------- conversations

def test_conversations(api, account):
    first, reply = store(account, message(subject="Plans", sent_at=NOON, rfc_message_id="a@x"),
                         message(subject="Re: Plans", sent_at=NOON + dt.timedelta(hours=2), in_reply_to="a@x"))
    [sms] = store(account, message(channel=Channel.SMS, subject=None, sender=phone("+14155550100"),
                                   to=(phone("+14155550199"),), direction=Direction.INBOUND))
    rows = api.get("/api/v1/conversations/").json()["results"]
    assert [r["channel"] for r in rows] == ["sms", "email"]  # newest conversation first
    assert rows[1] == {"id": rows[1]["id"], "channel": "email", "subject": "Plans", "message_count": 2,
                       "first_message_at": "2026-11-01T12:00:00Z", "last_message_at": "2026-11-01T14:00:00Z"}
    assert rows[0]["subject"] is None  # an SMS thread has no subject
    assert ids(api.get("/api/v1/conversations/", {"channel": "sms"})) == [rows[0]["id"]]
    detail = api.get(f"/api/v1/conversations/{rows[1]['id']}/").json()
    assert [c["id"] for c in detail["communications"]] == [first, reply]  # oldest first
    assert detail["communications_url"].endswith(f"/api/v1/communications/?conversation={rows[1]['id']}")
    assert ids(api.get(detail["communications_url"])) == [reply, first]
    assert api.get("/api/v1/conversations/", {"channel": "fax"}).status_code == 400


# ------------------------------------------------------------------------ PostgreSQL search

@postgresql_only
def test_the_search_index_exists_and_is_used(account, user):
    store(account, message(subject="Quarterly numbers", body_text="Revenue grew."))
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'communication_search_idx'")
        [(definition,)] = cursor.fetchall()
        assert "USING gin" in definition and "to_tsvector('simple'::regconfig" in definition
        # Tiny tables are read whole; without sequential scans the plan shows whether the
        # query's expression is the indexed one (a mismatch leaves nothing but a disabled scan).
        cursor.execute("SET LOCAL enable_seqscan = off")
    # A user who sees every account: no account filter, whose index a tiny table would favour.
    user.is_superuser = True
    searched = search(visible_communications(user), "quarterly revenue")
    assert "communication_search_idx" in searched.explain()
    assert list(searched.values_list("subject", flat=True)) == ["Quarterly numbers"]


@postgresql_only
def test_a_huge_body_still_stores(account, api):
    # PostgreSQL refuses a tsvector over 1 MB; the indexed text is cut well before that.
    body = " ".join(f"w{n:07d}x" for n in range(250_000))  # 2.5 MB of distinct words
    [pk] = store(account, message(body_text=body))
    assert ids(api.get("/api/v1/communications/", {"q": "w0000001x"})) == [pk]


# -------------------------------------------------------------------------------------- schema

def test_the_schema_describes_the_filters_and_bodies():
    schema = json.loads(APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content)
    listing = schema["paths"]["/api/v1/communications/"]["get"]
    names = {p["name"] for p in listing["parameters"]}
    assert {"account", "channel", "direction", "contact", "company", "conversation", "sent_after", "sent_before",
            "label", "q", "deleted", "cursor", "page_size"} <= names
    detail = schema["components"]["schemas"]["CommunicationDetail"]["properties"]
    assert detail["body_text"]["nullable"] and detail["attachments"]["nullable"]
    assert "/api/v1/contacts/{id}/timeline/" in schema["paths"]
    download = schema["paths"]["/api/v1/communications/{id}/attachments/{attachment_id}/"]["get"]
    # Any type: a download is served with the content type its message gave it (Schemathesis found
    # application/pdf answered where only application/octet-stream was documented).
    assert list(download["responses"]["200"]["content"]) == ["*/*"]


def test_an_attachment_is_served_with_its_own_content_type(api, account):
    [pk] = store(account, message(attachments=(ParsedAttachment.from_bytes("q.pdf", "application/pdf", b"%PDF-1"),)))
    [attachment] = api.get(f"/api/v1/communications/{pk}/").json()["attachments"]
    assert api.get(attachment["download_url"])["Content-Type"] == "application/pdf"


@pytest.mark.parametrize("bad_id", ["-1", "abc", "99999999999999999999999"])
def test_an_id_that_is_no_id_is_the_apis_json_404(api, account, bad_id):
    # These paths matched no route before, so Django answered its HTML 404 (found by Schemathesis).
    [pk] = store(account, message())
    for path in [f"/api/v1/contacts/{bad_id}/timeline/", f"/api/v1/communications/{pk}/attachments/{bad_id}/"]:
        response = api.get(path)
        assert response.status_code == 404, path
        assert response["Content-Type"] == "application/json" and response.json()["error"]["code"] == "not_found"
