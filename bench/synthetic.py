"""Deterministic synthetic RFC 5322 mail for benchmarks (no Django, stdlib only).

``generate_messages(n, seed)`` streams ``n`` realistic messages as CRLF bytes, always the
same for the same ``(n, seed)`` (a longer run starts with the messages of a shorter one):

* 3-6 participants per message (From + To/Cc) drawn, with a Zipf-like skew, from a pool
  of a few thousand addresses over a few hundred domains, about a quarter of them on
  free-mail domains (gmail.com, outlook.com...), plus a few robots (noreply@...);
  display names on most, non-ASCII ones RFC 2047 encoded (B or Q), some "Last, First";
* the mailbox owner (``OWNER_ADDRESS``) takes part in most messages, as sender in ~25%;
* ~30% replies in earlier threads (In-Reply-To + References to earlier generated
  Message-IDs, "Re:" subject, quoted text), the rest start new threads;
* ~10% with one or two attachments (PDF- or PNG-shaped blobs of 1-8 KB, base64),
  a quarter of them drawn from a few shared blobs so that identical content recurs;
* ~5% HTML-only, the rest split between multipart/alternative and text/plain
  (7bit, quoted-printable or base64 transfer encodings);
* bodies of a few hundred to a few thousand characters, Date and Received headers
  moving forward in time with assorted time zones.

Memory stays bounded whatever ``n``: only a ring of recent threads is remembered.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import html
import random
import unicodedata
from collections.abc import Iterator
from email.utils import format_datetime

__all__ = ["OWNER_ADDRESS", "OWNER_NAME", "generate_messages"]

OWNER_NAME = "Alex Morgan"
OWNER_ADDRESS = "alex.morgan@northwind-trading.com"

REPLY_RATE = 0.30
ATTACHMENT_RATE = 0.10
HTML_ONLY_RATE = 0.05
ALTERNATIVE_RATE = 0.55  # of the messages that are not HTML-only
OWNER_SENDS_RATE = 0.25
OWNER_RECEIVES_RATE = 0.60
SHARED_ATTACHMENT_RATE = 0.25

_THREAD_RING = 3000  # threads remembered for replies
_MAX_REFERENCES = 12
_POOL_ADDRESSES = 3000
_POOL_COMPANY_DOMAINS = 300
_START = dt.datetime(2019, 1, 7, 8, 30, tzinfo=dt.UTC)
_MEAN_GAP_SECONDS = 20 * 60

FREE_MAIL = (
    "gmail.com", "outlook.com", "hotmail.com", "yahoo.com", "icloud.com", "aol.com",
    "gmx.de", "web.de", "proton.me", "yahoo.co.uk", "orange.fr", "mail.ru", "qq.com", "comcast.net",
)  # fmt: skip

FIRST_NAMES = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard "
    "Susan Joseph Jessica Thomas Sarah Charles Karen Daniel Nancy Matthew Lisa Anthony Betty Mark "
    "Sandra Steven Ashley Paul Emily Andrew Donna Joshua Michelle Kevin Carol Brian Amanda George "
    "Melissa Timothy Deborah Ryan Stephanie Jacob Rebecca Nicholas Laura Eric Sharon Jonathan Cynthia "
    "Priya Rahul Wei Mei Hiroshi Yuki Ahmed Fatima Olga Ivan Lars Ingrid Pieter Anke Marco Giulia "
    "José Zoë Jürgen François Søren Łukasz Björn Chloé Renée Małgorzata Ólafur Dvořák Çağla Nuñez "
    "Agnès Thérèse Kłos Åsa Mühlberg"
).split()
LAST_NAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Wilson "
    "Anderson Thomas Taylor Moore Jackson Martin Lee Thompson White Harris Clark Lewis Robinson Walker "
    "Young Allen King Wright Scott Green Baker Adams Nelson Hill Campbell Mitchell Roberts Carter "
    "Phillips Evans Turner Torres Parker Collins Edwards Stewart Morris Murphy Cook Rogers Patel Shah "
    "Chen Wang Tanaka Sato Kim Park Nguyen Ivanov Petrov Jensen Hansen Andersson Visser Bakker Rossi "
    "Bianchi Müller Schröder Weiß Lefèvre Gonçalves Peña Sørensen Wójcik Nováková Öztürk Ångström "
    "García Fernández Dubois Strauß"
).split()
FIRST_NAMES = (tuple(n for n in FIRST_NAMES if n.isascii()), tuple(n for n in FIRST_NAMES if not n.isascii()))
LAST_NAMES = (tuple(n for n in LAST_NAMES if n.isascii()), tuple(n for n in LAST_NAMES if not n.isascii()))
CJK_NAMES = ("田中 太郎", "山田 花子", "王 伟", "李 娜", "김 민준", "이 서연", "Δημήτρης Παπαδόπουλος", "Иван Петров")
_SYLLABLES = (
    "acme nord sun blue green red silver iron oak pine river lake stone bright swift prime core "
    "vertex nova terra aqua fusion apex summit harbor bridge delta omega alpha beta pixel data cloud "
    "logic metric quant solar lunar astro bio med fin tech soft works labs group systems partners "
    "global trade build craft foods farms motors energy capital media health legal"
).split()
_TLDS = ("com",) * 10 + ("net", "org", "io", "co.uk", "de", "fr", "nl", "ca", "com.au", "ch", "se", "es", "it")
VOCAB = (
    "the a to of and in for on with is that this we you it be as are at will our have from by can "
    "please thanks meeting project proposal contract invoice payment schedule review update call "
    "team client budget quarter report draft deadline next week tomorrow today friday monday agenda "
    "attached document details question follow up regarding discussed agreed confirm availability "
    "delivery shipment order pricing quote discount renewal account support issue ticket resolved "
    "customer feedback launch release version feature requirements timeline milestone risk approval "
    "signature legal terms conditions revised final numbers forecast revenue cost estimate hours "
    "travel office visit lunch dinner conference workshop training onboarding hiring candidate "
    "interview offer let me know if there any questions happy help best regards looking forward "
    "hearing from soon great news unfortunately delay sorry apologies inconvenience appreciate "
    "patience would like could should might also just still already again new old first last "
    "data migration server backup security audit compliance policy vendor partner integration"
).split()
ACCENTED = (
    "café naïve résumé Grüße Straße façade déjà-vu jalapeño smörgåsbord crème brûlée "
    "€120 £75 ¥5000 São Paulo Zürich Kraków Malmö Besançon 東京 北京 서울 Москва"
).split()
SUBJECT_OPENERS = (
    "Re: quick question about", "Follow-up:", "Invitation:", "Updated invitation:", "Proposal for",
    "Invoice", "Meeting notes:", "[Action required]", "FYI:", "Draft:", "Question about", "Intro:",
    "Your order", "Reminder:", "Weekly sync:", "Contract renewal -", "Welcome to", "Feedback on",
)  # fmt: skip
_TIMEZONES = tuple(
    dt.timezone(dt.timedelta(minutes=m)) for m in (0, 0, 0, -300, -240, -420, -480, 60, 120, 330, 540, 600, -180)
)
_MAILERS = (
    "Microsoft Outlook 16.0", "Apple Mail (2.3774.500.171.1.1)", "Mozilla Thunderbird", "",
    "", "", "Zimbra 9.0", "Superhuman",
)  # fmt: skip
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
_PDF_MAGIC = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n"


# --------------------------------------------------------------------------- encoding helpers


def _encode_word(text: str, rng: random.Random) -> str:
    """An RFC 2047 encoded word (B or Q) when ``text`` is not ASCII, else ``text``."""
    if text.isascii():
        return text
    data = text.encode("utf-8")
    if rng.random() < 0.5:
        return f"=?UTF-8?B?{base64.b64encode(data).decode('ascii')}?="
    encoded = "".join(
        chr(b) if (48 <= b <= 57 or 65 <= b <= 90 or 97 <= b <= 122) else "_" if b == 32 else f"={b:02X}"
        for b in data
    )
    return f"=?utf-8?q?{encoded}?="


def _format_address(name: str, address: str, rng: random.Random) -> str:
    if not name:
        return address if rng.random() < 0.5 else f"<{address}>"
    if not name.isascii():
        return f"{_encode_word(name, rng)} <{address}>"
    if "," in name or "." in name:
        return f'"{name}" <{address}>'
    return f"{name} <{address}>" if rng.random() < 0.7 else f'"{name}" <{address}>'


def _fold_list(name: str, items: list[str]) -> str:
    """``Name: a, b, c`` folded before an item whenever a line would pass 76 characters."""
    line = f"{name}: "
    lines: list[str] = []
    for index, item in enumerate(items):
        piece = item + ("," if index < len(items) - 1 else "")
        if len(line) + len(piece) > 76 and line.strip() != f"{name}:":
            lines.append(line.rstrip())
            line = " "
        line += piece + " "
    lines.append(line.rstrip())
    return "\n".join(lines)


def _wrap(text: str, width: int = 72) -> str:
    out: list[str] = []
    line: list[str] = []
    length = 0
    for word in text.split(" "):
        if length + len(word) > width and line:
            out.append(" ".join(line))
            line, length = [], 0
        line.append(word)
        length += len(word) + 1
    if line:
        out.append(" ".join(line))
    return "\n".join(out)


def _qp(text: str) -> bytes:
    return binascii.b2a_qp(text.encode("utf-8"), istext=True)


def _b64(data: bytes) -> bytes:
    return base64.encodebytes(data)  # 76-character lines


# --------------------------------------------------------------------------- pools


class _Pools:
    def __init__(self, rng: random.Random) -> None:
        domains: list[str] = []
        seen: set[str] = set()
        while len(domains) < _POOL_COMPANY_DOMAINS:
            a, b = rng.sample(_SYLLABLES, 2)
            joiner = rng.choice(("", "", "-"))
            domain = f"{a}{joiner}{b}.{rng.choice(_TLDS)}"
            if domain not in seen:
                seen.add(domain)
                domains.append(domain)
        self.company_domains = domains
        addresses: list[tuple[str, str]] = []
        taken = {OWNER_ADDRESS}
        while len(addresses) < _POOL_ADDRESSES:
            roll = rng.random()
            if roll < 0.01:  # robots: recorded as participants, never contacts
                domain = rng.choice(domains)
                local = rng.choice(("noreply", "no-reply", "notifications", "mailer-daemon", "billing"))
                name = "" if rng.random() < 0.5 else f"{domain.split('.')[0].title()} Notifications"
            else:
                domain = rng.choice(FREE_MAIL) if roll < 0.26 else _zipf_pick(rng, domains)
                if rng.random() < 0.04:
                    name = rng.choice(CJK_NAMES)
                    first, last = "user", str(rng.randrange(10, 9999))
                else:
                    first, last = _pick_name(FIRST_NAMES, rng), _pick_name(LAST_NAMES, rng)
                    name = f"{first} {last}"
                local = _local_part(first, last, rng)
                style = rng.random()
                if style < 0.30:
                    name = ""
                elif style < 0.38 and first != "user":
                    name = f"{last}, {first}"
            address = f"{local}@{domain}"
            if address in taken:
                continue
            taken.add(address)
            addresses.append((name, address))
        self.addresses = addresses
        # Zipf-like weights: a few frequent correspondents, a long tail.
        weights = [1.0 / (rank + 1) ** 0.85 for rank in range(len(addresses))]
        total = 0.0
        self.cum_weights: list[float] = []
        for weight in weights:
            total += weight
            self.cum_weights.append(total)

    def pick(self, rng: random.Random, k: int, exclude: set[str]) -> list[tuple[str, str]]:
        chosen: list[tuple[str, str]] = []
        while len(chosen) < k:
            for candidate in rng.choices(self.addresses, cum_weights=self.cum_weights, k=k - len(chosen)):
                if candidate[1] not in exclude:
                    exclude.add(candidate[1])
                    chosen.append(candidate)
        return chosen


_ACCENTED_NAME_RATE = 0.08  # per name part; about one message in three has an encoded name


def _pick_name(names: tuple[tuple[str, ...], tuple[str, ...]], rng: random.Random) -> str:
    plain, accented = names
    return rng.choice(accented if rng.random() < _ACCENTED_NAME_RATE else plain)


def _zipf_pick(rng: random.Random, items: list[str]) -> str:
    index = min(len(items) - 1, int(rng.paretovariate(1.2)) - 1)
    return items[index] if rng.random() < 0.5 else rng.choice(items)


def _ascii_fold(text: str) -> str:
    folded = unicodedata.normalize("NFKD", text.lower().replace("ß", "ss").replace("ł", "l").replace("ø", "o"))
    return "".join(c for c in folded if c.isascii() and (c.isalnum() or c in "-_")) or "x"


def _local_part(first: str, last: str, rng: random.Random) -> str:
    f, la = _ascii_fold(first), _ascii_fold(last)
    style = rng.randrange(7)
    if style == 0:
        return f"{f}.{la}"
    if style == 1:
        return f"{f[0]}{la}"
    if style == 2:
        return f
    if style == 3:
        return f"{f}_{la}{rng.randrange(1, 99)}"
    if style == 4:
        return f"{f}.{la}+{rng.choice(('news', 'work', 'crm'))}"
    if style == 5:
        return f"{f}{la[0]}"
    return f"{la}.{f}"


# --------------------------------------------------------------------------- content


def _sentence(rng: random.Random, accented: bool) -> str:
    words = rng.choices(VOCAB, k=rng.randint(6, 20))
    if accented:
        words[rng.randrange(len(words))] = rng.choice(ACCENTED)
    words[0] = words[0].capitalize()
    return " ".join(words) + rng.choice(".....?!")


def _paragraphs(rng: random.Random, target: int, accented: bool) -> list[str]:
    paragraphs: list[str] = []
    size = 0
    while size < target:
        paragraph = " ".join(_sentence(rng, accented and rng.random() < 0.3) for _ in range(rng.randint(1, 5)))
        paragraphs.append(paragraph)
        size += len(paragraph) + 2
    return paragraphs


def _body_length(rng: random.Random) -> int:
    # Log-uniform between ~300 and ~3500 characters: mostly short, some long.
    return int(300 * (3500 / 300) ** rng.random())


def _subject(rng: random.Random) -> str:
    words = " ".join(rng.choices(VOCAB[20:], k=rng.randint(2, 6)))
    subject = f"{rng.choice(SUBJECT_OPENERS)} {words}" if rng.random() < 0.6 else words.capitalize()
    if rng.random() < 0.05:
        subject += " " + rng.choice(ACCENTED)
    if rng.random() < 0.1:
        subject += f" #{rng.randrange(1000, 99999)}"
    return subject


def _encode_subject(subject: str, rng: random.Random) -> str:
    if subject.isascii():
        return subject
    return " ".join(_encode_word(word, rng) if not word.isascii() else word for word in subject.split(" "))


class _Attachments:
    """Blobs shaped like PDFs and PNGs; some drawn from a small shared set (same sha256)."""

    def __init__(self, rng: random.Random) -> None:
        self.shared: list[tuple[str, str, bytes]] = []
        for index in range(8):
            kind = index % 2
            size = rng.randint(1024, 6144)
            if kind == 0:
                self.shared.append(("logo.png", "image/png", _PNG_MAGIC + rng.randbytes(size)))
            else:
                name = rng.choice(("Terms-and-Conditions.pdf", "Company-Profile.pdf", "Price-List-2024.pdf"))
                self.shared.append((name, "application/pdf", _PDF_MAGIC + rng.randbytes(size)))

    def draw(self, rng: random.Random, index: int) -> tuple[str, str, bytes]:
        if rng.random() < SHARED_ATTACHMENT_RATE:
            return rng.choice(self.shared)
        size = rng.randint(1024, 8192)
        if rng.random() < 0.5:
            stem = rng.choice(("invoice", "quote", "contract", "report", "minutes", "Präsentation", "Angebot"))
            return f"{stem}-{index:06d}.pdf", "application/pdf", _PDF_MAGIC + rng.randbytes(size)
        stem = rng.choice(("scan", "screenshot", "image", "photo"))
        return f"{stem}_{index:06d}.png", "image/png", _PNG_MAGIC + rng.randbytes(size)


def _attachment_part(filename: str, content_type: str, data: bytes) -> bytes:
    if filename.isascii():
        disposition = f'attachment; filename="{filename}"'
        type_line = f'{content_type}; name="{filename}"'
    else:
        from urllib.parse import quote

        disposition = f"attachment;\n filename*=utf-8''{quote(filename)}"
        type_line = content_type
    head = (
        f"Content-Type: {type_line}\nContent-Disposition: {disposition}\nContent-Transfer-Encoding: base64\n\n"
    )
    return head.encode("ascii") + _b64(data)


def _text_part(text: str, rng: random.Random) -> bytes:
    if text.isascii():
        if rng.random() < 0.8:
            return b'Content-Type: text/plain; charset="us-ascii"\nContent-Transfer-Encoding: 7bit\n\n' + (
                text.encode("ascii") + b"\n"
            )
        return b'Content-Type: text/plain; charset="UTF-8"\nContent-Transfer-Encoding: quoted-printable\n\n' + _qp(
            text + "\n"
        )
    if rng.random() < 0.15:
        return b'Content-Type: text/plain; charset="utf-8"\nContent-Transfer-Encoding: base64\n\n' + _b64(
            text.encode("utf-8")
        )
    return b'Content-Type: text/plain; charset="UTF-8"\nContent-Transfer-Encoding: quoted-printable\n\n' + _qp(
        text + "\n"
    )


def _html_part(paragraphs: list[str], quoted: list[str], greeting: str) -> bytes:
    body = [f"<p>{html.escape(greeting)}</p>"]
    body.extend(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    if quoted:
        body.append('<blockquote style="margin:0 0 0 .8ex;border-left:1px #ccc solid;padding-left:1ex">')
        body.extend(f"<div>{html.escape(q)}</div>" for q in quoted)
        body.append("</blockquote>")
    document = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
        "<style>p{margin:0 0 1em 0} .sig{color:#888}</style></head>\n"
        '<body><div dir="ltr" style="font-family:Arial,sans-serif;font-size:14px">\n'
        + "\n".join(body)
        + '\n<div class="sig">--<br>Sent from my desk</div></div></body></html>\n'
    )
    return b'Content-Type: text/html; charset="UTF-8"\nContent-Transfer-Encoding: quoted-printable\n\n' + _qp(
        document
    )


# --------------------------------------------------------------------------- generator


class _Thread:
    __slots__ = ("subject", "people", "ids", "last_sender")

    def __init__(self, subject: str, people: list[tuple[str, str]], message_id: str, sender: tuple[str, str]):
        self.subject = subject
        self.people = people
        self.ids = [message_id]
        self.last_sender = sender


def generate_messages(n: int, seed: int = 1) -> Iterator[bytes]:
    """Yields ``n`` synthetic RFC 5322 messages (CRLF line ends), deterministically for ``seed``.

    Message-IDs are unique within one call (and, in practice, across seeds).
    """
    rng = random.Random(seed)
    pools = _Pools(random.Random(f"pools-{seed}"))
    blobs = _Attachments(random.Random(f"blobs-{seed}"))
    owner = (OWNER_NAME, OWNER_ADDRESS)
    threads: list[_Thread] = []
    ring_next = 0
    clock = _START

    for index in range(n):
        clock += dt.timedelta(seconds=rng.expovariate(1.0 / _MEAN_GAP_SECONDS))
        thread: _Thread | None = None
        if threads and rng.random() < REPLY_RATE:
            back = min(len(threads) - 1, int(rng.expovariate(1.0 / 40)))
            thread = threads[(ring_next - 1 - back) % len(threads)]

        # Participants: 3-6 in all, From first.
        total = rng.randint(3, 6)
        if thread is not None:
            people = [p for p in thread.people if p != thread.last_sender]
            sender = rng.choice(people) if people else thread.last_sender
            others = [thread.last_sender] + [p for p in people if p != sender]
            others = others[: total - 1]
            exclude = {sender[1], *(p[1] for p in others)}
            if len(others) < total - 1:
                others += pools.pick(rng, total - 1 - len(others), exclude)
        else:
            exclude = {OWNER_ADDRESS}
            roll = rng.random()
            if roll < OWNER_SENDS_RATE:
                sender = owner
                others = pools.pick(rng, total - 1, exclude)
            else:
                sender = pools.pick(rng, 1, exclude)[0]
                others = pools.pick(rng, total - 2, exclude)
                if roll < OWNER_SENDS_RATE + OWNER_RECEIVES_RATE:
                    others.insert(rng.randrange(len(others) + 1), owner)
                else:
                    others += pools.pick(rng, 1, exclude)
        n_to = max(1, min(len(others), rng.randint(1, 3)))
        to, cc = others[:n_to], others[n_to:]

        sender_domain = sender[1].rpartition("@")[2]
        host = "mail.gmail.com" if sender_domain == "gmail.com" else sender_domain
        message_id = f"{seed:x}.{index:x}.{rng.getrandbits(40):010x}@{host}"
        if thread is None:
            subject = _subject(rng)
            references: list[str] = []
            in_reply_to = ""
        else:
            subject = thread.subject if thread.subject.lower().startswith("re:") else f"Re: {thread.subject}"
            references = thread.ids[-_MAX_REFERENCES:]
            if len(thread.ids) > _MAX_REFERENCES:
                references = [thread.ids[0], *thread.ids[-_MAX_REFERENCES + 1 :]]
            in_reply_to = thread.ids[-1]

        # Bodies.
        accented = rng.random() < 0.15
        paragraphs = _paragraphs(rng, _body_length(rng), accented)
        first_name = (to[0][0].split(" ")[0] if to[0][0] else "") or "there"
        greeting = rng.choice(("Hi", "Hello", "Dear", "Hey")) + f" {first_name.rstrip(',')},"
        quoted: list[str] = []
        if thread is not None and rng.random() < 0.7:
            quoted = [_wrap(p, 70) for p in _paragraphs(rng, rng.randint(150, 900), False)]
        closing = rng.choice(("Best regards", "Thanks", "Cheers", "Kind regards", "Best"))
        sign_off = f"{closing},\n{sender[0] or sender[1]}"
        text_lines = [greeting, ""]
        for paragraph in paragraphs:
            text_lines += [_wrap(paragraph), ""]
        text_lines.append(sign_off)
        if quoted and thread is not None:
            quoted_from = thread.last_sender[0] or thread.last_sender[1]
            text_lines += ["", f"On {format_datetime(clock - dt.timedelta(hours=3))}, {quoted_from} wrote:"]
            for q in quoted:
                text_lines += ["> " + line for line in q.split("\n")] + [">"]
        text = "\n".join(text_lines)

        roll = rng.random()
        boundary = f"----=_Part_{index}_{rng.getrandbits(32):08x}"
        if roll < HTML_ONLY_RATE:
            content = _html_part(paragraphs, quoted, greeting)
        elif roll < HTML_ONLY_RATE + (1 - HTML_ONLY_RATE) * ALTERNATIVE_RATE:
            content = (
                f'Content-Type: multipart/alternative; boundary="{boundary}-alt"\n\n'.encode("ascii")
                + f"--{boundary}-alt\n".encode("ascii")
                + _text_part(text, rng)
                + f"\n--{boundary}-alt\n".encode("ascii")
                + _html_part(paragraphs, quoted, greeting)
                + f"\n--{boundary}-alt--\n".encode("ascii")
            )
        else:
            content = _text_part(text, rng)

        if rng.random() < ATTACHMENT_RATE:
            preamble = (
                f'Content-Type: multipart/mixed; boundary="{boundary}"\n\n'
                "This is a multi-part message in MIME format.\n\n"
            )
            parts = [
                preamble.encode("ascii"),
                f"--{boundary}\n".encode("ascii"),
                content,
            ]
            for _ in range(1 if rng.random() < 0.8 else 2):
                parts.append(f"\n--{boundary}\n".encode("ascii"))
                parts.append(_attachment_part(*blobs.draw(rng, index)))
            parts.append(f"\n--{boundary}--\n".encode("ascii"))
            content = b"".join(parts)

        # Headers.
        local_clock = clock.astimezone(rng.choice(_TIMEZONES))
        received_at = clock + dt.timedelta(seconds=rng.randint(1, 90))
        relay = f"mail-{rng.choice(('sor', 'qt', 'ej', 'wr'))}f{rng.randrange(1, 99)}.{host}"
        headers = [
            f"Return-Path: <{sender[1]}>",
            f"Received: from {relay} ({relay} [10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}])\n"
            f"\tby mx1.northwind-trading.com with ESMTPS id {rng.getrandbits(48):012x}\n"
            f"\tfor <{OWNER_ADDRESS}>; {format_datetime(received_at)}",
            f"Date: {format_datetime(local_clock)}",
            f"From: {_format_address(sender[0], sender[1], rng)}",
            _fold_list("To", [_format_address(name, address, rng) for name, address in to]),
        ]
        if cc:
            headers.append(_fold_list("Cc", [_format_address(name, address, rng) for name, address in cc]))
        headers.append(f"Subject: {_encode_subject(subject, rng)}")
        headers.append(f"Message-ID: <{message_id}>")
        if in_reply_to:
            headers.append(f"In-Reply-To: <{in_reply_to}>")
            headers.append(_fold_list("References", [f"<{r}>" for r in references]).replace(",", ""))
        mailer = rng.choice(_MAILERS)
        if mailer:
            headers.append(f"X-Mailer: {mailer}")
        headers.append("MIME-Version: 1.0")
        raw = "\n".join(headers).encode("ascii") + b"\n" + content
        yield raw.replace(b"\n", b"\r\n")

        # Remember the thread for later replies (bounded ring).
        if thread is None:
            new_thread = _Thread(subject, [sender, *others], message_id, sender)
            if len(threads) < _THREAD_RING:
                threads.append(new_thread)
                ring_next = len(threads) % _THREAD_RING
            else:
                threads[ring_next] = new_thread
                ring_next = (ring_next + 1) % _THREAD_RING
        else:
            thread.ids.append(message_id)
            if len(thread.ids) > _MAX_REFERENCES + 1:
                del thread.ids[1:-_MAX_REFERENCES]
            thread.last_sender = sender
            if sender not in thread.people:
                thread.people.append(sender)
