import datetime as dt
from conversations.parsing import parse_message
from conversations.ingest import store_batch
from conversations.models import Communication, Conversation, Participant
from contacts.models import Contact, Company

RAW = b"""From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <Joerg@Acme.com>
To: alice@example.org, "Doe, John" <john@gmail.com>
Subject: =?iso-8859-1?q?Gr=FC=DFe?= from Acme
Date: Tue, 3 Nov 2026 10:00:00 +0100
Message-ID: <m1@acme.com>

Hello there
"""

def test_smoke(account):
    m = parse_message(RAW)
    assert m.subject == "Grüße from Acme", m
    assert m.sender.display_name == "Jörg Müller"
    r = store_batch(account, [m])
    assert r.created == 1
    r = store_batch(account, [m])
    assert r.skipped == 1 and r.created == 0
    assert Contact.objects.count() == 2
    assert Company.objects.get().domain == "acme.com"
    c = Communication.objects.get()
    assert c.direction == "inbound"
    assert Conversation.objects.get().message_count == 1
