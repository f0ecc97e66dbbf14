"""/api/v1/contacts/ and /api/v1/companies/: organisation-wide, identifiers read-only, names editable."""
from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from contacts.models import Company, Contact, ContactIdentifier
from conversations.ingest import store_batch
from tests.api.test_sharing import client_for
from tests.factories import email, message, phone

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(user) -> APIClient:
    return client_for(user)


@pytest.fixture
def carol(account) -> Contact:
    # As contacts come to be: from synced mail.
    store_batch(account, [message(sender=email("carol@acme.com", "Carol Jones"))])
    return Contact.objects.get(identifiers__value="carol@acme.com")


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_contacts_list_with_identifiers_and_company(api, carol):
    ContactIdentifier.objects.create(contact=carol, kind="phone", value="+14155550100")
    [row] = api.get("/api/v1/contacts/").json()["results"]
    assert row == {
        "id": carol.pk, "name": "Carol Jones", "company": carol.company_id, "company_name": "Acme",
        "identifiers": [{"kind": "phone", "value": "+14155550100"}, {"kind": "email", "value": "carol@acme.com"}],
        "created_from": "email", "created_at": row["created_at"],
    }


def test_contacts_are_organisation_wide(other_user, carol):
    # Bob never mailed Carol; her contact is still his to see and edit.
    assert ids(client_for(other_user).get("/api/v1/contacts/")) == [carol.pk]
    response = client_for(other_user).patch(f"/api/v1/contacts/{carol.pk}/", {"name": "Carol J."}, format="json")
    assert response.status_code == 200


def test_patch_a_contacts_name_and_company(api, carol):
    globex = Company.objects.create(name="Globex", domain="globex.com")
    response = api.patch(f"/api/v1/contacts/{carol.pk}/", {"name": "Carol Smith", "company": globex.pk}, format="json")
    assert response.status_code == 200
    assert response.json()["company_name"] == "Globex"
    carol.refresh_from_db()
    assert (carol.name, carol.company_id) == ("Carol Smith", globex.pk)
    response = api.patch(f"/api/v1/contacts/{carol.pk}/", {"company": None}, format="json")
    assert response.json()["company"] is None and response.json()["company_name"] is None


def test_identifiers_and_origin_are_read_only(api, carol):
    response = api.patch(f"/api/v1/contacts/{carol.pk}/", {
        "identifiers": [{"kind": "email", "value": "mallory@evil.example"}], "created_from": "manual",
    }, format="json")
    assert response.status_code == 200
    assert list(carol.identifiers.values_list("value", flat=True)) == ["carol@acme.com"]
    assert response.json()["created_from"] == "email"


@pytest.mark.parametrize("body, field", [
    ({"company": 999_999}, "company"),
    ({"company": "acme"}, "company"),
    ({"name": "x" * 201}, "name"),
])
def test_bad_contact_patches_are_400(api, carol, body, field):
    response = api.patch(f"/api/v1/contacts/{carol.pk}/", body, format="json")
    assert response.status_code == 400 and field in response.json()["error"]["fields"]


def test_only_read_and_patch(api, carol):
    assert api.post("/api/v1/contacts/", {"name": "New"}, format="json").status_code == 405
    assert api.put(f"/api/v1/contacts/{carol.pk}/", {"name": "New"}, format="json").status_code == 405
    assert api.delete(f"/api/v1/contacts/{carol.pk}/").status_code == 405
    assert api.delete(f"/api/v1/companies/{carol.company_id}/").status_code == 405
    assert api.get("/api/v1/contacts/999999/").status_code == 404


def test_contact_filters(api, account, carol):
    store_batch(account, [message(sender=phone("+14155550100"))])
    dave = Contact.objects.create(name="Dave", company=carol.company)
    url = "/api/v1/contacts/"
    assert ids(api.get(url, {"q": "caro"})) == [carol.pk]
    assert ids(api.get(url, {"q": "ACME.COM"})) == [carol.pk]  # part of an address
    assert ids(api.get(url, {"q": "14155550100"})) == [Contact.objects.get(identifiers__kind="phone").pk]
    assert ids(api.get(url, {"company": carol.company_id})) == [dave.pk, carol.pk]
    for bad in ("acme", "9" * 30):
        response = api.get(url, {"company": bad})
        assert response.status_code == 400 and "company" in response.json()["error"]["fields"]


def test_companies(api, carol):
    globex = Company.objects.create(name="Globex", domain="globex.com")
    url = "/api/v1/companies/"
    assert ids(api.get(url)) == [globex.pk, carol.company_id]
    assert ids(api.get(url, {"q": "glob"})) == [globex.pk]
    assert ids(api.get(url, {"q": "acme.com"})) == [carol.company_id]
    response = api.patch(f"{url}{globex.pk}/", {"name": "Globex Corp", "domain": "evil.example"}, format="json")
    assert response.status_code == 200
    assert response.json() == {"id": globex.pk, "name": "Globex Corp", "domain": "globex.com",
                               "created_at": response.json()["created_at"]}
    assert api.patch(f"{url}{globex.pk}/", {"name": ""}, format="json").status_code == 400
    assert api.get(url, {"q": "x" * 201}).status_code == 400


def test_contact_list_queries_do_not_grow_with_rows(api, account):
    def queries_for_a_page_of(contacts: int) -> int:
        Contact.objects.all().delete()
        store_batch(account, [message(sender=email(f"person{n}@firm{n}.com")) for n in range(contacts)])
        with CaptureQueriesContext(connection) as queries:
            assert len(ids(api.get("/api/v1/contacts/"))) == contacts
        return len(queries)

    assert queries_for_a_page_of(2) == queries_for_a_page_of(25)


def test_requires_authentication():
    assert APIClient().get("/api/v1/contacts/").status_code == 401
    assert APIClient().get("/api/v1/companies/").status_code == 401
