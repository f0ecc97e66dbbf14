"""Safe rendering of stored message HTML: only ever through nh3."""
from __future__ import annotations

import nh3

_SAFE_INLINE_SCHEMES = ("cid:", "data:image/")


def sanitize_html(html: str, *, allow_remote_images: bool = False) -> str:
    """Sanitised HTML: no scripts, event handlers, styles or forms; remote images dropped by default.

    Remote images are tracking pixels as often as content, so they load only when a
    person asks for them.
    """

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
