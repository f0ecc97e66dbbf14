"""parse_message against mail built to stop a mailbox or exhaust a worker.

Time: every construct that once made some step quadratic (HTML tag openers, quoted ";" in
MIME parameters, boundary nesting, thousands of parts) is parsed in linear time, and a
per-message budget bounds the rest. The timed tests parse in a worker thread and give up
waiting after a few seconds, so that a regression fails fast instead of hanging the suite.
Structure: past the depth and part limits the rest of a message is one attachment.
Bodies: a message whose only text is forwarded, attached inline or below the limits still
gets a body text. Ids: a Message-ID alone no longer decides which messages are one.
bench/hostile.py prints the timings at 100 KB, 400 KB and 1.6 MB.
"""
from __future__ import annotations

import dataclasses
import email
import hashlib
import threading
import time
from pathlib import Path

import pytest

from conversations import headers, mime, parsing
from conversations.messages import ParsedMessage
from conversations.parsing import html_to_text, parse_headers_only, parse_message

MAIL = Path(__file__).parent / "fixtures" / "mail"
HEADERS = (
    b"Message-ID: <hostile@example.org>\nFrom: Sender <sender@example.org>\nTo: rcpt@example.org\n"
    b"Date: Mon, 03 Jun 2024 10:00:00 +0000\nSubject: hostile\n"
)
REMAINDER = "unparsed-remainder.bin"
SIZE = 400 * 1024


