"""IMAP-specific behaviour of the provider, against a real Dovecot (tests/dovecot.py).

The shared contract suite (test_contract.py) already covers the generic cases (initial,
delta, expired cursor, auth, malformed, crash midway, progress); these tests cover what
only IMAP has: default folders and folder labels, UIDs and UIDVALIDITY, CONDSTORE flags,
QRESYNC expunges, the server going away, concurrent workers, Gmail ids and the
add_imap_account command. Nothing here mocks imaplib/imapclient.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import pathlib
import signal
import sys
import threading
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

import integrations.tasks as tasks_module
from conversations.models import Communication, MessageRef
from conversations.parsing import parse_message
from integrations.models import ProviderAccount, SyncRun
from integrations.providers.base import Capability
from integrations.providers.imap.provider import ImapProvider
from integrations.sync import sync_account
from integrations.tasks import enqueue_due_syncs
from tests.dovecot import append_many
from tests.providers.imap_harness import make_raw

pytestmark = pytest.mark.django_db

SEEN, FLAGGED = b"\\Seen", b"\\Flagged"


# --- helpers ---------------------------------------------------------------------------------

def make_account(imap_user, owner, *, folders: list[str] | None = None, password: str | None = None
                 ) -> ProviderAccount:
    config = {"host": imap_user.host, "port": imap_user.port, "security": "none", "username": imap_user.username}
    if folders is not None:
        config["folders"] = folders
    return ProviderAccount.objects.create(
        owner=owner, provider="imap", display_name="Dovecot", external_address=f"{imap_user.username}@example.org",
        config=config, credentials={"password": password or imap_user.password},
    )


def append(imap_user, folder: str, raws: list[bytes], flags=()) -> list[int]:
    with imap_user.client() as client:
        if not client.folder_exists(folder):
            client.create_folder(folder)
        return append_many(client, folder, raws, flags)


def raws(count: int, **kwargs) -> list[bytes]:
    return [make_raw(**kwargs) for _ in range(count)]


def pid(raw: bytes) -> str:
    """The provider_message_id the provider gives these bytes (from their Message-ID)."""
    return parse_message(raw).provider_message_id


def stored(account: ProviderAccount):
    return Communication.objects.filter(account=account)


def ref_uids(account: ProviderAccount, folder: str = "INBOX") -> set[int]:
    refs = MessageRef.objects.filter(account=account, ref__startswith=f"{folder}:").values_list("ref", flat=True)
    return {int(ref.rsplit(":", 1)[1]) for ref in refs}


def last_run(account: ProviderAccount) -> SyncRun:
    return SyncRun.objects.filter(account=account).latest("pk")


def assert_no_duplicates(account: ProviderAccount, expected: int) -> None:
    assert stored(account).count() == expected
    assert stored(account).values("provider_message_id").distinct().count() == expected
    assert stored(account).values("rfc_message_id").distinct().count() == expected


def server_snapshot(imap_user, folders: list[str]) -> dict[str, object]:
    """Every message's flags and each folder's HIGHESTMODSEQ (any change on the server bumps it).

    \\Recent is left out: it belongs to sessions, not to the message.
    """
    snapshot: dict[str, object] = {}
    with imap_user.client() as client:
        for folder in folders:
            modseq = client.folder_status(folder, ["HIGHESTMODSEQ", "MESSAGES"])
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            flags = client.fetch(uids, ["FLAGS"]) if uids else {}
            snapshot[folder] = (dict(modseq), sorted(
                (uid, tuple(sorted(set(data[b"FLAGS"]) - {b"\\Recent"}))) for uid, data in flags.items()
            ))
            client.unselect_folder()
    return snapshot


# --- 1. default folders and folder labels ----------------------------------------------------------

def test_default_folders_are_inbox_and_special_use_sent_and_copies_merge(imap_user, user):
    both = make_raw(subject="In both folders")
    inbox_only, sent_only, draft = make_raw(), make_raw(sender="me@example.org"), make_raw(subject="A draft")
    append(imap_user, "INBOX", [both, inbox_only])
    append(imap_user, "Sent", [sent_only, both])
    append(imap_user, "Drafts", [draft])
    account = make_account(imap_user, user)  # no "folders" in config
    assert "folders" not in account.config

    outcome = sync_account(account.pk)

    assert outcome.status == "succeeded", outcome
    account.refresh_from_db()
    assert set(account.sync_cursor["folders"]) == {"INBOX", "Sent"}
    assert set(stored(account).values_list("provider_message_id", flat=True)) == {
        pid(both), pid(inbox_only), pid(sent_only)
    }  # the Drafts folder (\Drafts, not \Sent) is not synced
    shared = stored(account).get(provider_message_id=pid(both))
    assert shared.labels == ["INBOX", "Sent"]
    refs = sorted(shared.refs.values_list("ref", "label"))
    assert [label for _, label in refs] == ["INBOX", "Sent"]
    assert refs[0][0].startswith("INBOX:") and refs[1][0].startswith("Sent:")
    assert stored(account).get(provider_message_id=pid(inbox_only)).labels == ["INBOX"]
    assert stored(account).get(provider_message_id=pid(sent_only)).labels == ["Sent"]
    assert MessageRef.objects.filter(account=account).count() == 4
    run = last_run(account)
    assert (run.fetched, run.created) == (4, 3)
    assert Capability.FOLDER_LABELS in ImapProvider.capabilities


# --- 2 + 3. a large backfill, then cheap deltas -------------------------------------------------

def test_backfill_of_2000_messages_then_deltas_fetch_only_new_mail_with_few_calls(imap_user, user):
    messages = raws(2000)
    append(imap_user, "INBOX", messages)
    account = make_account(imap_user, user)

    assert sync_account(account.pk).status == "succeeded"

    run = last_run(account)
    assert (run.kind, run.status, run.fetched, run.created) == ("initial", "succeeded", 2000, 2000)
    assert_no_duplicates(account, 2000)
    assert len(ref_uids(account)) == 2000
    account.refresh_from_db()
    assert account.sync_cursor["folders"]["INBOX"]["last_uid"] == 2000
    assert account.backfill_state is None

    # No change: one login, one LIST, one EXAMINE per folder; no SEARCH, no FETCH.
    assert sync_account(account.pk).status == "succeeded"
    run = last_run(account)
    assert (run.kind, run.fetched, run.created, run.updated) == ("delta", 0, 0, 0)
    assert 0 < run.api_calls < 15, run.api_calls

    new = raws(3)
    new_uids = append(imap_user, "INBOX", new)
    assert sync_account(account.pk).status == "succeeded"
    run = last_run(account)
    assert (run.kind, run.fetched, run.created) == ("delta", 3, 3)
    assert run.api_calls < 15, run.api_calls
    assert_no_duplicates(account, 2003)
    assert set(stored(account).order_by("-id").values_list("provider_message_id", flat=True)[:3]) == {
        pid(r) for r in new
    }
    account.refresh_from_db()
    assert account.sync_cursor["folders"]["INBOX"]["last_uid"] == max(new_uids)


def test_backfill_is_newest_first_and_resumes_after_an_interrupt(imap_user, user, monkeypatch):
    monkeypatch.setattr(ImapProvider, "page_size", 10)
    messages = raws(35)
    uids = append(imap_user, "INBOX", messages)
    account = make_account(imap_user, user)

    def interrupt(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sync_account(account.pk, progress=interrupt)

    # The first page is the 10 highest UIDs, i.e. the newest messages.
    assert ref_uids(account) == set(uids[-10:])
    assert set(stored(account).values_list("provider_message_id", flat=True)) == {pid(r) for r in messages[-10:]}
    run = last_run(account)
    assert run.status == "failed" and "Interrupted (KeyboardInterrupt)" in run.error
    account.refresh_from_db()
    assert account.backfill_state is not None and not account.sync_cursor
    assert account.claim_token == ""  # released, so the next run can resume at once

    pages: list[set[int]] = []

    def record_pages(done, total):
        seen = ref_uids(account)
        pages.append(seen - set().union(*pages) - set(uids[-10:]))

    assert sync_account(account.pk, progress=record_pages).status == "succeeded"

    run = last_run(account)
    assert (run.kind, run.status, run.fetched, run.created) == ("initial", "succeeded", 25, 25)
    assert_no_duplicates(account, 35)
    assert ref_uids(account) == set(uids)
    assert MessageRef.objects.filter(account=account).count() == 35
    filled = [page for page in pages if page]
    assert [len(page) for page in filled] == [10, 10, 5]
    for newer, older in zip(filled, filled[1:]):
        assert max(older) < min(newer)  # every page older than the one before it
    assert max(filled[0]) < min(uids[-10:])


# --- 4. flags through CONDSTORE -------------------------------------------------------------------

def test_flag_changes_arrive_through_condstore(imap_user, user):
    messages = raws(6)
    uids = append(imap_user, "INBOX", messages)
    account = make_account(imap_user, user)
    assert sync_account(account.pk).status == "succeeded"
    assert not stored(account).filter(is_read=True).exists()
    assert not stored(account).filter(is_starred=True).exists()
    account.refresh_from_db()
    assert account.sync_cursor["folders"]["INBOX"]["highestmodseq"] > 0

    with imap_user.client() as client:
        client.select_folder("INBOX")  # read-write
        client.add_flags(uids[0:2], [SEEN])
        client.add_flags(uids[1:3], [FLAGGED])

    assert sync_account(account.pk).status == "succeeded"

    run = last_run(account)
    assert (run.kind, run.fetched, run.updated) == ("delta", 0, 3)
    state = dict(stored(account).values_list("provider_message_id", "is_read"))
    starred = dict(stored(account).values_list("provider_message_id", "is_starred"))
    assert [(state[pid(raw)], starred[pid(raw)]) for raw in messages] == [
        (True, False), (True, True), (False, True), (False, False), (False, False), (False, False)
    ]

    with imap_user.client() as client:
        client.select_folder("INBOX")
        client.remove_flags([uids[1]], [SEEN, FLAGGED])
    assert sync_account(account.pk).status == "succeeded"
    assert last_run(account).updated == 1
    row = stored(account).get(provider_message_id=pid(messages[1]))
    assert (row.is_read, row.is_starred) == (False, False)

    assert sync_account(account.pk).status == "succeeded"  # nothing changed since: nothing counted
    assert last_run(account).updated == 0


# --- 5. expunges through QRESYNC -----------------------------------------------------------------

def test_expunged_messages_are_soft_deleted_unless_another_folder_keeps_them(imap_user, user):
    gone, kept_in_sent, untouched = raws(3)
    inbox_uids = append(imap_user, "INBOX", [gone, kept_in_sent, untouched])
    append(imap_user, "Sent", [kept_in_sent])
    account = make_account(imap_user, user)
    assert sync_account(account.pk).status == "succeeded"
    assert stored(account).get(provider_message_id=pid(kept_in_sent)).labels == ["INBOX", "Sent"]

    with imap_user.client() as client:
        client.select_folder("INBOX")
        client.delete_messages(inbox_uids[:2])
        client.expunge()

    assert sync_account(account.pk).status == "succeeded"

    run = last_run(account)
    assert (run.kind, run.status, run.fetched) == ("delta", "succeeded", 0)
    assert run.updated >= 1
    deleted = stored(account).get(provider_message_id=pid(gone))
    assert deleted.deleted_at is not None
    assert not deleted.refs.exists()
    survivor = stored(account).get(provider_message_id=pid(kept_in_sent))
    assert survivor.deleted_at is None
    assert survivor.labels == ["Sent"]
    assert list(survivor.refs.values_list("label", flat=True)) == ["Sent"]
    other = stored(account).get(provider_message_id=pid(untouched))
    assert other.deleted_at is None and other.labels == ["INBOX"]
    assert ref_uids(account) == {inbox_uids[2]}
    assert stored(account).count() == 3  # soft delete: rows are kept

    assert sync_account(account.pk).status == "succeeded"  # a later delta changes nothing back
    assert stored(account).get(provider_message_id=pid(gone)).deleted_at is not None
    assert stored(account).filter(deleted_at__isnull=True).count() == 2


# --- 6. UIDVALIDITY reset ------------------------------------------------------------------------

def test_uidvalidity_reset_runs_one_full_resync_without_duplicates(imap_user, user):
    inbox = raws(2)
    box = raws(4)
    append(imap_user, "INBOX", inbox)
    append(imap_user, "Box", box)
    account = make_account(imap_user, user, folders=["INBOX", "Box"])
    assert sync_account(account.pk).status == "succeeded"
    account.refresh_from_db()
    old_validity = account.sync_cursor["folders"]["Box"]["uidvalidity"]

    newcomer = make_raw(subject="Arrived with the reset")
    with imap_user.client() as client:
        client.delete_folder("Box")
        client.create_folder("Box")
        append_many(client, "Box", [*box, newcomer])
        new_validity = client.folder_status("Box", ["UIDVALIDITY"])[b"UIDVALIDITY"]
    assert new_validity != old_validity

    outcome = sync_account(account.pk)

    assert outcome.status == "succeeded", outcome
    run = last_run(account)
    assert (run.kind, run.status, run.created) == ("full_resync", "succeeded", 1)
    assert SyncRun.objects.filter(account=account, kind="full_resync").count() == 1
    assert_no_duplicates(account, 7)
    assert stored(account).filter(provider_message_id=pid(newcomer)).exists()
    box_refs = list(MessageRef.objects.filter(account=account, ref__startswith="Box:").values_list("ref", flat=True))
    assert len(box_refs) == 5 and all(ref.startswith(f"Box:{new_validity}:") for ref in box_refs)
    assert MessageRef.objects.filter(account=account).count() == 7
    account.refresh_from_db()
    assert account.sync_cursor["folders"]["Box"]["uidvalidity"] == new_validity
    assert account.consecutive_resyncs == 1

    assert sync_account(account.pk).status == "succeeded"  # back to plain deltas
    assert last_run(account).kind == "delta"
    assert_no_duplicates(account, 7)


# --- 7. the server goes away mid-sync --------------------------------------------------------------

def test_server_stopped_mid_sync_is_a_transient_error_and_the_next_sync_completes(
    imap_user, user, dovecot_server, monkeypatch, settings
):
    settings.IMAP_TIMEOUT_SECONDS = 10  # a hang would otherwise take the default 60 s
    monkeypatch.setattr(ImapProvider, "page_size", 5)
    messages = raws(20)
    append(imap_user, "INBOX", messages)
    account = make_account(imap_user, user)
    calls = []

    def stop_server(done, total):
        calls.append(done)
        if len(calls) == 1:
            dovecot_server.stop()
            
    try:
        outcome = sync_account(account.pk, progress=stop_server)
    finally:
        dovecot_server.start()

    assert outcome.status == "failed"
    # The engine prefetches one page while it stores another: the page already in hand
    # when the server went away is stored, the next fetch fails.
    assert calls in ([5], [5, 10])
    account.refresh_from_db()
    assert account.status == "error"
    assert "Connection to" in account.last_error and "lost" in account.last_error, account.last_error
    assert "Retrying at" in account.last_error
    assert account.next_sync_at is not None and account.next_sync_at > timezone.now()
    assert account.consecutive_failures == 1
    assert account.backfill_state is not None and account.claim_token == ""
    run = last_run(account)
    assert run.status == "failed" and run.created == calls[-1]
    assert stored(account).count() == calls[-1]

    assert dovecot_server.port == imap_user.port
    assert sync_account(account.pk).status == "succeeded"

    account.refresh_from_db()
    assert account.status == "connected" and account.consecutive_failures == 0 and account.last_error == ""
    assert last_run(account).created == 20 - calls[-1]
    assert_no_duplicates(account, 20)
    assert MessageRef.objects.filter(account=account).count() == 20


# --- 8. wrong password -----------------------------------------------------------------------------

def test_wrong_password_requires_reauth_once_without_retries(imap_user, user, monkeypatch):
    append(imap_user, "INBOX", raws(2))
    account = make_account(imap_user, user, password="not-the-password")
    healthy = make_account(imap_user, user)
    queued: list[tuple] = []
    monkeypatch.setattr(tasks_module, "async_task", lambda *args, **kwargs: queued.append(args))

    outcome = sync_account(account.pk)

    assert outcome.status == "failed"
    account.refresh_from_db()
    assert account.status == "reauth_required"
    assert imap_user.username in account.last_error and imap_user.host in account.last_error
    assert "rejected the login" in account.last_error
    assert "Update the account's credentials" in account.last_error
    assert "not-the-password" not in account.last_error
    assert account.next_sync_at is None and account.consecutive_failures == 1
    assert SyncRun.objects.filter(account=account).count() == 1
    assert not stored(account).exists()

    # Even if due, the scheduler leaves it alone; a healthy account is still queued.
    ProviderAccount.objects.filter(pk__in=[account.pk, healthy.pk]).update(next_sync_at=timezone.now())
    assert enqueue_due_syncs() == 1
    assert queued == [(tasks_module.SYNC_TASK, healthy.pk, False)]
    assert sync_account(account.pk).status == "not_syncable"
    assert SyncRun.objects.filter(account=account).count() == 1


# --- 9. two workers at once ------------------------------------------------------------------------

def test_two_workers_on_one_account_sync_it_once(imap_user, user, transactional_db, monkeypatch):
    if connection.vendor == "sqlite":
        pytest.skip("SQLite's in-memory test database is a shared cache with table locks: concurrent "
                    "writers fail at random with 'database table is locked' (about 1 run in 13), "
                    "so this runs on PostgreSQL only")
    messages = raws(12)
    append(imap_user, "INBOX", messages)
    account = make_account(imap_user, user)
    real_fetch_initial = ImapProvider.fetch_initial
    slowed = threading.Event()

    def slow_fetch_initial(self, window, page_token):
        if not slowed.is_set():
            slowed.set()
            time.sleep(1)  # keeps the first worker's claim held while the other one tries
        return real_fetch_initial(self, window, page_token)

    monkeypatch.setattr(ImapProvider, "fetch_initial", slow_fetch_initial)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def worker():
        try:
            barrier.wait(timeout=10)
            outcomes.append(sync_account(account.pk).status)
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors, errors
    assert sorted(outcomes) == ["already_running", "succeeded"]
    assert SyncRun.objects.filter(account=account).count() == 1
    run = SyncRun.objects.get(account=account)
    assert (run.status, run.created) == ("succeeded", 12)
    assert_no_duplicates(account, 12)
    account.refresh_from_db()
    assert account.status == "connected" and account.claim_token == ""


# --- 10. without CONDSTORE -------------------------------------------------------------------------

def test_without_condstore_uids_alone_bring_new_mail_but_no_flags(imap_user, user, monkeypatch):
    monkeypatch.setattr(ImapProvider, "condstore", property(lambda self: False))
    messages = raws(4)
    uids = append(imap_user, "INBOX", messages)
    account = make_account(imap_user, user)
    assert sync_account(account.pk).status == "succeeded"

    with imap_user.client() as client:
        client.select_folder("INBOX")
        client.add_flags(uids[:2], [SEEN, FLAGGED])
    new = raws(2)
    append(imap_user, "INBOX", new)

    assert sync_account(account.pk).status == "succeeded"

    run = last_run(account)
    assert (run.kind, run.fetched, run.created, run.updated) == ("delta", 2, 2, 0)
    assert_no_duplicates(account, 6)
    assert not stored(account).filter(is_read=True).exists()  # flag changes are not seen
    assert not stored(account).filter(is_starred=True).exists()
    account.refresh_from_db()
    assert all(state["highestmodseq"] == 0 for state in account.sync_cursor["folders"].values())
    assert account.sync_cursor["folders"]["INBOX"]["last_uid"] == max(uids) + 2

    # Once the server offers CONDSTORE (again), flag tracking starts from that point on.
    monkeypatch.undo()
    assert sync_account(account.pk).status == "succeeded"
    account.refresh_from_db()
    assert account.sync_cursor["folders"]["INBOX"]["highestmodseq"] > 0
    with imap_user.client() as client:
        client.select_folder("INBOX")
        client.add_flags([uids[3]], [SEEN])
    assert sync_account(account.pk).status == "succeeded"
    assert last_run(account).updated == 1
    assert stored(account).get(provider_message_id=pid(messages[3])).is_read is True


# --- 11. Gmail ids (X-GM-EXT-1) --------------------------------------------------------------------

def test_gmail_extension_ids_become_provider_ids(user):
    account = ProviderAccount(owner=user, provider="imap", config={"host": "imap.gmail.com", "username": "a@b.c"})
    provider = ImapProvider(account)
    raw = make_raw(subject="From Gmail", extra_headers="X-GM-THRID: 999\r\n")
    internal = dt.datetime(2026, 10, 2, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    data = {b"FLAGS": (SEEN,), b"INTERNALDATE": internal,
            b"X-GM-MSGID": 0x17A3C9E2B4D5F601, b"X-GM-THRID": 0x17A3C9E2B4D50000}

    provider.server_capabilities = frozenset({b"IMAP4REV1", b"X-GM-EXT-1"})
    message = provider._to_message("[Gmail]/All Mail", 11, 42, raw, data)

    assert message.provider_message_id == "gm:17a3c9e2b4d5f601"  # hex, as the Gmail API spells it
    assert message.provider_thread_id == "17a3c9e2b4d50000"
    assert message.ref == "[Gmail]/All Mail:11:42"
    assert message.labels == ("[Gmail]/All Mail",)
    assert (message.is_read, message.is_starred) == (True, False)
    assert message.received_at == dt.datetime(2026, 10, 2, 10, 0, tzinfo=dt.UTC)
    assert message.rfc_message_id  # still parsed, for threading across accounts

    provider.server_capabilities = frozenset({b"IMAP4REV1"})  # not Gmail: ids from Message-ID
    plain = provider._to_message("INBOX", 11, 42, raw, data)
    assert plain.provider_message_id == pid(raw) and plain.provider_message_id.startswith("mid:")
    assert plain.provider_thread_id == "999"  # the header value, no X-GM-THRID override


# --- 12. manage.py add_imap_account ------------------------------------------------------------------

def _add_account(imap_user, owner, password: str, monkeypatch, *extra: str) -> tuple[str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
    out, err = io.StringIO(), io.StringIO()
    call_command("add_imap_account", "--owner", owner.username, "--host", imap_user.host,
                 "--port", str(imap_user.port), "--security", "none", "--username", imap_user.username,
                 "--password-stdin", *extra, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_add_imap_account_command(imap_user, user, monkeypatch):
    password = imap_user.password

    # A wrong password: nothing saved.
    with pytest.raises(CommandError, match="^Login test failed, nothing saved") as failed:
        _add_account(imap_user, user, "wrong-" + password, monkeypatch)
    assert password not in str(failed.value)
    assert not ProviderAccount.objects.exists()

    # There is no --password option: a password never goes on the command line.
    monkeypatch.setattr(sys, "stdin", io.StringIO(password + "\n"))
    with pytest.raises(CommandError, match="passwords are not accepted on the command line") as refused:
        call_command("add_imap_account", "--owner", user.username, "--host", imap_user.host,
                     "--username", imap_user.username, "--password", password)
    assert password not in str(refused.value)
    with pytest.raises(CommandError, match="ambiguous option: --pass") as abbreviated:
        call_command("add_imap_account", "--owner", user.username, "--host", imap_user.host,
                     "--username", imap_user.username, "--pass", password)
    assert password not in str(abbreviated.value)
    assert not ProviderAccount.objects.exists()

    # The right password: created, id on stdout, credentials encrypted at rest.
    out, err = _add_account(imap_user, user, password, monkeypatch)
    account = ProviderAccount.objects.get()
    assert out.strip() == str(account.pk)
    assert "Created" in err
    assert password not in out and password not in err
    assert account.provider == "imap" and account.owner == user
    assert account.config == {"host": imap_user.host, "port": imap_user.port, "security": "none",
                              "username": imap_user.username}
    assert account.credentials == {"password": password}
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT credentials FROM {ProviderAccount._meta.db_table} WHERE id = %s", [account.pk])
        (raw_value,) = cursor.fetchone()
    assert password not in raw_value and "password" not in raw_value
    assert raw_value.startswith("gAAAA")  # a Fernet token

    # Again for the same owner/host/username: the existing account is updated, reauth cleared.
    ProviderAccount.objects.filter(pk=account.pk).update(
        status=ProviderAccount.Status.REAUTH_REQUIRED, last_error="rejected the login", next_sync_at=None
    )
    account.refresh_from_db()
    account.credentials = {"password": "an-old-password"}
    account.save()
    out, err = _add_account(imap_user, user, password, monkeypatch, "--folders", "INBOX", "Sent")
    assert ProviderAccount.objects.count() == 1
    assert out.strip() == str(account.pk) and "Updated" in err
    account.refresh_from_db()
    assert account.status == "connected" and account.last_error == "" and account.next_sync_at is not None
    assert account.credentials == {"password": password}
    assert account.config["folders"] == ["INBOX", "Sent"]
    assert sync_account(account.pk).status == "succeeded"  # syncable again, with the saved password


# --- 13. nothing on the server changes -------------------------------------------------------------

def test_syncing_never_changes_the_server(imap_user, user):
    inbox_uids = append(imap_user, "INBOX", raws(5))
    append(imap_user, "INBOX", raws(2), flags=[FLAGGED])
    append(imap_user, "Sent", raws(3), flags=[SEEN])
    account = make_account(imap_user, user)
    before = server_snapshot(imap_user, ["INBOX", "Sent"])

    assert sync_account(account.pk).status == "succeeded"  # initial backfill
    assert server_snapshot(imap_user, ["INBOX", "Sent"]) == before

    with imap_user.client() as client:  # a flag change and new mail, for the delta to read
        client.select_folder("INBOX")
        client.add_flags([inbox_uids[0]], [FLAGGED])
    append(imap_user, "INBOX", raws(2))
    before = server_snapshot(imap_user, ["INBOX", "Sent"])
    assert sync_account(account.pk).status == "succeeded"  # delta
    assert sync_account(account.pk, full=True).status == "succeeded"  # full resync
    after = server_snapshot(imap_user, ["INBOX", "Sent"])

    assert after == before
    inbox_flags = dict(after["INBOX"][1])
    assert sum(SEEN in flags for flags in inbox_flags.values()) == 0  # BODY.PEEK: never marked read
    assert stored(account).count() == 12
    assert stored(account).filter(is_read=True).count() == 3  # the Sent ones, as on the server
    assert stored(account).filter(is_starred=True).count() == 3
