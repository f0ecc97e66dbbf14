#!/usr/bin/env python
"""Hostile-mail benchmark: how parse_message's time grows on inputs built to make it slow.

    DEBUG=true .venv/bin/python bench/hostile.py [--sizes 100,400,1600] [--only PATTERN,...] [--repeat 1]

Each pattern is a message of about the given sizes (KB) whose bulk is one construct that
some parser once handled in quadratic time (HTML tag openers, quoted ";" in MIME
parameters, boundary nesting, thousands of parts, encoded words, address lists...). The
table gives the best wall time of ``--repeat`` runs per size and the growth factor from
the middle size to the largest (about 4 when the sizes grow 4x and parsing is linear),
plus the warnings that say what was cut. The target: every pattern under 1 s at 400 KB,
growing linearly.

This prints figures; it asserts nothing.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
if sys.path and sys.path[0] and Path(sys.path[0]).resolve() == BENCH_DIR:
    sys.path[0] = str(REPO_ROOT)  # run as a script: import from the repo root, not bench/
elif str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

HEADERS = (
    b"Message-ID: <hostile@bench.example>\nFrom: Bench <bench@example.org>\nDate: Mon, 3 Jun 2024 10:00:00 +0000\n"
)


def _repeat(unit: bytes, size: int) -> bytes:
    return unit * max(1, size // len(unit))


def _html_body(unit: bytes) -> Callable[[int], bytes]:
    def build(size: int) -> bytes:
        return HEADERS + b"Subject: html\nContent-Type: text/html; charset=utf-8\n\n<p>hi</p>" + _repeat(unit, size)

    return build


def quoted_semicolons_content_type(size: int) -> bytes:
    return HEADERS + b'Content-Type: text/plain; charset=utf-8; x="' + _repeat(b";", size) + b'"\n\nbody\n'


def quoted_semicolons_disposition(size: int) -> bytes:
    return HEADERS + (
        b"Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nbody\n"
        b'--b\nContent-Type: application/pdf\nContent-Disposition: attachment; filename="'
        + _repeat(b";", size)
        + b'"\n\nJVBERi0=\n--b--\n'
    )


def _nested(depth: int, innermost: bytes) -> bytes:
    """``depth`` multiparts, each the only part of the one around it, then ``innermost`` (a part's
    headers and body) inside the deepest."""
    parts = [HEADERS, b"Content-Type: multipart/mixed; boundary=b0\n\n"]
    for level in range(1, depth):
        parts.append(b"--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (level - 1, level))
    parts.append(b"--b%d\n" % (depth - 1) + innermost)
    return b"".join(parts)


def deep_boundary_nesting(size: int) -> bytes:
    unit_size = len(b"--b00000\nContent-Type: multipart/mixed; boundary=b00000\n\n")
    return _nested(max(1, size // unit_size), b"Content-Type: text/plain\n\ninnermost\n")


def nesting_times_lines(size: int) -> bytes:
    """50 nested multiparts (the depth cap), then the bulk as short lines in the innermost part."""
    return _nested(50, b"Content-Type: text/plain\n\n" + _repeat(b"x\n", size))


def nesting_times_dash_lines(size: int) -> bytes:
    """As above, with lines that start like a boundary ("--x"): every one is tested against them."""
    return _nested(50, b"Content-Type: text/plain\n\n" + _repeat(b"--b4\t-\n", size))


def cut_then_blank_lines(size: int) -> bytes:
    """Past the depth limit, no text anywhere: the search for a fallback body reads every line."""
    return _nested(60, b"Content-Type: image/png\n\n" + _repeat(b"\n", size))


def delivery_status_blocks(size: int) -> bytes:
    return HEADERS + (
        b"Content-Type: multipart/report; boundary=b\n\n--b\nContent-Type: text/plain\n\nbounced\n"
        b"--b\nContent-Type: message/delivery-status\n\n" + _repeat(b"Status: 5.0.0\n\n", size) + b"--b--\n"
    )


def deep_rfc822_nesting(size: int) -> bytes:
    return HEADERS + _repeat(b"Content-Type: message/rfc822\n\n", size) + b"Subject: inner\n\ntext\n"


def many_parts(size: int) -> bytes:
    return HEADERS + b"Content-Type: multipart/mixed; boundary=b\n\n" + _repeat(b"--b\n\nx\n", size) + b"--b--\n"


def many_attachments(size: int) -> bytes:
    unit = b'--b\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename="a.bin"\n\nAA==\n'
    return HEADERS + b"Content-Type: multipart/mixed; boundary=b\n\n" + _repeat(unit, size) + b"--b--\n"


def encoded_word_subject(size: int) -> bytes:
    return HEADERS + b"Subject: " + _repeat(b"=?utf-8?q?a?= ", size) + b"\n\nbody\n"


def plain_address_list(size: int) -> bytes:
    unit = b"someone.%06d@example.org, "
    count = max(1, size // len(unit % 0))
    return HEADERS + b"To: " + b"".join(unit % i for i in range(count)) + b"\n\nbody\n"


def quoted_address_list(size: int) -> bytes:
    unit = b'"Last, First %06d" <someone.%06d@example.org>, '
    count = max(1, size // len(unit % (0, 0)))
    return HEADERS + b"To: " + b"".join(unit % (i, i) for i in range(count)) + b"\n\nbody\n"


def junk_address_header(size: int) -> bytes:
    return HEADERS + b"To: " + _repeat(b'"<@;(', size) + b"\n\nbody\n"


def many_headers(size: int) -> bytes:
    return HEADERS + _repeat(b"Received: from x by y; not a date\n", size) + b"\nbody\n"


def references_list(size: int) -> bytes:
    unit = b"<ref.%06d@example.org> "
    count = max(1, size // len(unit % 0))
    return HEADERS + b"References: " + b"".join(unit % i for i in range(count)) + b"\n\nbody\n"


def folded_header(size: int) -> bytes:
    return HEADERS + b"Subject: start" + _repeat(b"\n word", size) + b"\n\nbody\n"


def quoted_printable_soft_breaks(size: int) -> bytes:
    headers = HEADERS + b"Content-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\n"
    return headers + _repeat(b"=\n", size)


def long_body_line(size: int) -> bytes:
    return HEADERS + b"Content-Type: text/plain\n\n" + _repeat(b"word ", size) + b"\n"


PATTERNS: dict[str, Callable[[int], bytes]] = {
    "html '<a '": _html_body(b"<a "),
    "html '<!--'": _html_body(b"<!--"),
    "html '</'": _html_body(b"</"),
    "html '<?'": _html_body(b"<?"),
    "html '<div>' nesting": _html_body(b"<div>"),
    "html '<b><i>' misnesting": _html_body(b"<b><i></b>"),
    "html '<table><a>'": _html_body(b"<table><a>"),
    "quoted ';' in Content-Type": quoted_semicolons_content_type,
    "quoted ';' in Disposition": quoted_semicolons_disposition,
    "deep boundary nesting": deep_boundary_nesting,
    "50 levels x short lines": nesting_times_lines,
    "50 levels x '--' lines": nesting_times_dash_lines,
    "cut, then blank lines": cut_then_blank_lines,
    "delivery-status blocks": delivery_status_blocks,
    "deep message/rfc822 nesting": deep_rfc822_nesting,
    "many parts": many_parts,
    "many attachments": many_attachments,
    "encoded-word subject": encoded_word_subject,
    "plain address list": plain_address_list,
    "quoted address list": quoted_address_list,
    "junk address header": junk_address_header,
    "many Received headers": many_headers,
    "References list": references_list,
    "folded header lines": folded_header,
    "quoted-printable soft breaks": quoted_printable_soft_breaks,
    "one long body line": long_body_line,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,400,1600", help="message sizes in KB (default 100,400,1600)")
    parser.add_argument("--only", default="", help="comma-separated substrings of pattern names")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the best is shown")
    args = parser.parse_args()
    sizes = [int(value) for value in args.sizes.split(",")]

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "crmext.settings")
    import django

    django.setup()
    from conversations.parsing import parse_message

    wanted = [name for name in PATTERNS if not args.only or any(s in name for s in args.only.split(","))]
    width = max(len(name) for name in wanted)
    header = f"{'pattern':<{width}}  " + "  ".join(f"{size:>6} KB" for size in sizes) + "  growth  what was cut"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name in wanted:
        timings: list[float] = []
        notes = ""
        for size in sizes:
            raw = PATTERNS[name](size * 1024)
            best = float("inf")
            for _ in range(max(1, args.repeat)):
                started = time.perf_counter()
                message = parse_message(raw)
                best = min(best, time.perf_counter() - started)
            timings.append(best)
            notes = "; ".join(warning[:60] for warning in message.warnings) or "-"
        growth = timings[-1] / timings[-2] if len(timings) > 1 and timings[-2] > 0 else float("nan")
        if len(sizes) > 1:
            worst = max(worst, timings[-2])
        cells = "  ".join(f"{seconds:>7.3f}s" for seconds in timings)
        print(f"{name:<{width}}  {cells}  {growth:>5.1f}x  {notes[:110]}")
    print()
    print(
        f"growth: time at {sizes[-1]} KB / time at {sizes[-2] if len(sizes) > 1 else sizes[-1]} KB "
        f"(x{sizes[-1] / (sizes[-2] if len(sizes) > 1 else sizes[-1]):.0f} input; about the same factor means linear)"
    )
    if len(sizes) > 1:
        print(f"slowest pattern at {sizes[-2]} KB: {worst:.3f}s (target < 1 s)")


if __name__ == "__main__":
    main()
