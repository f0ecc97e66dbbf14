"""The new text of a message: quoted replies, forwarded history and signatures taken off
(mail-parser-reply), then split into sentences."""
from __future__ import annotations

import re

from mailparser_reply import EmailReplyParser

# The languages whose "On ... wrote:" headers and signature cues the parser knows and we read.
LANGUAGES = ["en", "de", "fr", "es"]
_PARSER = EmailReplyParser(languages=LANGUAGES)

# The parser reads a signature from its cue ("Thanks,", "Best,") to the end; a block that still
# asks something is text, not a signature.
_ASKS = re.compile(r"\?|\b(?:please|could you|can you|let me know|need you to|bitte|pourriez|puedes|podr[ií]as)\b",
                   re.IGNORECASE)
_QUOTED_LINE = re.compile(r"^[ \t]*>.*$", re.MULTILINE)
_SENTENCE = re.compile(r"(?<=[.!?;])\s+|\n\s*\n|\n(?=[-*•]\s)")
_BLANKS = re.compile(r"[ \t]+")


def new_text(body: str, *, email: bool = True) -> str:
    """What the sender wrote in this message: for e-mail, without quoted replies and signatures."""
    if not email or not body.strip():
        return body.strip()
    body = body.replace("\r\n", "\n")
    try:
        replies = _PARSER.read(body).replies
    except Exception:  # the parser is regex-based; a pathological body must not stop the engine
        replies = []
    if not replies:
        # Everything was quoted (a forward or a reply with no new text), or the parser gave up.
        return _QUOTED_LINE.sub("", body).strip() if not body.lstrip().startswith(">") else ""
    reply = replies[0]
    text = reply.body
    if reply.signatures and _ASKS.search(reply.signatures.split("\n\n")[0]):
        text = reply.full_body
    return _QUOTED_LINE.sub("", text).strip()


def sentences(text: str) -> list[str]:
    """The text cut into sentences (and list items), each on one line, blanks squeezed."""
    parts = []
    for part in _SENTENCE.split(text):
        part = _BLANKS.sub(" ", part.replace("\n", " ")).strip()
        if part:
            parts.append(part)
    return parts
