"""The fake Gmail server driven by the real Google client libraries, as the project uses them."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import google.auth.exceptions
import google.auth.transport.requests
import google.oauth2.credentials
import google.oauth2.service_account
import pytest
from google.oauth2 import id_token
from google_auth_oauthlib.flow import Flow
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.http import BatchHttpRequest

from tests.fakes.gmail import FakeGmail, fill_synthetic
from tests.fakes.google_mailbox import parse_meta
from tests.fakes.google_synthetic import synthetic_message

READONLY = "https://www.googleapis.com/auth/gmail.readonly"
MODIFY = "https://www.googleapis.com/auth/gmail.modify"
USER = "alice@example.com"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGmail]:
    with FakeGmail() as fake:
        yield fake


@pytest.fixture
def fake(server: FakeGmail) -> FakeGmail:
    server.reset()
    return server


def credentials(fake: FakeGmail, tokens: dict) -> google.oauth2.credentials.Credentials:
    return google.oauth2.credentials.Credentials(
        tokens["access_token"], refresh_token=tokens["refresh_token"], token_uri=fake.url + "/token",
        client_id=fake.client_id, client_secret=fake.client_secret, scopes=[READONLY])


def gmail(fake: FakeGmail, creds) -> object:
    return build("gmail", "v1", credentials=creds, client_options={"api_endpoint": fake.url},
                 static_discovery=True, cache_discovery=False)


def service_for(fake: FakeGmail, email: str = USER):
    return gmail(fake, credentials(fake, fake.issue_tokens(email)))


def rfc822(n: int, body: str = "hello") -> bytes:
    return (f"From: Bob <bob@example.org>\r\nTo: {USER}\r\nSubject: Message {n}\r\n"
            f"Message-ID: <m{n}@example.org>\r\n\r\n{body} {n} it's <fine>\r\n").encode()


def list_all(service, **kwargs) -> list[str]:
    ids, token = [], None
    while True:
        page = service.users().messages().list(userId="me", pageToken=token, **kwargs).execute()
        ids += [m["id"] for m in page.get("messages", [])]
        token = page.get("nextPageToken")
        if not token:
            return ids


def test_profile_labels_and_auth(fake: FakeGmail) -> None:
    box = fake.add_mailbox(USER)
    box.add(rfc822(1))
    label = box.add_label("Clients")
    service = service_for(fake)
    profile = service.users().getProfile(userId="me").execute()
    assert profile == {"emailAddress": USER, "messagesTotal": 1, "threadsTotal": 1, "historyId": str(box.history_id)}
    labels = {lab["id"]: lab for lab in service.users().labels().list(userId=USER).execute()["labels"]}
    assert labels["INBOX"]["type"] == "system" and labels[label] == {"id": label, "name": "Clients", "type": "user"}
    bad = urllib.request.Request(fake.url + "/gmail/v1/users/me/profile", headers={"Authorization": "Bearer nope"})
    with pytest.raises(urllib.error.HTTPError) as unauthorized:
        urllib.request.urlopen(bad)
    assert unauthorized.value.code == 401
    assert json.loads(unauthorized.value.read())["error"]["errors"][0]["reason"] == "authError"
    with pytest.raises(HttpError) as err:
        service.users().getProfile(userId="someone@else.com").execute()
    assert err.value.status_code == 403
    assert ("GET", "/gmail/v1/users/me/profile") in fake.requests


def test_list_paging_order_filters_and_query(fake: FakeGmail) -> None:
    box = fake.add_mailbox(USER)
    base = datetime(2024, 3, 1, 12, tzinfo=UTC)
    ids = [box.add(rfc822(i), internal_date=base + timedelta(hours=i)) for i in range(25)]
    spam = box.add(rfc822(99), labels=("SPAM",), internal_date=base - timedelta(hours=1))
    sent = box.add(rfc822(98), labels=("SENT", "IMPORTANT"), internal_date=base + timedelta(hours=30))
    service = service_for(fake)
    newest_first = [sent] + ids[::-1]
    assert list_all(service, maxResults=7) == newest_first
    assert list_all(service, includeSpamTrash=True, maxResults=500)[-1] == spam
    assert list_all(service, labelIds=["SENT", "IMPORTANT"]) == [sent]
    assert list_all(service, labelIds=["SENT", "UNREAD"]) == []
    assert service.users().messages().list(userId="me", labelIds=["TRASH"]).execute() == {"resultSizeEstimate": 0}
    after, before = int((base + timedelta(hours=5)).timestamp()), int((base + timedelta(hours=9)).timestamp())
    assert list_all(service, q=f"after:{after} before:{before}", maxResults=2) == ids[5:9][::-1]
    assert list_all(service, q="after:2024/03/02") == [sent] + ids[20:][::-1]  # midnight Pacific = 08:00 UTC
    assert list_all(service, q="in:sent") == [sent]
    partial = service.users().messages().list(userId="me", maxResults=2, fields="messages/id,nextPageToken").execute()
    assert set(partial) == {"messages", "nextPageToken"} and partial["messages"][0] == {"id": sent}
    page = service.users().messages().list(userId="me", maxResults=3).execute()
    assert page["resultSizeEstimate"] == 26 and set(page["messages"][0]) == {"id", "threadId"}
    # A message arriving between pages does not shift the next page.
    box.add(rfc822(100))
    second = service.users().messages().list(userId="me", maxResults=3, pageToken=page["nextPageToken"]).execute()
    assert [m["id"] for m in second["messages"]] == newest_first[3:6]
    with pytest.raises(HttpError) as err:
        service.users().messages().list(userId="me", q="from:bob").execute()
    assert err.value.status_code == 400


def test_get_formats_and_raw_round_trip(fake: FakeGmail) -> None:
    box = fake.add_mailbox(USER)
    raw = rfc822(1, body="caf\u00e9 " + "x" * 300)
    when = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    msg_id = box.add(raw, labels=("INBOX", "UNREAD"), internal_date=when)
    reply = box.add(rfc822(2), thread_id=msg_id)
    service = service_for(fake)
    got = service.users().messages().get(userId="me", id=msg_id, format="raw").execute()
    assert base64.urlsafe_b64decode(got["raw"]) == raw
    assert got["internalDate"] == str(int(when.timestamp() * 1000)) and got["sizeEstimate"] == len(raw)
    assert got["labelIds"] == ["INBOX", "UNREAD"] and got["threadId"] == msg_id
    assert got["snippet"].startswith("café xxx")
    meta = service.users().messages().get(userId="me", id=reply, format="metadata",
                                          metadataHeaders=["Subject", "message-id"]).execute()
    assert meta["threadId"] == msg_id
    assert meta["payload"]["headers"] == [{"name": "Subject", "value": "Message 2"},
                                          {"name": "Message-ID", "value": "<m2@example.org>"}]
    assert "it&#39;s &lt;fine&gt;" in meta["snippet"]
    minimal = service.users().messages().get(userId="me", id=reply, format="minimal").execute()
    assert "payload" not in minimal and "raw" not in minimal and int(minimal["historyId"]) <= box.history_id
    box.delete(reply)
    with pytest.raises(HttpError) as err:
        service.users().messages().get(userId="me", id=reply).execute()
    assert err.value.status_code == 404
    assert json.loads(err.value.content)["error"]["errors"][0]["reason"] == "notFound"


def test_lazy_messages_and_synthetic_sizes(fake: FakeGmail) -> None:
    box = fake.add_mailbox(USER)
    calls = []

    def make() -> bytes:
        calls.append(1)
        return rfc822(7)

    msg_id = box.add_lazy(len(rfc822(7)), make)
    service = service_for(fake)
    for _ in range(2):
        got = service.users().messages().get(userId="me", id=msg_id, format="raw").execute()
        assert base64.urlsafe_b64decode(got["raw"]) == rfc822(7)
    assert len(calls) >= 2  # generated per request, never cached
    now = datetime(2024, 1, 1, tzinfo=UTC)
    for i in (0, 7, 9, 19):
        syn = synthetic_message(i, owner=USER, total=100, now=now, big_every=10, big_bytes=5000)
        assert len(syn.make()) == syn.size and syn.make() == syn.make()
    fill_synthetic(fake.add_mailbox("bench@example.com"), 300, big_every=100, big_bytes=3000)
    bench = service_for(fake, "bench@example.com")
    assert len(list_all(bench, maxResults=500, includeSpamTrash=True)) == 300
    assert bench.users().getProfile(userId="me").execute()["threadsTotal"] == 100


def test_batch_gets_with_failing_parts(fake: FakeGmail) -> None:
    box = fake.add_mailbox(USER)
    ids = [box.add(rfc822(i)) for i in range(50)]
    box.delete(ids[10])
    fake.fail("GET", f"/messages/{ids[20]}$", 429, retry_after=3)
    service = service_for(fake)
    results: dict[str, object] = {}

    def callback(request_id: str, response: dict | None, exception: HttpError | None) -> None:
        results[request_id] = exception or response

    batch = BatchHttpRequest(callback=callback, batch_uri=fake.url + "/batch/gmail/v1")
    for msg_id in ids:
        batch.add(service.users().messages().get(userId="me", id=msg_id, format="raw"), request_id=msg_id)
    batch.execute()
    assert isinstance(results[ids[10]], HttpError) and results[ids[10]].status_code == 404
    assert isinstance(results[ids[20]], HttpError) and results[ids[20]].status_code == 429
    assert json.loads(results[ids[20]].content)["error"]["errors"][0]["reason"] == "rateLimitExceeded"
    ok = [i for i in ids if i not in (ids[10], ids[20])]
    assert all(base64.urlsafe_b64decode(results[i]["raw"]) == rfc822(ids.index(i)) for i in ok)
    assert fake.batch_parts == 50 and fake.requests.count(("POST", "/batch/gmail/v1")) == 1
    # The discovery doc's batchPath, and the 100-part limit.
    batch = BatchHttpRequest(callback=callback, batch_uri=fake.url + "/batch")
    for n in range(101):
        batch.add(service.users().messages().get(userId="me", id=ids[0], format="minimal"), request_id=str(n))
    with pytest.raises(HttpError) as err:
        batch.execute()
    assert err.value.status_code == 400


def test_fail_top_level_with_retry_after(fake: FakeGmail) -> None:
    fake.add_mailbox(USER)
    fake.fail("GET", r"/profile$", 403, reason="userRateLimitExceeded", retry_after=7, times=2)
    service = service_for(fake)
    for _ in range(2):
        with pytest.raises(HttpError) as err:
            service.users().getProfile(userId="me").execute()
        assert err.value.status_code == 403 and err.value.resp["retry-after"] == "7"
        assert json.loads(err.value.content)["error"]["errors"][0]["reason"] == "userRateLimitExceeded"
    assert service.users().getProfile(userId="me").execute()["emailAddress"] == USER


def test_history_changes_paging_and_expiry(fake: FakeGmail) -> None:
    box = fake.add_mailbox(USER)
    first = box.add(rfc822(1))
    start = box.history_id
    second = box.add(rfc822(2))
    box.label(first, add=["STARRED"], remove=["INBOX"])
    box.label(first, add=["STARRED"])  # no effective change, no record
    box.delete(second)
    service = service_for(fake)
    history = service.users().history()
    page = history.list(userId="me", startHistoryId=start).execute()
    records = page["history"]
    assert page["historyId"] == str(box.history_id) and len(records) == 3
    assert [int(r["id"]) for r in records] == sorted(int(r["id"]) for r in records)
    assert records[0]["messagesAdded"][0]["message"]["id"] == second
    assert records[1]["labelsAdded"][0]["labelIds"] == ["STARRED"]
    assert records[1]["labelsRemoved"][0]["labelIds"] == ["INBOX"]
    assert records[2]["messagesDeleted"][0]["message"]["id"] == second
    only = history.list(userId="me", startHistoryId=start, historyTypes=["messageDeleted"]).execute()
    assert [r["id"] for r in only["history"]] == [records[2]["id"]]
    p1 = history.list(userId="me", startHistoryId=start, maxResults=2).execute()
    p2 = history.list(userId="me", startHistoryId=start, maxResults=2, pageToken=p1["nextPageToken"]).execute()
    assert p1["history"] + p2["history"] == records and "nextPageToken" not in p2
    assert history.list(userId="me", startHistoryId=box.history_id).execute() == {"historyId": str(box.history_id)}
    box.expire_history()
    with pytest.raises(HttpError) as err:
        history.list(userId="me", startHistoryId=start).execute()
    assert err.value.status_code == 404
    assert "history" not in history.list(userId="me", startHistoryId=box.history_id).execute()


def test_watch_and_stop(fake: FakeGmail) -> None:
    box = fake.add_mailbox(USER)
    service = service_for(fake)
    body = {"topicName": "projects/p/topics/gmail", "labelIds": ["INBOX"], "labelFilterBehavior": "include"}
    answer = service.users().watch(userId="me", body=body).execute()
    assert answer["historyId"] == str(box.history_id)
    assert int(answer["expiration"]) / 1000 - time.time() > 6.9 * 86400
    assert box.watch_requests == [body]
    service.users().stop(userId="me").execute()
    assert box.stop_calls == 1


def test_modify_needs_the_modify_scope_and_records_history(fake: FakeGmail) -> None:
    box = fake.add_mailbox(USER)
    unread = box.add(rfc822(1), labels=("INBOX", "UNREAD"))
    start = box.history_id
    with pytest.raises(HttpError) as err:  # a gmail.readonly token may not change anything
        service_for(fake).users().messages().modify(userId="me", id=unread, body={"removeLabelIds": ["UNREAD"]}).execute()
    assert err.value.status_code == 403 and "insufficientPermissions" in err.value.content.decode()
    assert box.get(unread).labels == ["INBOX", "UNREAD"] and box.modify_requests == []
    tokens = fake.issue_tokens(USER, scopes=(READONLY, MODIFY))
    messages = gmail(fake, credentials(fake, tokens)).users().messages()
    answer = messages.modify(userId="me", id=unread, body={"removeLabelIds": ["UNREAD"]}).execute()
    assert answer == {"id": unread, "threadId": box.get(unread).thread_id, "labelIds": ["INBOX"]}
    assert box.modify_requests == [(unread, [], ["UNREAD"])]
    record = gmail(fake, credentials(fake, tokens)).users().history().list(userId="me", startHistoryId=start).execute()
    assert record["history"][0]["labelsRemoved"][0]["labelIds"] == ["UNREAD"]
    for message_id, body, status in (("nope", {"removeLabelIds": ["UNREAD"]}, 404), (unread, {}, 400),
                                     (unread, {"addLabelIds": ["Label_99"]}, 400)):
        with pytest.raises(HttpError) as err:
            messages.modify(userId="me", id=message_id, body=body).execute()
        assert err.value.status_code == status


def test_unticked_scopes_are_not_granted(fake: FakeGmail, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    monkeypatch.setenv("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")  # oauthlib would raise on the narrower grant
    fake.consent_as(USER)
    fake.untick_on_consent(MODIFY)
    flow = _flow(fake, scopes=[READONLY, MODIFY])
    url, _state = flow.authorization_url(access_type="offline", prompt="consent")
    answer = _consent(url)
    assert answer["scope"] == READONLY
    assert flow.fetch_token(code=answer["code"])["scope"] == [READONLY]


def test_expired_access_token_is_refreshed(fake: FakeGmail) -> None:
    fake.add_mailbox(USER)
    tokens = fake.issue_tokens(USER)
    creds = credentials(fake, tokens)
    fake.expire_access_tokens(USER)
    assert gmail(fake, creds).users().getProfile(userId="me").execute()["emailAddress"] == USER
    assert creds.token != tokens["access_token"] and ("POST", "/token") in fake.requests


def test_revoked_refresh_token_is_invalid_grant(fake: FakeGmail) -> None:
    fake.add_mailbox(USER)
    creds = credentials(fake, fake.issue_tokens(USER))
    fake.revoke(USER)
    with pytest.raises(google.auth.exceptions.RefreshError) as err:
        gmail(fake, creds).users().getProfile(userId="me").execute()
    assert "invalid_grant" in str(err.value) and not err.value.retryable


def test_token_endpoint_failure(fake: FakeGmail) -> None:
    fake.add_mailbox(USER)
    creds = credentials(fake, fake.issue_tokens(USER))
    fake.token_endpoint_failure = 400
    with pytest.raises(google.auth.exceptions.RefreshError):
        creds.refresh(google.auth.transport.requests.Request())


def test_service_account_domain_wide_delegation(fake: FakeGmail) -> None:
    fake.add_mailbox("u@corp.example")
    key = fake.create_service_account("sync@proj.iam.gserviceaccount.com", domains=["corp.example"])
    creds = google.oauth2.service_account.Credentials.from_service_account_info(
        key, scopes=[READONLY], subject="u@corp.example")
    assert gmail(fake, creds).users().getProfile(userId="me").execute()["emailAddress"] == "u@corp.example"
    for subject in ("u@other.example", "nobody@corp.example"):
        outsider = google.oauth2.service_account.Credentials.from_service_account_info(
            key, scopes=[READONLY], subject=subject)
        with pytest.raises(google.auth.exceptions.RefreshError):
            outsider.refresh(google.auth.transport.requests.Request())
    forged = dict(key, private_key=fake.create_service_account("x@p.iam.gserviceaccount.com", domains=[])["private_key"])
    with pytest.raises(google.auth.exceptions.RefreshError, match="invalid_grant"):
        google.oauth2.service_account.Credentials.from_service_account_info(
            forged, scopes=[READONLY], subject="u@corp.example").refresh(google.auth.transport.requests.Request())


def _consent(url: str) -> dict[str, str]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as answer:
        opener.open(url)
    assert answer.value.code == 302
    location = answer.value.headers["Location"]
    assert location.startswith("http://app.test/oauth/callback?")
    return {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(location).query).items()}


def _flow(fake: FakeGmail, scopes: list[str] | None = None) -> Flow:
    config = {"web": {"client_id": fake.client_id, "client_secret": fake.client_secret,
                      "auth_uri": fake.url + "/o/oauth2/auth", "token_uri": fake.url + "/token"}}
    return Flow.from_client_config(config, scopes=scopes or [READONLY], redirect_uri="http://app.test/oauth/callback")


def test_oauth_consent_pkce_and_one_time_codes(fake: FakeGmail, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # oauthlib refuses http:// token URIs otherwise
    fake.consent_as(USER)
    flow = _flow(fake)
    url, state = flow.authorization_url(access_type="offline", prompt="consent")
    answer = _consent(url)
    assert answer["state"] == state
    token = flow.fetch_token(code=answer["code"])
    assert token["refresh_token"] and flow.credentials.refresh_token == token["refresh_token"]
    assert gmail(fake, flow.credentials).users().getProfile(userId="me").execute()["emailAddress"] == USER
    with pytest.raises(Exception, match="invalid_grant"):
        flow.fetch_token(code=answer["code"])
    # A different verifier than the one whose challenge was sent is refused.
    other = _flow(fake)
    url, _ = other.authorization_url()
    code = _consent(url)["code"]
    other.code_verifier = "x" * 64
    with pytest.raises(Exception, match="invalid_grant"):
        other.fetch_token(code=code)
    # Only access_type=offline (google-auth-oauthlib's default) gets a refresh token.
    online = _flow(fake)
    url, _ = online.authorization_url(access_type="online")
    assert "refresh_token" not in online.fetch_token(code=_consent(url)["code"])
    fake.deny_consent()
    url, state = _flow(fake).authorization_url()
    assert _consent(url) == {"error": "access_denied", "state": state}


def test_consent_page_rejects_bad_requests(fake: FakeGmail) -> None:
    fake.consent_as(USER)
    query = {"client_id": "wrong", "redirect_uri": "http://app.test/cb", "response_type": "code", "scope": READONLY,
             "code_challenge": "abc", "code_challenge_method": "S256"}
    for change in ({"client_id": "wrong"}, {"client_id": fake.client_id, "code_challenge_method": "plain"}):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(fake.url + "/o/oauth2/auth?" + urllib.parse.urlencode({**query, **change}))
        assert err.value.code in (400, 401)


def test_push_id_tokens(fake: FakeGmail) -> None:
    request = google.auth.transport.requests.Request()
    certs_url = fake.settings()["GOOGLE_OIDC_CERTS_URL"]
    aud = "https://app.test/push/gmail"
    claims = id_token.verify_token(fake.sign_id_token(aud), request, audience=aud, certs_url=certs_url)
    assert claims["email"] == "push@fake-project.iam.gserviceaccount.com" and claims["email_verified"]
    assert claims["iss"] == "https://accounts.google.com"
    for bad in (fake.sign_id_token(aud, untrusted_key=True), fake.sign_id_token("https://elsewhere"),
                fake.sign_id_token(aud, expires_in=-60)):
        with pytest.raises(ValueError):
            id_token.verify_token(bad, request, audience=aud, certs_url=certs_url)


def test_snippets_from_mime_structures() -> None:
    multipart = (b'Subject: x\r\nContent-Type: multipart/mixed; boundary="outer"\r\n\r\n--outer\r\n'
                 b'Content-Type: multipart/alternative; boundary=inner\r\n\r\n--inner\r\n'
                 b'Content-Type: text/html\r\n\r\n<p>html</p>\r\n--inner\r\n'
                 b'Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
                 b'caf=E9 =\r\nau lait\r\n--inner--\r\n--outer\r\nContent-Type: text/plain\r\n'
                 b'Content-Disposition: attachment; filename=a.txt\r\n\r\nnot this\r\n--outer--\r\n')
    meta = parse_meta(multipart)
    assert meta.snippet == "café au lait" and meta.mime_type == "multipart/mixed"
    html_only = b"Content-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(
        b"<div>Hi <b>there</b></div>")
    assert parse_meta(html_only).snippet == "Hi there"
    folded = parse_meta(b"Subject: a\r\n  folded\r\nX-Empty:\r\n\r\nbody")
    assert folded.headers == [("Subject", "a  folded"), ("X-Empty", "")] and folded.snippet == "body"


def test_openid_scope_gets_an_id_token(fake: FakeGmail, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    fake.consent_as(USER)
    config = {"web": {"client_id": fake.client_id, "client_secret": fake.client_secret,
                      "auth_uri": fake.url + "/o/oauth2/auth", "token_uri": fake.url + "/token"}}
    flow = Flow.from_client_config(config, scopes=["openid", "email", READONLY],
                                   redirect_uri="http://app.test/oauth/callback")
    url, _ = flow.authorization_url()
    token = flow.fetch_token(code=_consent(url)["code"])
    claims = id_token.verify_token(token["id_token"], google.auth.transport.requests.Request(),
                                   audience=fake.client_id, certs_url=fake.settings()["GOOGLE_OIDC_CERTS_URL"])
    assert claims["email"] == USER


def test_standalone_process() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.gmail", "--email", "bench@example.com",
                             "--synthetic", "120", "--big-every", "50", "--big-bytes", "4000"],
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        info = json.loads(proc.stdout.readline())
        assert set(info) == {"url", "access_token", "refresh_token", "email"}
        creds = google.oauth2.credentials.Credentials(info["access_token"])
        service = build("gmail", "v1", credentials=creds, client_options={"api_endpoint": info["url"]},
                        static_discovery=True, cache_discovery=False)
        profile = service.users().getProfile(userId="me").execute()
        assert profile["emailAddress"] == "bench@example.com" and profile["messagesTotal"] == 120
        newest = service.users().messages().list(userId="me", maxResults=1).execute()["messages"][0]["id"]
        raw = service.users().messages().get(userId="me", id=newest, format="raw").execute()["raw"]
        assert base64.urlsafe_b64decode(raw).startswith(b"From: ")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