def parse_within(raw: bytes, seconds: float = 2.0) -> ParsedMessage:
    """parse_message in a worker thread (as the sync engine runs it), failing if it is not done in time."""
    result: list[ParsedMessage] = []
    worker = threading.Thread(target=lambda: result.append(parse_message(raw)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"parsing {len(raw):,} bytes took over {seconds} s"
    return result[0]


def has_warning(message: ParsedMessage, fragment: str) -> bool:
    return any(fragment in warning for warning in message.warnings)


def nested_multipart(depth: int, body: bytes, closed: bool = False) -> bytes:
    parts = [HEADERS, b"Content-Type: multipart/mixed; boundary=b0\n\n"]
    for level in range(1, depth):
        parts.append(b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (level - 1, level))
    parts.append(b"--b%d\nContent-Type: text/plain\n\n" % (depth - 1) + body)
    if closed:
        parts.extend(b"\n--b%d--" % level for level in reversed(range(depth)))
        parts.append(b"\n")
    return b"".join(parts)


# ============================================================================ HTML


@pytest.mark.parametrize("unit", ["<a ", "<!--", "</", "<?", "<div>", "<b><i></b>", "<table><a>"])
def test_hostile_html_body_is_read_in_linear_time(unit: str) -> None:
    # With the stdlib's HTMLParser, 29 KB of "<a " took 10 s; 400 KB took many minutes.
    html = "<p>before</p>" + unit * (SIZE // len(unit))
    raw = HEADERS + b"Content-Type: text/html; charset=utf-8\n\n" + html.encode()
    message = parse_within(raw)
    assert message.body_text.startswith("before")
    assert message.body_html == html  # stored as sent


@pytest.mark.parametrize(
    ("html", "text"),
    [
        # An unfinished tag or comment runs to the end of the document, as in a browser.
        ("<p>kept</p><a href=x lost", "kept"),
        ("<p>kept</p><a href='x' <b>shown", "kept\nshown"),  # "<b" is an attribute name there
        ("<p>kept</p><!-- lost", "kept"),
        ("a<!-- c -->b<!-->c<!--->d", "abcd"),
        ("<p>kept</p><? lost", "kept"),
        ("a < b and c<d", "a < b and c"),  # "<d" opens a tag that never ends
        ("x<br>y<br/>z</br>w", "x\ny\nz\nw"),
        ("<p>a&nbsp;b &amp; &lt;c&gt; &eacute;&#233;</p>", "a b & <c> éé"),
        ("<script>if (a<b) { x('</p>') }</script>shown<style>p{}</style>", "shown"),
        ("<html><head><title>t</title><meta charset=utf-8></head><body>body</body>", "body"),
        ("<head><title>t</title><p>no closing head</p>", "no closing head"),  # the <p> ends the head
        ("<a title='a > b' href=\"c>d\">link</a>", "link"),
        ("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\n\nc"),
        ("<div>one\n  two</div><pre>  x\n    y</pre><p>three</p>", "one two\n\nx\ny\n\nthree"),
        ("<ul><li>one<li>two</ul>", "one\ntwo"),
        ("<P>Upper</P><BR>case", "Upper\n\ncase"),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_html_to_text_is_linear_in_nesting() -> None:
    # nh3's html5ever looks through the stack of open elements at each tag: 1.6 MB of
    # nested <div> takes seconds there (500 KB here: half a second). This converter keeps no stack.
    started = time.perf_counter()
    assert html_to_text("<div>" * 100_000 + "deep") == "deep"
    assert time.perf_counter() - started < 2


# ============================================================================ MIME parameters


def test_quoted_semicolons_in_content_type_are_linear() -> None:
    # email.message._parseparam recounts quotes from the start at each ";": 156 KB took 5 s.
    value = b'text/plain; charset=utf-8; x="' + b";" * SIZE + b'"'
    message = parse_within(HEADERS + b"Content-Type: " + value + b"\n\ncaf\xc3\xa9\n")
    assert message.body_text == "café\n"  # the charset parameter survives the cut
    assert message.warnings == (f"Content-Type header of {len(value):,} characters cut to its main parameters",)


def test_quoted_semicolons_in_content_disposition_are_linear() -> None:
    raw = HEADERS + (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\ntext\n"
        b"--b\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n"
        b'Content-Disposition: attachment; filename="'
        + b";" * SIZE
        + b'"\n\nJVBERi0=\n--b--\n'
    )
    message = parse_within(raw)
    assert message.body_text == "text"
    (pdf,) = message.attachments
    assert (pdf.filename, pdf.content_type, pdf.content) == ("part-1", "application/pdf", b"%PDF-")
    assert has_warning(message, "Content-Disposition header of")


def test_long_content_type_keeps_its_boundary_and_charset() -> None:
    junk = "; ".join(f"x{i}=\"{i};{i}\"" for i in range(2_000))
    raw = HEADERS + (
        f"Content-Type: multipart/mixed; {junk}; boundary=\"bd\"\n\n"
        "--bd\nContent-Type: text/plain; charset=iso-8859-1\n\ncaf\xe9\n--bd--\n"
    ).encode("latin-1")
    message = parse_within(raw)
    assert message.body_text == "café"
    assert message.attachments == ()
    assert has_warning(message, "cut to its main parameters")


def test_ordinary_parameters_are_left_alone() -> None:
    # An RFC 2231 file name in 19 continuations is long, but genuine: it is read whole.
    name = "é" * 250
    escapes = [f"%{byte:02X}" for byte in name.encode()]
    chunks = ["".join(escapes[start : start + 27]) for start in range(0, len(escapes), 27)]
    continuations = "; ".join(
        f"filename*{i}*={'utf-8' + chr(39) * 2 if i == 0 else ''}{chunk}" for i, chunk in enumerate(chunks)
    )
    assert len(chunks) == 19 and len(continuations) > 1_700
    raw = HEADERS + (
        "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nsee attached\n"
        "--b\nContent-Type: application/octet-stream\n"
        f"Content-Disposition: attachment; {continuations}\n\nAA==\n--b--\n"
    ).encode()
    message = parse_message(raw)
    assert message.attachments[0].filename == name
    assert message.warnings == ()


# ============================================================================ MIME structure


def test_boundary_nesting_costs_no_more_per_line_than_a_flat_message() -> None:
    # FeedParser tests every line against every open boundary: 50 levels made each line 50
    # regex matches. Here a line costs the same at any depth.
    body = b"x\n" * 100_000

    def best_time(raw: bytes) -> float:
        timings = []
        for _ in range(3):
            started = time.perf_counter()
            parse_within(raw, seconds=5)
            timings.append(time.perf_counter() - started)
        return min(timings)

    flat, deep = best_time(nested_multipart(1, body)), best_time(nested_multipart(50, body))
    assert deep < 3 * flat + 0.05, (flat, deep)


def test_deep_boundary_nesting_keeps_the_headers_and_the_rest_as_one_attachment() -> None:
    # 400 KB of nesting made the stdlib parser hit the recursion limit: the message was then
    # read as headerless text, sender and subject lost.
    raw = nested_multipart(SIZE // 60, b"innermost\n", closed=True)
    message = parse_within(raw)
    assert message.subject == "hostile"
    assert message.sender is not None and message.sender.value == "sender@example.org"
    assert message.warnings == (
        f"MIME structure over 50 levels deep: the rest of the message is kept unparsed as {REMAINDER}",
    )
    (remainder,) = message.attachments
    assert (remainder.filename, remainder.content_type) == (REMAINDER, "application/octet-stream")
    assert remainder.content == raw[raw.index(b"Content-Type: multipart/mixed; boundary=b51\n") :]
    assert message.body_text == "innermost\n"  # the first text in what was not parsed


def test_text_below_the_cut_is_found_past_other_parts_and_decoded() -> None:
    levels = b"".join(b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i - 1, i) for i in range(1, 60))
    innermost = (
        b"--b59\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n\niVBORw0KGgo=\n"
        b"--b59\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n"
        b"caf=C3=A9 du =\ncoin\n--b59--\n"
    )
    raw = (HEADERS + b"Content-Type: multipart/mixed; boundary=b0\n\n" + levels + innermost).replace(b"\n", b"\r\n")
    message = parse_message(raw)
    assert message.body_text == "café du coin"
    assert [a.filename for a in message.attachments] == [REMAINDER]


def test_deep_message_rfc822_nesting_keeps_the_headers() -> None:
    raw = HEADERS + b"Content-Type: message/rfc822\n\n" * 5_000 + b"Subject: inner\n\nthe inner text\n"
    message = parse_within(raw)
    assert (message.subject, message.rfc_message_id) == ("hostile", "hostile@example.org")
    assert has_warning(message, "MIME structure over 50 levels deep")
    (forwarded,) = message.attachments
    assert forwarded.content_type == "message/rfc822"
    assert forwarded.content is not None and forwarded.content.endswith(b"Subject: inner\n\nthe inner text\n")
    assert message.body_text == "the inner text\n"


def test_parts_past_the_limit_are_one_attachment() -> None:
    attachment = b'--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename="f%d.bin"\n'
    parts = b"".join(attachment % i + b"\nAA==\n" for i in range(1, 1_500))
    text = b"--b\nContent-Type: text/plain\n\nthe text\n"
    raw = HEADERS + b"Content-Type: multipart/mixed; boundary=b\n\n" + text + parts + b"--b--\n"
    message = parse_within(raw)
    assert message.body_text == "the text"
    assert message.warnings == (f"more than 1,000 MIME parts: the rest of the message is kept unparsed as {REMAINDER}",)
    # The root and the text part count: attachments f1..f998, then the remainder from f999 on.
    *files, remainder = message.attachments
    assert [attachment.filename for attachment in files] == [f"f{i}.bin" for i in range(1, 999)]
    assert remainder.filename == REMAINDER
    start = raw.index(b'Content-Type: application/octet-stream\nContent-Disposition: attachment; filename="f999.bin"')
    assert remainder.content == raw[start:]


def test_many_delivery_status_blocks_are_capped() -> None:
    raw = HEADERS + (
        b"Content-Type: multipart/report; boundary=b\n\n--b\nContent-Type: text/plain\n\nbounced\n"
        b"--b\nContent-Type: message/delivery-status\n\n" + b"Status: 5.0.0\n\n" * 30_000 + b"--b--\n"
    )
    message = parse_within(raw)
    assert message.body_text == "bounced"
    assert has_warning(message, "more than 1,000 MIME parts")


@pytest.mark.parametrize("path", sorted(MAIL.glob("*.eml")), ids=lambda path: path.name)
def test_ordinary_mail_is_read_as_the_stdlib_reads_it(path: Path) -> None:
    # The limits change nothing below them: same tree, same bytes, same defects.
    data = path.read_bytes()
    if path.name == "nested_multipart_300.eml":
        data = nested_multipart(50, b"at the limit\n", closed=True)
    for variant in (data, data.replace(b"\n", b"\r\n"), data[: len(data) * 2 // 3]):
        ours, parser = mime._parse_mime(variant)
        stdlib = email.message_from_bytes(variant)
        assert parser.cut is None and parser.warnings == []
        assert ours.as_bytes() == stdlib.as_bytes()
        assert [(p.get_content_type(), [type(d) for d in p.defects]) for p in ours.walk()] == [
            (p.get_content_type(), [type(d) for d in p.defects]) for p in stdlib.walk()
        ]


def test_boundary_lookalikes_end_parts_exactly_as_the_stdlib_says() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=\"a\"\n\n--a\n"
        b"Content-Type: multipart/alternative; boundary=\"a--\"\n\n--a--\nContent-Type: text/plain\n\none\n"
        b"--a-- \t\n--a---\n--a -- \n--a--x\n-- a\n--a\t\nContent-Type: text/plain\n\ntwo\n--a--\n"
    )
    ours, _ = mime._parse_mime(raw)
    stdlib = email.message_from_bytes(raw)
    assert ours.as_bytes() == stdlib.as_bytes()
    assert [p.get_payload() for p in ours.walk() if not p.is_multipart()] == [
        p.get_payload() for p in stdlib.walk() if not p.is_multipart()
    ]


# ============================================================================ budget


def test_over_budget_message_is_kept_with_its_headers(settings) -> None:
    data = (MAIL / "multipart_mixed_inline_image_pdf.eml").read_bytes()
    full = parse_message(data)
    settings.PARSE_BUDGET_SECONDS = 0
    message = parse_message(data)
    assert message.warnings[0] == "parsing took over the 0 s budget: stored headers only"
    assert (message.subject, message.sender, message.sent_at) == (full.subject, full.sender, full.sent_at)
    assert (message.body_text, message.body_html, message.attachments) == ("", "", ())
    assert message.raw_size == len(data)
    assert message.provider_message_id == full.provider_message_id  # stored once, whichever way it went


def test_over_budget_message_after_a_byte_order_mark_keeps_its_headers(settings) -> None:
    data = (MAIL / "garbage_before_headers.eml").read_bytes()
    settings.PARSE_BUDGET_SECONDS = 0
    message = parse_message(data)
    assert (message.subject, message.rfc_message_id) == ("saved by a Windows tool", "bom-1@fixtures.example")
    assert has_warning(message, "stored headers only")


def test_over_budget_message_without_message_id_keeps_the_hash_of_all_its_bytes(settings) -> None:
    data = (MAIL / "message_id_missing.eml").read_bytes()
    settings.PARSE_BUDGET_SECONDS = 0
    message = parse_message(data)
    assert message.provider_message_id == "sha256:" + hashlib.sha256(data).hexdigest()
    assert has_warning(message, "stored headers only")


def test_budget_holds_in_a_worker_thread(settings) -> None:
    # No signal: the deadline is checked between steps, so it works off the main thread.
    settings.PARSE_BUDGET_SECONDS = 0.05
    parts = b"".join(b"--b\nContent-Type: text/html\n\n" + b"<p>x</p>" * 20_000 + b"\n" for _ in range(40))
    raw = HEADERS + b"Content-Type: multipart/alternative; boundary=b\n\n" + parts + b"--b--\n"
    message = parse_within(raw, seconds=3)
    assert has_warning(message, "parsing took over the 0.05 s budget: stored headers only")
    assert message.subject == "hostile" and message.body_text == ""


def test_budget_default_and_module_constant(settings) -> None:
    del settings.PARSE_BUDGET_SECONDS
    assert parsing._budget() == parsing.PARSE_BUDGET_SECONDS == 5.0


# ============================================================================ bodies


def forward(*parts: bytes, subtype: bytes = b"mixed") -> bytes:
    body = b"".join(b"--o\n" + part + b"\n" for part in parts)
    return HEADERS + b"Content-Type: multipart/" + subtype + b"; boundary=o\n\n" + body + b"--o--\n"


INNER = (
    b"Message-ID: <inner@example.org>\nFrom: inner@example.org\nSubject: inner\n"
    b"Content-Type: multipart/alternative; boundary=i\n\n"
    b"--i\nContent-Type: text/plain\n\nthe forwarded text\n--i\nContent-Type: text/html\n\n<p>html</p>\n--i--\n"
)


def test_message_that_only_forwards_another_gets_its_text() -> None:
    message = parse_message(forward(b"Content-Type: message/rfc822\n\n" + INNER))
    assert message.body_text == "the forwarded text"
    (forwarded,) = message.attachments  # still one .eml attachment
    assert (forwarded.filename, forwarded.content_type) == ("inner.eml", "message/rfc822")
    assert message.body_html == ""


def test_digest_gets_the_text_of_its_first_message() -> None:
    first = b"Subject: one\n\n<p>first</p>"
    raw = forward(b"\n" + first, b"\nSubject: two\n\nsecond", subtype=b"digest")
    message = parse_message(raw)
    assert message.body_text == "<p>first</p>"  # default text/plain: read as it is
    assert [attachment.filename for attachment in message.attachments] == ["one.eml", "two.eml"]


def test_forwarded_html_only_message_gives_its_text() -> None:
    inner = b"Subject: news\nContent-Type: text/html\n\n<h1>Title</h1><p>para &amp; more</p>"
    message = parse_message(forward(b"Content-Type: message/rfc822\n\n" + inner))
    assert message.body_text == "Title\n\npara & more"


@pytest.mark.parametrize(
    ("part", "text"),
    [
        (b'Content-Type: text/plain; charset=iso-8859-1; name="notes.txt"\n\ncaf\xe9 notes\n', "café notes"),
        (b'Content-Type: text/plain\nContent-Disposition: inline; filename="a.txt"\n\ninline notes\n', "inline notes"),
        (b'Content-Type: text/html; name="page.html"\n\n<p>an <b>html</b> page</p>\n', "an html page"),
    ],
    ids=["name", "inline-filename", "html"],
)
def test_inline_text_part_with_a_file_name_is_the_body_when_there_is_no_other(part: bytes, text: str) -> None:
    message = parse_message(forward(part))
    assert message.body_text.strip() == text
    assert len(message.attachments) == 1  # kept as a file too


def test_text_attachment_and_real_body_stay_apart() -> None:
    raw = forward(
        b"Content-Type: text/plain\n\nthe body\n",
        b'Content-Type: text/plain; name="notes.txt"\n\nnot the body\n',
        b"Content-Type: message/rfc822\n\n" + INNER,
    )
    message = parse_message(raw)
    assert message.body_text == "the body\n"
    assert [a.filename for a in message.attachments] == ["notes.txt", "inner.eml"]


def test_text_attachment_is_no_body() -> None:
    part = b'Content-Type: text/plain\nContent-Disposition: attachment; filename="x.txt"\n\nfile\n'
    message = parse_message(forward(part))
    assert message.body_text == ""


def test_first_readable_text_wins() -> None:
    raw = forward(
        b"Content-Type: image/png\n\nAAAA\n",
        b"Content-Type: message/rfc822\n\nSubject: empty\nContent-Type: image/gif\n\nGIF89a\n",
        b'Content-Type: text/plain; name="second.txt"\n\nsecond\n',
        b"Content-Type: message/rfc822\n\n" + INNER,
    )
    assert parse_message(raw).body_text == "second\n"


# ============================================================================ ids


def with_headers(**changes: str) -> bytes:
    headers = {
        "Message-ID": "<shared@example.org>",
        "From": "Ann <ann@example.org>",
        "Date": "Mon, 03 Jun 2024 10:00:00 +0000",
        "Subject": "hello",
    }
    headers.update(changes)
    return "".join(f"{name}: {value}\n" for name, value in headers.items()).encode() + b"\nbody\n"


def test_same_message_id_from_another_sender_or_date_is_another_message() -> None:
    # A Message-ID alone let anyone suppress a message by sending one with its Message-ID first.
    original = parse_message(with_headers()).provider_message_id
    spoofed = parse_message(with_headers(From="Mallory <mallory@example.net>")).provider_message_id
    later = parse_message(with_headers(Date="Mon, 03 Jun 2024 10:00:01 +0000")).provider_message_id
    assert len({original, spoofed, later}) == 3
    assert all(pid.startswith("mid:shared@example.org#") for pid in (original, spoofed, later))


def test_copies_of_one_message_share_one_id() -> None:
    data = with_headers()
    expected = parse_message(data).provider_message_id
    copies = [
        data,
        b"Received: from mx by imap; Mon, 03 Jun 2024 10:00:05 +0000\nX-Gmail-Labels: Inbox\n" + data,
        with_headers(Subject="hello (seen in another folder)"),
        with_headers(From="Ann Other-Name <ANN@example.org>"),  # the same sender, named otherwise
        with_headers(Date="Mon, 3 Jun 2024 12:00:00 +0200"),  # the same instant, written otherwise
    ]
    assert {parse_message(copy).provider_message_id for copy in copies} == {expected}
    header_block = data.split(b"\n\n", 1)[0]
    assert parse_headers_only(header_block, 10**9).provider_message_id == expected
    assert parse_message(data, provider_message_id="imap:INBOX:1").provider_message_id == "imap:INBOX:1"


def test_long_message_ids_stay_distinct_and_within_255_characters() -> None:
    # Cut to 255 characters, the old ids of these two were one and the same.
    first_raw = with_headers(**{"Message-ID": f"<{'a' * 400}1@example.org>"})
    first = parse_message(first_raw)
    second = parse_message(with_headers(**{"Message-ID": f"<{'a' * 400}2@example.org>"}))
    assert first.provider_message_id != second.provider_message_id
    assert len(first.provider_message_id) == len(second.provider_message_id) == 255
    assert first.provider_message_id == parse_message(first_raw).provider_message_id


def test_unreadable_sender_and_date_still_tell_messages_apart() -> None:
    one = parse_message(with_headers(From="???", Date="yesterday")).provider_message_id
    two = parse_message(with_headers(From="!!!", Date="yesterday")).provider_message_id
    three = parse_message(with_headers(From="???", Date="today")).provider_message_id
    assert len({one, two, three}) == 3


@pytest.mark.django_db
def test_spoofed_message_id_no_longer_suppresses_the_real_message(account) -> None:
    from conversations.ingest import store_batch
    from conversations.models import Communication

    spoof = parse_message(with_headers(From="mallory@example.net", Subject="first!"))
    real = parse_message(with_headers())
    same_again = dataclasses.replace(parse_message(with_headers()), labels=("Archive",))
    store_batch(account, [spoof])
    store_batch(account, [real, same_again])
    assert sorted(Communication.objects.filter(account=account).values_list("subject", flat=True)) == [
        "first!",
        "hello",
    ]


# ============================================================================ addresses


def test_huge_address_header_is_cut_between_two_addresses() -> None:
    unit = '"Last, First {0:06d}" <someone.{0:06d}@example.org>, '
    header = "".join(unit.format(i) for i in range(25_000))
    raw = HEADERS.replace(b"To: rcpt@example.org\n", b"To: " + header.encode() + b"\n")
    message = parse_within(raw)
    assert message.warnings == (f"address header of {len(header):,} characters cut to 1,048,576",)
    kept = 1_048_576 // len(unit.format(0))
    assert len(message.to) == kept
    assert (message.to[-1].value, message.to[-1].display_name) == (
        f"someone.{kept - 1:06d}@example.org",
        f"Last, First {kept - 1:06d}",
    )



def test_huge_address_items_are_not_cached() -> None:
    headers._item_pairs.cache_clear()
    raw = b"Message-ID: <c@x>\nFrom: short@example.org\nTo: " + b"x" * 5_000 + b"@example.org, b@example.org\n\nbody\n"
    message = parse_message(raw)
    # The long one is no address: kept as (clipped) raw text for the participant, never resolved.
    assert [address.value for address in message.to] == [("x" * 5_000 + "@example.org")[:320], "b@example.org"]
    assert headers._item_pairs.cache_info().currsize == 2  # From and the short To item only
