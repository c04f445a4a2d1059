"""Comment sync building blocks: tracker markdown → ADO HTML, ADO HTML → tracker markdown, and the
`workitem.commented` service-hook payload.

Pure: no I/O. Design notes and sources: docs/comments.md.
- `outbound_html`: what the bundle posts with the Work Item Comments API.
- `inbound_markdown`: an ADO comment (HTML) as tracker markdown.
- `parse_commented`: validates a `workitem.commented` delivery (resourceVersion 1.0).
- `comment_mark`: a digest of a comment's visible text, for dedupe when no comment id is known.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

from bs4 import Tag
from markdownify import ATX, BACKSLASH, MarkdownConverter

from shared.core.errors import InvalidInput
from shared.core.rendering import markdown_html, safe_url
from shared.core.validate import is_number

WORKITEM_COMMENTED = "workitem.commented"
# ADO stores a comment like a long-text field: at most 1M characters ("Work tracking, process, and
# project limits"). Tracker bodies are cut well below that, and cut further in the rare case their
# rendering still expands past it.
MAX_COMMENT_HTML = 1_000_000
MAX_BODY_MARKDOWN = 100_000
MAX_AUTHOR_NAME = 100
# What the bundle hands the tracker; the tracker's own limit is not known here (see docs/comments.md).
MAX_INBOUND_MARKDOWN = 100_000
TRUNCATED = "*(comment truncated)*"
MAX_ID = 128

_SPACES = re.compile(r"[\s\x00-\x1f\x7f-\x9f]+")
_NAME_AND_UNIQUE = re.compile(r"^(.*?)\s*<([^<>]*)>\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_BAD_ID = re.compile(r"[/\\#?|\x00-\x1f\x7f-\x9f]")
_DROPPED_TAGS = ("script", "style", "noscript", "template", "iframe", "object", "embed", "head")


# --- outbound: tracker → ADO ---------------------------------------------------------------------


def outbound_html(author_name: str, body_markdown: str) -> str:
    """The comment HTML posted to ADO: `<p><em>Ann wrote:</em></p>` then the rendered body.

    The author is escaped and cut to 100 characters; a blank author leaves the attribution out (as
    Sentry does when the user is unknown). A body over 100,000 characters is cut and marked
    "(comment truncated)", so the result stays under ADO's 1M-character limit. A blank body is
    InvalidInput: there is nothing to post.
    """
    if not isinstance(author_name, str):
        raise InvalidInput("author_name must be a string", field="author_name")
    if not isinstance(body_markdown, str):
        raise InvalidInput("body must be a string", field="body")
    body = body_markdown.strip()
    if not body:
        raise InvalidInput("body must not be empty", field="body")
    name = _SPACES.sub(" ", author_name).strip()
    if len(name) > MAX_AUTHOR_NAME:
        name = name[: MAX_AUTHOR_NAME - 1] + "…"
    head = f"<p><em>{html.escape(name)} wrote:</em></p>\n" if name else ""
    limit = MAX_BODY_MARKDOWN
    while True:
        text = body if len(body) <= limit else body[:limit].rstrip() + "\n\n" + TRUNCATED
        result = head + markdown_html(text)
        if len(result) <= MAX_COMMENT_HTML:
            return result
        limit //= 2  # pathological expansion (e.g. thousands of autolinks): halve until it fits


# --- inbound: ADO → tracker ----------------------------------------------------------------------


class _Converter(MarkdownConverter):
    """markdownify with ADO's mentions as plain `@Name`, images as links and unsafe targets dropped."""

    def convert_a(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        if el.get("data-vss-mention") is not None:
            name = text.strip()
            return name if name.startswith("@") or not name else "@" + name
        href = el.get("href")
        if "_noformat" in parent_tags or not isinstance(href, str) or not safe_url(href):
            return text
        href = href.strip()
        label = text.strip()
        prefix, suffix = (" " if text[:1].isspace() else ""), (" " if text[-1:].isspace() else "")
        if not label or not href or href.startswith("#"):
            return text
        if label.replace(r"\_", "_") == href and " " not in href:
            return f"{prefix}<{href}>{suffix}"
        return f"{prefix}[{label}]({_link_target(href)}){suffix}"

    def convert_img(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        src = el.get("src")
        alt = el.get("alt")
        label = _SPACES.sub(" ", alt).strip() if isinstance(alt, str) else ""
        label = label.replace("[", "(").replace("]", ")") or "image"
        if not isinstance(src, str) or not src.strip() or not safe_url(src):
            return label
        return f"[{label}]({_link_target(src.strip())})"

    def escape(self, text: str, parent_tags: set[str]) -> str:
        """Text as markdown text: besides `*` and `_`, a `<` is escaped, so text that reads like HTML
        (`&lt;script&gt;` in ADO's HTML) stays text in a renderer that passes raw HTML through."""
        escaped = str(MarkdownConverter.escape(self, text, parent_tags))  # type: ignore[attr-defined]
        return escaped if "_noformat" in parent_tags else escaped.replace("<", "\\<")

    def _drop(self, el: Tag, text: str, parent_tags: set[str]) -> str:
        return ""

    convert_script = convert_style = convert_noscript = convert_template = _drop
    convert_iframe = convert_object = convert_embed = convert_head = _drop


def _link_target(url: str) -> str:
    """A URL safe inside markdown's `(...)`: spaces, parentheses and angle brackets percent-encoded."""
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("<", "%3C").replace(">", "%3E")


def inbound_markdown(text_html: str) -> str:
    """An ADO comment (HTML) as markdown for the tracker.

    Mentions (`<a data-vss-mention=...>@Ann</a>`) become `@Ann`; `<script>`/`<style>` go with their
    content; images become links; `javascript:` and other unsafe targets keep only their text;
    blank-line runs collapse to one and the result is trimmed. Over 100,000 characters it is cut and
    marked "(comment truncated)". Input over 1M characters is InvalidInput.
    """
    if not isinstance(text_html, str):
        raise InvalidInput("comment text must be a string", field="System.History")
    if len(text_html) > MAX_COMMENT_HTML:
        raise InvalidInput("comment text is longer than 1,000,000 characters", field="System.History")
    converter = _Converter(heading_style=ATX, bullets="-", newline_style=BACKSLASH)
    try:
        converted = str(converter.convert(text_html))
    except RecursionError:  # absurdly deep nesting: keep the words, drop the structure
        converted = _visible_text(text_html)
    result = _normalise(converted)
    if len(result) > MAX_INBOUND_MARKDOWN:
        result = result[:MAX_INBOUND_MARKDOWN].rstrip() + "\n\n" + TRUNCATED
    return result


def _normalise(text: str) -> str:
    """Unify newlines and no-break spaces, trim line ends, drop hard breaks that end a paragraph
    (ADO's empty `<div><br></div>` lines), collapse blank runs; code fences are left alone."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ").replace("\u200b", "")
    lines = [line.rstrip() for line in text.split("\n")]
    out: list[str] = []
    in_fence = False
    for index, line in enumerate(lines):
        if _FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence:
            following = lines[index + 1] if index + 1 < len(lines) else ""
            if line == "\\" or (line.endswith("\\") and following in ("", "\\")):
                line = line[:-1].rstrip()
            if not line and (not out or not out[-1]):
                continue
        out.append(line)
    return "\n".join(out).strip()


class _TextExtractor(HTMLParser):
    """The visible text of an HTML fragment (script/style content skipped); iterative, so any depth."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROPPED_TAGS:
            self._skipping += 1
        elif tag in ("br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROPPED_TAGS and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _visible_text(text_html: str) -> str:
    extractor = _TextExtractor()
    extractor.feed(text_html)
    extractor.close()
    return "".join(extractor.parts)


def comment_mark(text_html: str) -> str:
    """A stable digest (64 hex characters) of a comment's visible text.

    Markup, attributes, character references and whitespace do not change it, so the HTML the bundle
    posted and the HTML ADO stores (after its own sanitising) give the same mark. Use it to drop a
    comment delivered twice when the payload has no comment id; never to decide who wrote it.
    """
    words = unicodedata.normalize("NFC", _visible_text(text_html)).split()
    return hashlib.sha256(" ".join(words).encode("utf-8")).hexdigest()


# --- the workitem.commented service hook ---------------------------------------------------------


@dataclass(frozen=True)
class CommentAuthor:
    """Who commented, from `System.ChangedBy` ("Name <unique>" in resourceVersion 1.0).

    `unique_name` is the e-mail on Azure DevOps Services and `DOMAIN\\user` on Azure DevOps Server;
    `id` is the identity GUID, only present when ADO sent an identity object.
    """

    display_name: str
    unique_name: str | None
    id: str | None


@dataclass(frozen=True)
class CommentDelivery:
    """The parts of a `workitem.commented` delivery the comment sync uses."""

    event_id: str | None  # the event GUID (top-level `id`); retries of one notification share it
    collection_id: str
    project_id: str
    work_item_id: int
    rev: int  # the work item revision the comment created
    text_html: str  # `System.History`: the comment as ADO stores it (HTML)
    author: CommentAuthor | None
    comment_id: int | None  # `resource.commentVersionRef.commentId`, when present
    comment_version: int | None  # 1 for a new comment; higher would be an edit
    commented_at: datetime  # `System.ChangedDate`, else the event's `createdDate` (UTC)


def parse_commented(payload: dict[str, Any]) -> CommentDelivery:
    """Validate a `workitem.commented` delivery; InvalidInput (naming the field) when malformed."""
    if not isinstance(payload, dict):
        raise InvalidInput("Payload must be a JSON object")
    if payload.get("eventType") != WORKITEM_COMMENTED:
        raise InvalidInput(f"eventType must be {WORKITEM_COMMENTED}", field="eventType")
    version = payload.get("resourceVersion")
    if version is not None and (not isinstance(version, str) or not version.startswith("1.0")):
        raise InvalidInput("resourceVersion must be 1.0", field="resourceVersion")
    collection_id = _id(_get(payload, "resourceContainers", "collection", "id"), "resourceContainers.collection.id")
    project_id = _id(_get(payload, "resourceContainers", "project", "id"), "resourceContainers.project.id")
    resource = payload.get("resource")
    if not isinstance(resource, dict):
        raise InvalidInput("Payload has no resource", field="resource")
    fields = resource.get("fields")
    if not isinstance(fields, dict):
        raise InvalidInput("Payload has no resource.fields", field="resource.fields")
    work_item_id = _int(resource.get("workItemId", resource.get("id")), "resource.id", minimum=1)
    rev = _int(resource.get("rev"), "resource.rev", minimum=1)
    text = _flat(fields.get("System.History"))
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("Payload has no comment text (System.History)", field="System.History")
    if len(text) > MAX_COMMENT_HTML:
        raise InvalidInput("comment text is longer than 1,000,000 characters", field="System.History")
    ref = resource.get("commentVersionRef")
    ref = ref if isinstance(ref, dict) else {}
    event_id = payload.get("id")
    return CommentDelivery(
        event_id=event_id if isinstance(event_id, str) and event_id else None,
        collection_id=collection_id,
        project_id=project_id,
        work_item_id=work_item_id,
        rev=rev,
        text_html=text,
        author=_author(_flat(fields.get("System.ChangedBy"))),
        comment_id=_optional_int(ref.get("commentId")),
        comment_version=_optional_int(ref.get("version")),
        commented_at=_when(_flat(fields.get("System.ChangedDate")), payload.get("createdDate")),
    )


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _flat(value: Any) -> Any:
    """A field value; tolerates the `{newValue: ...}` shape of update payloads."""
    return value.get("newValue") if isinstance(value, dict) and "newValue" in value else value


def _id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID or _BAD_ID.search(value):
        raise InvalidInput(f"Payload has no usable {field}", field=field)
    return value


def _int(value: Any, field: str, *, minimum: int) -> int:
    if isinstance(value, str) and is_number(value) and len(value) < 11:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value < 2**31:
        raise InvalidInput(f"Payload has no usable {field}", field=field)
    return value


def _optional_int(value: Any) -> int | None:
    try:
        return _int(value, "value", minimum=1)
    except InvalidInput:
        return None


def _author(value: Any) -> CommentAuthor | None:
    if isinstance(value, dict):
        name, unique, ident = value.get("displayName"), value.get("uniqueName"), value.get("id")
        if not isinstance(name, str) or not name.strip():
            return None
        return CommentAuthor(
            display_name=name.strip(),
            unique_name=unique.strip() if isinstance(unique, str) and unique.strip() else None,
            id=ident if isinstance(ident, str) and ident else None,
        )
    if not isinstance(value, str) or not value.strip():
        return None
    match = _NAME_AND_UNIQUE.match(value)
    if match:
        name, unique = match.group(1).strip(), match.group(2).strip()
        return CommentAuthor(display_name=name or unique, unique_name=unique or None, id=None)
    return CommentAuthor(display_name=value.strip(), unique_name=None, id=None)


def _when(changed: Any, created: Any) -> datetime:
    for value in (changed, created):
        if isinstance(value, str):
            try:
                moment = datetime.fromisoformat(value)
            except ValueError:
                continue
            return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    raise InvalidInput("Payload has no usable System.ChangedDate or createdDate", field="System.ChangedDate")
