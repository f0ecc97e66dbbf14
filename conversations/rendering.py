"""Stored message HTML made safe to show (only ever through nh3) or read as plain text."""
from __future__ import annotations

import re
import time
from html import escape, unescape

import nh3

_SAFE_INLINE_SCHEMES = ("cid:", "data:image/")
# nh3's HTML5 tree builder is quadratic in some nestings ("<li><ul>" 20,000 times takes
# seconds, 300,000 times minutes): past this many tags a message is shown as its text, which
# is read in linear time. Real mail, newsletters included, stays far below it.
MAX_TAGS_TO_SANITIZE = 10_000


def sanitize_html(html: str, *, allow_remote_images: bool = False) -> str:
    """Sanitised HTML: no scripts, event handlers, styles or forms; remote images dropped by default.

    Remote images are tracking pixels as often as content, so they load only when a
    person asks for them. HTML with more than MAX_TAGS_TO_SANITIZE tags comes back as its
    escaped plain text, with a note: no request may be held by a crafted message.
    """
    if html.count("<") > MAX_TAGS_TO_SANITIZE:
        note = "<p><em>This message's HTML is too complex to display; showing its text.</em></p>"
        return f"{note}<pre style='white-space:pre-wrap'>{escape(html_to_text(html))}</pre>"

    def keep_attribute(tag: str, attribute: str, value: str) -> str | None:
        lowered = value.strip().lower()
        if tag == "img" and attribute == "src":
            if lowered.startswith(_SAFE_INLINE_SCHEMES):
                return value
            return value if allow_remote_images and lowered.startswith(("https:", "http:")) else None
        if attribute == "href" and lowered.startswith("data:"):
            return None
        return value

    return nh3.clean(
        html,
        url_schemes={"http", "https", "mailto", "tel", "cid", "data"},
        attribute_filter=keep_attribute,
        link_rel="noopener noreferrer nofollow",
    )


# ---------------------------------------------------------------------------- HTML to plain text

# One step of the tokenizer, from a "<": a tag ("<p ...>", "</p>"; group "end" is None when the
# tag never ends), a comment, or a bogus comment ("<!...", "<?...", "</" + no letter). Any other
# "<" is text, as in a browser. In a tag, quotes count only after "=" (an attribute value), as
# in the HTML tokenizer. The quantifiers are possessive: a tag that never ends fails in one
# pass over the rest of the text instead of backtracking, so a run of "<a " stays linear.
_MARKUP = re.compile(
    r"""<(?:(?P<slash>/?)(?P<name>[a-zA-Z][^\s/>]*+)(?:[^>="']++|=\s*+"[^"]*+"|=\s*+'[^']*+'|[="'])*+(?P<end>>)?"""
    r"""|(?P<comment>!--)|[!?/])"""
)
_TAG_REST = re.compile(r"""(?:[^>="']++|=\s*+"[^"]*+"|=\s*+'[^']*+'|[="'])*+>""")
_HTML_SPACE = re.compile(r"\s+")
_LINE_SPACE = re.compile(r"[ \t\r\f\v]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*(\n\s*)+")
_TAG_LIKE = re.compile(r"<[^<>]*>")

_BLOCK = frozenset("p div tr li h1 h2 h3 h4 h5 h6 blockquote pre table ul ol hr section article".split())
# Elements whose content is never shown; a browser reads script and style as raw text up to
# their end tag, and title, noscript (with scripting on) and the rest behave the same way.
_HIDDEN = frozenset(("script", "style", "title", "noscript", "template", "iframe", "noembed", "noframes"))
# What a <head> may hold: until something else comes, its text is not shown.
_HEAD_CONTENT = _HIDDEN | {"head", "meta", "link", "base", "basefont", "bgsound"}
_HIDDEN_END = {name: re.compile(rf"</{name}(?=[\s/>])", re.IGNORECASE) for name in _HIDDEN}


def html_to_text(html: str, *, deadline: float | None = None) -> str:
    """Readable plain text from HTML: block elements become line breaks, scripts vanish.

    As in a browser, line breaks in the HTML source are just spaces (except inside <pre>):
    only tags break lines. Entities are decoded and "&nbsp;" reads as a space.

    Linear in the length of the HTML whatever it holds: one pass, where every step
    (a run of text, a tag, a comment, a hidden element's content) consumes what it reads
    and an unfinished construct ends the document, as it does in a browser. The stdlib's
    HTMLParser rescans unfinished constructs (29 KB of "<a " took 10 s) and html5ever,
    behind nh3, is quadratic in element nesting.

    ``deadline`` (a ``time.monotonic()`` value) makes it raise TimeoutError once past it.
    """
    try:
        return _html_to_text(html, deadline)
    except TimeoutError:
        raise
    except Exception:  # never let a body break parsing
        return _LINE_SPACE.sub(" ", _TAG_LIKE.sub(" ", html)).strip()


def _html_to_text(html: str, deadline: float | None) -> str:
    parts: list[str] = []
    preformatted = 0
    in_head = False
    position, end = 0, len(html)
    steps = 0
    while position < end:
        steps += 1
        if deadline is not None and not steps % 4096 and time.monotonic() > deadline:
            raise TimeoutError("HTML to text ran past its deadline")
        markup = _MARKUP.search(html, position)
        stop = markup.start() if markup else end
        if stop > position:
            text = html[position:stop]
            if "&" in text:
                text = unescape(text)
            in_head = in_head and text.isspace()  # text ends the head, as in a browser
            if not in_head:
                # \s also matches the no-break space of "&nbsp;", which should read as a space.
                parts.append(text if preformatted else _HTML_SPACE.sub(" ", text))
        if markup is None:
            break
        if markup.group("comment"):
            position = _comment_end(html, markup.end())
            continue
        name = markup.group("name")
        if name is None:  # "<!...", "<?...", "</" + no letter: a bogus comment up to ">"
            close = html.find(">", markup.end())
            position = end if close < 0 else close + 1
            continue
        if markup.group("end") is None:  # a tag that never ends: the rest of the document is inside it
            break
        position = markup.end()
        name = name.lower()
        closing = bool(markup.group("slash"))
        if in_head and name not in _HEAD_CONTENT:
            in_head = False  # so does any element that has no place in a head (<body> among them)
        if name in _HIDDEN:
            if not closing:
                hidden_end = _HIDDEN_END[name].search(html, position)
                if hidden_end is None:
                    break
                after = _TAG_REST.match(html, hidden_end.end())
                position = end if after is None else after.end()
        elif name == "head":
            in_head = not closing
        elif name == "br":  # "<br>", "<br/>" and (as browsers read it) "</br>": one line break
            parts.append("\n")
        elif name in ("td", "th"):  # cells of a row: apart, on one line
            parts.append(" ")
        elif name in _BLOCK:
            parts.append("\n")
            if name == "pre":
                preformatted = max(0, preformatted - 1) if closing else preformatted + 1
    lines = (_LINE_SPACE.sub(" ", line).strip() for line in "".join(parts).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _comment_end(html: str, start: int) -> int:
    """Where a comment whose "<!--" ends at ``start`` ends; "<!-->" and "<!--->" are whole comments."""
    if html.startswith(">", start):
        return start + 1
    if html.startswith("->", start):
        return start + 2
    close = html.find("-->", start)
    return len(html) if close < 0 else close + 3
