"""parse_message against the tricky-mail corpus in tests/fixtures/mail.

Every fixture names what it exercises in its first header line (``X-Fixture: ...``), except
the files in NO_HEADER_COMMENT, where any added line would change what is being tested.
None of these tests touches the database.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import random
import time
from pathlib import Path

import pytest

from conversations.messages import Address, AddressKind, ParsedMessage
from conversations.parsing import decode_bytes, html_to_text, parse_message

MAIL = Path(__file__).parent / "fixtures" / "mail"
CORPUS = sorted(MAIL.glob("*.eml"))

NO_HEADER_COMMENT = {
    "empty.eml": "zero bytes: not a message at all",
    "not_mail_random.eml": "2 KiB of seeded random bytes: not mail at all",
    "garbage_before_headers.eml": "a UTF-8 byte-order mark and two blank CRLF lines before the headers",
}

UTC = dt.UTC

# The small PDF used by several fixtures, byte for byte.
FAKE_PDF = (
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
    b"2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\n"
    b"trailer << /Root 1 0 R >>\n%%EOF\n"
)
FAKE_PDF_SHA256 = "93e31154c364805a3ef8c904bc257f5ef77600c31b67d392704cd6e1e9cd0657"
CHART_PNG_SHA256 = "976ce83d36442f90a0add4064b43dad8d20f067818f69c592b355aaf7c6c7b59"


def raw(name: str) -> bytes:
    return (MAIL / name).read_bytes()


def parse(name: str) -> ParsedMessage:
    return parse_message(raw(name))


def email_address(value: str, display_name: str = "") -> Address:
    return Address(AddressKind.EMAIL, value, display_name)


def has_warning(message: ParsedMessage, fragment: str) -> bool:
    return any(fragment in warning for warning in message.warnings)


def text_fields(message: ParsedMessage) -> list[str]:
    """Every str a ParsedMessage carries (what ingest writes into text columns)."""
    values = [
        message.provider_message_id,
        message.rfc_message_id,
        message.provider_thread_id,
        message.subject or "",
        message.body_text,
        message.body_html,
        message.in_reply_to,
        message.delivery_status,
        *message.references,
        *message.labels,
        *message.warnings,
    ]
    for _role, address in message.participants():
        values += [address.value, address.display_name]
    for attachment in message.attachments:
        values += [attachment.filename, attachment.content_type, attachment.sha256, attachment.content_id]
    return values


def assert_sane(message: ParsedMessage) -> None:
    assert isinstance(message, ParsedMessage)
    for value in text_fields(message):
        assert isinstance(value, str)
        assert "\x00" not in value, value
        value.encode("utf-8")  # no lone surrogates
    for moment in (message.sent_at, message.received_at):
        assert moment is None or (moment.tzinfo is not None and moment.utcoffset() == dt.timedelta(0))
    for attachment in message.attachments:
        assert attachment.filename not in ("", ".", "..")
        assert "/" not in attachment.filename and "\\" not in attachment.filename
        assert attachment.content is not None
        assert attachment.size == len(attachment.content)
        assert attachment.sha256 == hashlib.sha256(attachment.content).hexdigest()
    assert len(set(message.warnings)) == len(message.warnings)


# ============================================================================ whole corpus


def test_corpus_is_complete_and_documented() -> None:
    names = {path.name for path in CORPUS}
    assert len(names) >= 30
    assert set(NO_HEADER_COMMENT) <= names
    for path in CORPUS:
        if path.name in NO_HEADER_COMMENT:
            continue
        data = path.read_bytes()
        if data.startswith(b"From "):  # an mbox envelope line is not a header
            data = data.split(b"\n", 1)[1]
        first_line = data.split(b"\n", 1)[0]
        assert first_line.startswith(b"X-Fixture: ") and len(first_line) > 30, path.name


@pytest.mark.parametrize("path", CORPUS, ids=lambda path: path.name)
def test_never_raises_and_output_is_storable(path: Path) -> None:
    data = path.read_bytes()
    message = parse_message(data)
    assert_sane(message)
    assert message.raw_size == len(data)
    assert message.provider_message_id
    # Same bytes, same result: ingest is idempotent on provider_message_id.
    assert parse_message(data) == message


@pytest.mark.parametrize("path", CORPUS, ids=lambda path: path.name)
def test_truncated_and_mutated_copies_never_raise(path: Path) -> None:
    data = path.read_bytes()
    rng = random.Random(path.name)
    variants = [data[: len(data) * i // 12] for i in range(1, 12)]
    for _ in range(25):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            if not mutated:
                break
            at = rng.randrange(len(mutated))
            junk = rng.choice([b"\x00", b"\xff", b"\n", b"\r\n", b"=?", b"?=", b'"', b";", b"--", b"<", b"*", b"%"])
            if rng.random() < 0.5:
                mutated[at : at + 1] = junk
            else:
                del mutated[at : at + rng.randint(1, 20)]
        variants.append(bytes(mutated))
    for variant in variants:
        assert_sane(parse_message(variant))


# ============================================================================ RFC 2047


def test_q_and_b_encoded_subject_and_display_names() -> None:
    message = parse("encoded_subject_q_b.eml")
    assert message.subject == "Re: Café crème and Grüße from Berlin"
    assert message.sender == email_address("zoe.angstrom@example.com", "Zoë Ångström")
    assert message.to == (
        email_address("francois@example.fr", "François Martin"),
        email_address("jurgen@example.de", "Jürgen"),
    )
    assert message.body_text == "Bonjour François,\nà bientôt.\n"
    assert message.sent_at == dt.datetime(2024, 6, 3, 8, 15, tzinfo=UTC)
    assert message.warnings == ()


def test_adjacent_encoded_words_drop_the_whitespace_between_them() -> None:
    message = parse("encoded_adjacent_words.eml")
    # "Hel" "lo W" "orld" join into two words; "café" (latin-1) + " crème" (utf-8) keep only
    # the space encoded inside the second word, and plain " - " stays as it is.
    assert message.subject == "Hello World - café crème"
    assert message.sender == email_address("renee@example.fr", "Renée Dupont")
    assert message.warnings == ()


def test_encoded_comma_in_display_name_does_not_split_addresses() -> None:
    message = parse("encoded_display_name_comma.eml")
    assert message.sender == email_address("john.doe@example.org", "Doe, John")
    assert message.to == (
        email_address("j.mueller@example.de", "Müller, Jürgen"),
        email_address("anna@example.com", "Smith, Anna"),
        email_address("plain@example.net"),
    )
    assert message.cc == (
        email_address("sean@example.ie", "O'Brien, Seán"),
        email_address("anna@example.com"),
    )
    assert message.warnings == ()


# ============================================================================ charsets


def test_latin1_label_on_utf8_bytes_is_read_as_utf8() -> None:
    message = parse("charset_latin1_label_utf8_bytes.eml")
    assert message.subject == "Café crème"
    assert message.body_text == "Café crème – naïve résumé €5\n"
    assert "Ã" not in message.body_text
    assert message.warnings == ()


def test_utf8_label_with_invalid_bytes_keeps_the_valid_utf8() -> None:
    message = parse("charset_utf8_label_invalid_bytes.eml")
    # The valid UTF-8 stays UTF-8; only the stray bytes are read as Windows-1252.
    assert message.body_text == "Valid: café. Invalid: naïve, \u201cquoted\u201d.\n"
    assert message.warnings == ("text is not valid utf-8; unreadable bytes read as windows-1252",)


def test_unknown_charset_label_falls_back_to_utf8_with_a_warning() -> None:
    message = parse("charset_unknown_label.eml")
    assert message.subject == "Grüße und mehr"
    assert message.body_text == "Grüße aus Köln\n"
    assert message.warnings == ("unknown charset 'x-unknown-charset-42'",)


def test_charset_aliases_ks_c_5601_and_gb2312() -> None:
    message = parse("charset_aliases.eml")
    # "똠" is in cp949 only and "瑢镕" in GBK only: plain euc-kr / gb2312 would fail on them.
    assert message.subject == "안녕하세요 똠"
    assert message.body_text == "안녕하세요 똠\n你好 瑢镕"
    assert message.warnings == ()


def test_non_text_codecs_and_nul_in_charset_labels() -> None:
    message = parse("charset_non_text_codecs.eml")
    assert message.sender == email_address("rene@example.org", "René")
    assert message.subject == "café pnsr"  # rot13 is no charset: the text is not rotated
    assert message.body_text == "one: café\ntwo: naïve\nthree"
    assert set(message.warnings) == {
        "unknown charset 'base64'",
        "unknown charset 'rot13'",
        "unknown charset 'zlib_codec'",
    }


def test_raw_8bit_header_bytes() -> None:
    message = parse("header_raw_8bit.eml")
    assert message.subject == "Grüße – été 2024"
    assert message.sender == email_address("juergen@example.de", "Jürgen Müller")
    assert message.to == (email_address("francoise@example.fr", "Françoise"),)  # a Latin-1 byte
    assert message.warnings == ()


@pytest.mark.parametrize(
    ("data", "charset", "expected"),
    [
        ("Grüße".encode("latin-1"), "iso-8859-1", "Grüße"),  # real Latin-1 stays Latin-1
        ("Grüße".encode(), "ISO-8859-1", "Grüße"),
        ("“x”".encode("cp1252"), "windows-1252", "“x”"),
        ("Grüße".encode(), None, "Grüße"),
        ("Grüße".encode("latin-1"), None, "Grüße"),
        (b"plain", '"US-ASCII"', "plain"),
        ("naïve".encode(), "us-ascii", "naïve"),
        (b"a\x00b", "utf-8", "ab"),
    ],
)
def test_decode_bytes(data: bytes, charset: str | None, expected: str) -> None:
    warnings: list[str] = []
    assert decode_bytes(data, charset, warnings) == expected
    assert warnings == []


# ============================================================================ MIME structure


def test_multipart_alternative_uses_the_plain_part_for_body_text() -> None:
    message = parse("multipart_alternative.eml")
    assert message.body_text == "Plain version: naïve café.\nSecond line."
    assert message.body_html == "<html><body><p>HTML version: naïve <b>café</b>.</p></body></html>"
    assert message.sender == email_address("news@example.com", "Newsletter")
    assert message.sent_at == dt.datetime(2024, 6, 5, 16, 0, tzinfo=UTC)  # -0400 converted
    assert message.attachments == ()
    assert message.warnings == ()


def test_html_only_body_text_is_derived_from_html() -> None:
    message = parse("html_only.eml")
    assert message.body_text == (
        "Order #42\n\nFish & chips été €12 — <done>\n\nfirst\nsecond\nthird\n\none\n\ntwo\n\nlots of whitespace"
    )
    for hidden in ("Order title", "color: red", "do not show", "also hidden", "<p>", "&amp;"):
        assert hidden not in message.body_text
    assert "<script" in message.body_html  # the HTML itself is kept as sent
    assert message.warnings == ()


def test_html_to_text_keeps_preformatted_lines() -> None:
    assert html_to_text("<p>a\nb</p><pre>x\n  y</pre>") == "a b\n\nx\ny"


def test_inline_image_and_attached_pdf() -> None:
    message = parse("multipart_mixed_inline_image_pdf.eml")
    assert message.body_text == "See the chart below and the attached PDF."
    assert message.body_html == '<p>See the chart <img src="cid:chart-1@fixtures.example"> and the attached PDF.</p>'
    assert message.sender == email_address("reports@example.com", "Report Bot")
    assert message.sent_at == dt.datetime(2024, 6, 6, 8, 0, tzinfo=UTC)
    image, pdf = message.attachments
    assert (image.filename, image.content_type, image.size) == ("chart.png", "image/png", 73)
    assert image.sha256 == CHART_PNG_SHA256
    assert image.content is not None and image.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert image.content_id == "chart-1@fixtures.example"
    assert image.inline is True
    assert (pdf.filename, pdf.content_type, pdf.size, pdf.sha256) == (
        "report.pdf",
        "application/pdf",
        len(FAKE_PDF),
        FAKE_PDF_SHA256,
    )
    assert pdf.content == FAKE_PDF
    assert pdf.inline is False and pdf.content_id == ""
    assert message.warnings == ()


def test_rfc2231_and_rfc2047_attachment_filenames() -> None:
    message = parse("attachment_rfc2231_filename.eml")
    assert message.body_text == "Three attachments."
    pdf, csv, binary = message.attachments
    assert (pdf.filename, pdf.content_type, pdf.size, pdf.sha256) == (
        "Rapport détaillé €.pdf",
        "application/pdf",
        142,
        FAKE_PDF_SHA256,
    )
    assert (csv.filename, csv.content_type, csv.content) == ("données annuelles.csv", "text/csv", b"a,b\n1,2")
    assert (binary.filename, binary.content_type, binary.content) == (
        "отчёт.bin",
        "application/octet-stream",
        b"\x00\x01\x02\x03\x04",
    )
    assert binary.sha256 == hashlib.sha256(b"\x00\x01\x02\x03\x04").hexdigest()
    assert message.warnings == ()


def test_path_traversal_filenames_keep_only_the_name() -> None:
    message = parse("attachment_path_traversal.eml")
    assert [(a.filename, a.content_type, a.content) for a in message.attachments] == [
        ("passwd", "application/octet-stream", b"root:x:0:0:root:/root:/bin/sh"),
        ("boot.ini", "application/octet-stream", b"[boot loader]"),
        ("evil.sh", "application/x-sh", b"echo evil"),
        ("part-4", "application/octet-stream", b"dots"),  # ".." is no name at all
    ]
    assert message.body_text == "see attached"


def test_forwarded_message_is_one_eml_attachment() -> None:
    data = raw("forwarded_rfc822.eml")
    message = parse_message(data)
    # The forwarded message's text and attachment stay inside it.
    assert message.body_text == "Forwarding this, see attachment."
    assert "Inner text" not in message.body_text
    (forwarded,) = message.attachments
    # Named from its decoded subject; the "/" of "2024/Q2" cannot become a directory.
    assert forwarded.filename == "Quarterly résumé 2024_Q2.eml"
    assert forwarded.content_type == "message/rfc822"
    assert forwarded.inline is False
    start = data.index(b"Message-ID: <inner-1@fixtures.example>")
    end = data.index(b"\n--outer-fwd--")
    assert forwarded.content == data[start:end]
    assert forwarded.size == end - start
    assert forwarded.sha256 == hashlib.sha256(data[start:end]).hexdigest()
    inner = parse_message(forwarded.content)
    assert inner.subject == "Quarterly résumé 2024/Q2"
    assert inner.sender == email_address("chloe@example.fr", "Chloé")
    assert [a.filename for a in inner.attachments] == ["inner-notes.txt"]
    assert message.warnings == ()


def test_forwarded_message_is_stored_verbatim_with_long_headers_and_crlf() -> None:
    # Re-serialising must neither refold a long header nor mix LF into a CRLF message.
    data = raw("forwarded_rfc822.eml").replace(
        b"To: boss@example.org\nSubject: =?utf-8?q?Quarterly",
        b"To: boss@example.org\nX-Long: " + b"x" * 300 + b"\nSubject: =?utf-8?q?Quarterly",
    )
    for variant in (data, data.replace(b"\n", b"\r\n")):
        newline = b"\r\n" if b"\r\n" in variant else b"\n"
        (forwarded,) = parse_message(variant).attachments
        start = variant.index(b"Message-ID: <inner-1@fixtures.example>")
        assert forwarded.content == variant[start : variant.index(newline + b"--outer-fwd--")]


def test_bounce_keeps_status_blocks_out_of_attachments() -> None:
    data = raw("bounce_delivery_status.eml")
    message = parse_message(data)
    assert message.body_text == "Your message could not be delivered to nobody@example.net."
    assert message.sender == email_address("mailer-daemon@mx.example.org", "Mail Delivery System")
    headers, returned = message.attachments
    assert (headers.filename, headers.content_type) == ("part-1", "text/rfc822-headers")
    assert headers.content == b"Message-ID: <lost-1@example.org>\nSubject: lost mail"
    # The returned original has an empty Subject: a fixed name, and its text stays inside it.
    assert (returned.filename, returned.content_type) == ("forwarded message.eml", "message/rfc822")
    inner = parse_message(returned.content or b"")
    assert (inner.rfc_message_id, inner.subject, inner.body_text) == ("lost-1@example.org", "", "the lost text")
    assert "lost text" not in message.body_text
    assert message.warnings == ()


# ============================================================================ dates


def test_missing_date_falls_back_to_the_topmost_received() -> None:
    message = parse("date_missing.eml")
    expected = dt.datetime(2024, 6, 2, 6, 59, 59, tzinfo=UTC)  # Sat 23:59:59 -0700
    assert message.sent_at == expected
    assert message.received_at == expected
    assert message.warnings == ("no Date header",)


def test_garbage_date() -> None:
    message = parse("date_garbage.eml")
    assert message.sent_at is None
    assert message.received_at is None
    assert message.warnings == ("unreadable Date header 'yesterday-ish'",)


def test_date_with_minus_0000_is_utc() -> None:
    message = parse("date_minus_0000.eml")
    assert message.sent_at == dt.datetime(2024, 5, 14, 9, 30, tzinfo=UTC)
    assert message.sent_at.tzinfo is not None
    assert message.received_at == dt.datetime(2024, 5, 14, 9, 31, 5, tzinfo=UTC)  # folded, +0200
    assert message.warnings == ()


def test_implausible_year_is_rejected() -> None:
    message = parse("date_implausible_year.eml")
    assert message.sent_at == dt.datetime(2024, 6, 12, 6, 0, tzinfo=UTC)  # from Received
    assert message.received_at == dt.datetime(2024, 6, 12, 6, 0, tzinfo=UTC)
    assert message.warnings == ("implausible Date 2999-02-01T10:00:00+00:00",)


@pytest.mark.parametrize(
    ("header", "expected", "warning"),
    [
        ("Tue, 11 Jun 2024 23:30:00 -0230", dt.datetime(2024, 6, 12, 2, 0, tzinfo=UTC), None),
        ("11 Jun 24 10:00 GMT", dt.datetime(2024, 6, 11, 10, 0, tzinfo=UTC), None),
        ("Fri, 31 Feb 2024 10:00:00 +0000", None, "unreadable Date header"),
        ("Mon, 01 Jan 1900 00:00:00 +0000", None, "implausible Date 1900-01-01"),
        ("Mon, 01 Jan 99999 00:00:00 +0000", None, "unreadable Date header"),
    ],
)
def test_date_variants(header: str, expected: dt.datetime | None, warning: str | None) -> None:
    message = parse_message(f"Message-ID: <d@x>\nFrom: a@example.org\nDate: {header}\n\nx\n".encode())
    assert message.sent_at == expected
    if warning is None:
        assert message.warnings == ()
    else:
        assert has_warning(message, warning), message.warnings


# ============================================================================ ids and addresses


def test_missing_message_id_falls_back_to_a_hash_of_the_bytes() -> None:
    data = raw("message_id_missing.eml")
    message = parse_message(data)
    assert message.rfc_message_id == ""
    assert message.provider_message_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert message.warnings == ("no Message-ID",)
    assert parse_message(data + b"\n").provider_message_id != message.provider_message_id


def test_explicit_provider_message_id_wins() -> None:
    message = parse_message(raw("gmail_takeout.eml"), provider_message_id="imap:INBOX:42")
    assert message.provider_message_id == "imap:INBOX:42"
    assert message.rfc_message_id == "CAF123@mail.gmail.example"


def test_missing_from_falls_back_to_sender() -> None:
    message = parse("from_missing_sender.eml")
    assert message.sender == email_address("list-owner@lists.example.org", "List Owner")
    assert message.warnings == ("no From header",)


def test_missing_from_and_sender_falls_back_to_return_path() -> None:
    message = parse("from_missing_return_path.eml")
    assert message.sender == email_address("bounce+tag@example.net")
    assert message.warnings == ("no From header",)


def test_garbage_from() -> None:
    message = parse("from_garbage.eml")
    assert message.sender is None
    assert message.to == (email_address("rcpt@example.org"),)
    assert message.warnings == ("unreadable address ';;;@@@'",)


def test_null_return_path_is_no_unreadable_address() -> None:
    message = parse_message(b"Return-Path: <>\nMessage-ID: <n@x>\nSubject: s\n\nbody\n")
    assert message.sender is None
    assert message.warnings == ("no From header", "no Date header")


def test_malformed_address_header_is_salvaged() -> None:
    message = parse_message(b'Message-ID: <s@x>\nFrom: "Broken <Someone@Example.org\n\nbody\n')
    assert message.sender == email_address("someone@example.org")
    assert "no From header" not in message.warnings


def test_pathological_headers_stay_fast() -> None:
    # Both took tens of seconds before (a quadratic address regex and decode_header).
    started = time.perf_counter()
    junk_to = parse_message(b"Message-ID: <p@x>\nTo: " + b"x" * 100_000 + b"\n\nbody\n")
    long_subject = parse_message(b"Message-ID: <p@x>\nSubject: " + b"=?utf-8?q?a?= " * 200_000 + b"\n\n")
    assert time.perf_counter() - started < 3
    assert junk_to.to == () and has_warning(junk_to, "unreadable address")
    assert long_subject.subject is not None and long_subject.subject.startswith("aaaa")
    assert "header of 2800000 characters cut to 32768" in long_subject.warnings


def test_undisclosed_recipients_and_groups() -> None:
    message = parse("undisclosed_recipients.eml")
    assert message.to == ()
    assert message.cc == (email_address("alice@example.org", "Alice"), email_address("bob@example.org"))
    assert message.bcc == (email_address("carol@example.org", "Carol"),)  # duplicate dropped
    assert message.warnings == ()  # an empty group is not an unreadable address
    assert [role for role, _ in message.participants()] == ["from", "cc", "cc", "bcc"]


def test_threading_headers() -> None:
    message = parse("threading_headers.eml")
    assert message.rfc_message_id == "reply-3@fixtures.example"  # folded onto the next line
    assert message.in_reply_to == "reply-2@fixtures.example"
    assert message.references == (
        "root@fixtures.example",
        "reply-1@fixtures.example",
        "reply-2@fixtures.example",
    )
    assert message.subject == "Re: Re: thread"
    assert message.warnings == ()


def test_gmail_takeout_headers() -> None:
    message = parse("gmail_takeout.eml")
    assert message.provider_thread_id == "1801234567890123456"
    assert message.labels == ("Inbox", "Important", "Opened", "Category Personal", "Réunions")
    # The Message-ID, then a digest of Message-ID, sender and date (see test_parsing_hostile.py).
    assert message.provider_message_id.startswith("mid:CAF123@mail.gmail.example#")
    assert message.sender == email_address("friend@gmail.example", "Friend")
    assert message.sent_at == dt.datetime(2024, 6, 11, 15, 0, tzinfo=UTC)
    assert message.body_text == "hello from takeout\n"
    assert message.warnings == ()


# ============================================================================ broken bodies


def test_broken_base64() -> None:
    message = parse("base64_broken.eml")
    assert message.body_text == "Hello world"  # junk characters skipped, padding restored
    (attachment,) = message.attachments
    # An impossible length: the whole 4-character groups are decoded, not the base64 text kept.
    assert (attachment.filename, attachment.content, attachment.size) == ("broken.bin", b"ABCEFG", 6)
    assert attachment.sha256 == hashlib.sha256(b"ABCEFG").hexdigest()
    assert message.warnings == (
        "damaged base64 in text/plain part",
        "damaged base64 in application/octet-stream part",
    )


def test_truncated_multipart() -> None:
    message = parse("multipart_truncated.eml")
    assert message.body_text == "The text part is complete."
    (attachment,) = message.attachments
    expected = base64.b64decode(base64.b64encode(FAKE_PDF)[:40])
    assert (attachment.filename, attachment.content_type, attachment.content) == (
        "partial.pdf",
        "application/pdf",
        expected,
    )
    assert attachment.size == 30
    assert message.warnings == ("multipart/mixed part has no closing boundary (truncated?)",)


def test_multipart_whose_boundary_never_occurs_is_kept_as_text() -> None:
    message = parse("multipart_boundary_missing.eml")
    assert "The text is still here." in message.body_text
    assert message.attachments == ()
    assert message.warnings == ("multipart/mixed part without a usable boundary; read as text",)


def test_nul_bytes_are_removed_everywhere() -> None:
    message = parse("nul_bytes.eml")
    assert message.subject == "zerobyte"
    assert message.sender == email_address("nul@example.org", "Nul Person")
    assert message.body_text == "beforeafter"
    assert message.body_html == "<p>htmlpart</p>"
    assert message.references == ("refa@fixtures.example",)
    assert message.provider_thread_id == "1234"
    assert message.labels == ("Inbox",)
    (attachment,) = message.attachments
    assert attachment.filename == "ab.bin"
    assert attachment.content == b"bin\x00ary"  # binary content is stored as it is
    assert message.warnings == ()


def test_moderately_nested_multipart_is_walked() -> None:
    message = parse("nested_multipart_12.eml")
    assert message.body_text == "innermost text at depth 12"
    assert message.warnings == ()


def test_very_deeply_nested_multipart_is_cut_off_with_a_warning() -> None:
    data = raw("nested_multipart_300.eml")
    message = parse_message(data)
    assert message.subject == "very nested"
    # Below the 50 levels the parser reads, the rest is one attachment, byte for byte, and
    # the first text in it is still the body.
    assert message.warnings == (
        "MIME structure over 50 levels deep: the rest of the message is kept unparsed as unparsed-remainder.bin",
    )
    (remainder,) = message.attachments
    assert (remainder.filename, remainder.content_type) == ("unparsed-remainder.bin", "application/octet-stream")
    assert remainder.content == data[data.index(b'Content-Type: multipart/mixed; boundary="d51"') :]
    assert message.body_text == "innermost text at depth 300"


# ============================================================================ not mail


def test_empty_bytes() -> None:
    message = parse("empty.eml")
    assert message.provider_message_id == "sha256:" + hashlib.sha256(b"").hexdigest()
    assert (message.sender, message.subject, message.body_text, message.sent_at) == (None, None, "", None)
    assert message.raw_size == 0
    assert message.warnings == ("empty message", "no Message-ID", "no From header", "no Date header")


def test_random_bytes() -> None:
    data = raw("not_mail_random.eml")
    message = parse_message(data)
    assert message.provider_message_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert message.sender is None and message.subject is None and message.sent_at is None
    assert message.body_text  # kept (cleaned), not dropped
    assert message.warnings == (
        "no headers: not an e-mail message?",
        "no Message-ID",
        "no From header",
        "no Date header",
    )


def test_bom_and_blank_lines_before_headers_are_skipped() -> None:
    message = parse("garbage_before_headers.eml")
    assert message.rfc_message_id == "bom-1@fixtures.example"
    assert message.subject == "saved by a Windows tool"
    assert message.sender == email_address("exported@example.org", "Exported")
    assert message.sent_at == dt.datetime(2024, 6, 13, 8, 0, tzinfo=UTC)
    assert message.body_text == "The headers above follow a byte-order mark and blank lines.\r\n"
    assert message.warnings == ("7 bytes before the headers skipped",)


@pytest.mark.parametrize(
    "data",
    [b"\x00" * 64, b"\n" * 10, b"\xef\xbb\xbf", b":\n:\n\n", b"--\n--\n", b"Content-Type: multipart/mixed\n\n--\n"],
    ids=["nuls", "newlines", "bom-only", "colons", "dashes", "multipart-no-boundary"],
)
def test_degenerate_inputs(data: bytes) -> None:
    message = parse_message(data)
    assert_sane(message)
    assert "no Message-ID" in message.warnings

