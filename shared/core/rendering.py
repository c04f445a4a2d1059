"""Safe markdown → HTML for what the bundle writes into Azure DevOps (descriptions, comments).

Pure: no I/O. Raw HTML in the source is escaped (shown as text), never passed through. Link and
image targets are kept only when their scheme is http, https, mailto or none (relative); any other
target (`javascript:`, `data:`, `vbscript:` ...) becomes an empty attribute. The scheme is read the
way a browser reads it: after decoding character references (`javascript&#58;`) and dropping
whitespace and control characters. Fenced code blocks (```) are enabled.
"""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit
from xml.etree.ElementTree import Element

import markdown
from markdown.treeprocessors import Treeprocessor

SAFE_SCHEMES = ("http", "https", "mailto", "")
# Browsers ignore these anywhere in a URL's scheme (tab, newline) or around it (C0 controls, space).
_IGNORED_IN_URL = re.compile(r"[\x00-\x20\x7f-\x9f]+")


def safe_url(target: str) -> bool:
    """True when `target` is http(s), mailto or relative, as a browser would read the attribute."""
    decoded = _IGNORED_IN_URL.sub("", html.unescape(target))
    try:
        scheme = urlsplit(decoded).scheme
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        return False
    return scheme.lower() in SAFE_SCHEMES


class _SafeLinks(Treeprocessor):
    """Empty link and image targets whose scheme is not http(s), mailto or relative."""

    def run(self, root: Element) -> None:
        for element in root.iter():
            for attribute in ("href", "src"):
                target = element.get(attribute)
                if target is not None and not safe_url(target):
                    element.set(attribute, "")


def markdown_html(text: str) -> str:
    """Markdown → HTML; raw HTML in the source is escaped (shown as text), never passed through."""
    renderer = markdown.Markdown(extensions=["fenced_code"])
    renderer.preprocessors.deregister("html_block")
    renderer.inlinePatterns.deregister("html")
    renderer.treeprocessors.register(_SafeLinks(renderer), "safe_links", 0)
    return renderer.convert(text)
