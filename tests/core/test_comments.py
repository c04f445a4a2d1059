"""Comment sync building blocks: the HTML posted to ADO, the markdown the tracker gets, the hook payload."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import load_fixture

from shared.core.comments import (
    MAX_COMMENT_HTML,
    CommentAuthor,
    CommentDelivery,
    comment_mark,
    inbound_markdown,
    outbound_html,
    parse_commented,
)
from shared.core.errors import InvalidInput

COLLECTION = "80ded3e8-3cd3-43b1-9f96-52032624aa3a"
PROJECT = "c0bf429a-c03c-4a99-9336-d45be74db5a6"
ATTACHMENT = (
    "https://laurynsentry.visualstudio.com/c0bf429a-c03c-4a99-9336-d45be74db5a6/_apis/wit/attachments/"
    "6e1f4b2a-93c7-4d08-b5a1-0f2e7d9c8a34?fileName=image.png"
)

# --- outbound_html -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("author", "body", "expected"),
    [
        ("Ann", "Hello **world**", "<p><em>Ann wrote:</em></p>\n<p>Hello <strong>world</strong></p>"),
        ("<Ann & Bob>", "hi", "<p><em>&lt;Ann &amp; Bob&gt; wrote:</em></p>\n<p>hi</p>"),
        ("  Ann\n\tLee ", "hi", "<p><em>Ann Lee wrote:</em></p>\n<p>hi</p>"),
        ("", "hi", "<p>hi</p>"),
        ("   ", "  hi  \n", "<p>hi</p>"),
        (
            "Ann",
            "<script>alert(1)</script>\n\n[x](javascript:alert(2))",
            '<p><em>Ann wrote:</em></p>\n<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>\n<p><a href="">x</a></p>',
        ),
        (
            "Ann",
            "Steps:\n\n1. open\n2. crash\n\n```\ntrace <here>\n```",
            "<p><em>Ann wrote:</em></p>\n<p>Steps:</p>\n<ol>\n<li>open</li>\n<li>crash</li>\n</ol>\n"
            "<pre><code>trace &lt;here&gt;\n</code></pre>",
        ),
        ("A" * 150, "hi", f"<p><em>{'A' * 99}… wrote:</em></p>\n<p>hi</p>"),
    ],
)
def test_outbound_html(author: str, body: str, expected: str) -> None:
    assert outbound_html(author, body) == expected


def test_outbound_long_body_is_cut_and_marked() -> None:
    html = outbound_html("Ann", "word " * 30_000)

    assert html.startswith("<p><em>Ann wrote:</em></p>\n<p>word word")
    assert html.endswith("<p><em>(comment truncated)</em></p>")
    assert len(html) < 110_000


def test_outbound_pathological_expansion_still_fits_ados_limit() -> None:
    # each auto-mail link renders ~14x larger (entity-obfuscated href and text)
    html = outbound_html("Ann", "<a@b.c> " * 14_000)

    assert len(html) <= MAX_COMMENT_HTML
    assert html.endswith("<p><em>(comment truncated)</em></p>")


@pytest.mark.parametrize(
    ("author", "body", "field"),
    [
        ("Ann", "", "body"),
        ("Ann", " \n\t ", "body"),
        ("Ann", None, "body"),
        (None, "hi", "author_name"),
    ],
)
def test_outbound_rejects(author: Any, body: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as error:
        outbound_html(author, body)
    assert error.value.field == field


# --- inbound_markdown ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<div>Looks good</div>", "Looks good"),
        ("plain text", "plain text"),
        (
            '<div><a href="#" data-vss-mention="version:2.0,21354f98-ab06-67d9-b974-5a54d992082e">@Ann Lee</a>'
            "&nbsp;please check</div>",
            "@Ann Lee please check",
        ),
        ('<a href="#" data-vss-mention="version:2.0,abc">Ann</a> hi', "@Ann hi"),
        ("<p>before</p><script>alert(1)</script><style>p { color: red }</style><p>after</p>", "before\n\nafter"),
        (
            '<div><img src="https://example.com/a.png" alt="Screenshot"></div>',
            "[Screenshot](https://example.com/a.png)",
        ),
        ('<img src="https://example.com/a b.png">', "[image](https://example.com/a%20b.png)"),
        ('<img src="data:image/png;base64,AAAA" alt="pasted">', "pasted"),
        ('<a href="javascript:alert(1)">click</a> me', "click me"),
        ('<a href="https://example.com/x">docs</a>', "[docs](https://example.com/x)"),
        ('<a href="https://example.com">https://example.com</a>', "<https://example.com>"),
        ('<a href="https://example.com/a (b)">b</a>', "[b](https://example.com/a%20%28b%29)"),
        ("<div>Hello<br>world</div><div><br></div><div><br></div><div>Next</div>", "Hello\\\nworld\n\nNext"),
        ("<div>  lots   of    space  </div>\r\n\r\n\r\n<div>x</div>", "lots of space\n\nx"),
        ("<b>bold</b> and <i>italic</i>", "**bold** and *italic*"),
        ("<ul><li>one</li><li>two</li></ul>", "- one\n- two"),
        ("<ol><li>first</li><li>second</li></ol>", "1. first\n2. second"),
        ("<h2>Title</h2><p>snake_case *star*</p>", "## Title\n\nsnake\\_case \\*star\\*"),
        ("<pre><code>line 1\n\n\n\nline 2</code></pre>", "```\nline 1\n\n\n\nline 2\n```"),
        ("<blockquote>quoted</blockquote>", "> quoted"),
    ],
)
def test_inbound_markdown(html: str, expected: str) -> None:
    assert inbound_markdown(html) == expected


def test_inbound_absurd_nesting_keeps_the_words() -> None:
    html = "<div>" * 20_000 + "deep <b>text</b>" + "</div>" * 20_000

    assert inbound_markdown(html) == "deep text"


def test_inbound_long_comment_is_cut_and_marked() -> None:
    markdown = inbound_markdown("<p>" + "word " * 30_000 + "</p>")

    assert markdown.startswith("word word")
    assert markdown.endswith("\n\n*(comment truncated)*")
    assert len(markdown) < 100_100


def test_inbound_rejects_more_than_ados_limit() -> None:
    with pytest.raises(InvalidInput):
        inbound_markdown("x" * (MAX_COMMENT_HTML + 1))


# --- comment_mark --------------------------------------------------------------------------------


def test_comment_mark_ignores_markup_and_whitespace() -> None:
    marks = {
        comment_mark("<div>Looks <b>good</b>&nbsp;to me</div>"),
        comment_mark("<p>Looks good to me</p>"),
        comment_mark("Looks   good\nto me"),
        comment_mark('<div class="x">Looks good to&#32;me</div><script>ignored()</script>'),
    }
    assert len(marks) == 1
    mark = marks.pop()
    assert len(mark) == 64 and int(mark, 16) >= 0


def test_comment_mark_differs_for_different_text() -> None:
    assert comment_mark("<p>Looks good</p>") != comment_mark("<p>Looks bad</p>")


def test_comment_mark_of_posted_html_survives_ados_sanitising() -> None:
    posted = outbound_html("Ann", "Fixed in **9.1**, see [notes](https://example.com/n)")
    stored = (
        '<p><em>Ann wrote:</em></p><p>Fixed in <strong>9.1</strong>, see '
        '<a href="https://example.com/n" rel="noopener noreferrer" target="_blank">notes</a></p>'
    )
    assert comment_mark(posted) == comment_mark(stored)


# --- parse_commented -----------------------------------------------------------------------------


def test_parse_fixture() -> None:
    delivery = parse_commented(load_fixture("workitem-commented.json"))

    assert delivery == CommentDelivery(
        event_id="b6f1e0a2-7c3d-4e85-9a41-2f0d8c6b3a17",
        collection_id=COLLECTION,
        project_id=PROJECT,
        work_item_id=31,
        rev=3,
        text_html='<div>The import was removed in <b>9.0</b>; see the <a href="https://docs.sentry.io/changelog/">'
        "release notes</a>.<br>I will restore it.</div>",
        author=CommentAuthor(display_name="lauryn", unique_name="lauryn@sentry.io", id=None),
        comment_id=5120431,
        comment_version=1,
        commented_at=datetime(2018, 7, 5, 21, 3, 41, 263000, tzinfo=UTC),
    )
    assert inbound_markdown(delivery.text_html) == (
        "The import was removed in **9.0**; see the [release notes](https://docs.sentry.io/changelog/).\\\n"
        "I will restore it."
    )


def test_parse_fixture_with_a_mention_and_an_image() -> None:
    delivery = parse_commented(load_fixture("workitem-commented-mention.json"))

    assert (delivery.work_item_id, delivery.rev, delivery.comment_id) == (31, 4, 5120577)
    assert delivery.author == CommentAuthor(display_name="lauryn2", unique_name="lauryn2@sentry.io", id=None)
    assert inbound_markdown(delivery.text_html) == (
        f"@lauryn can you check the stack trace below?\n\n[Image]({ATTACHMENT})"
    )


DELETE = object()


def _with(changes: dict[str, Any]) -> dict[str, Any]:
    """The fixture with `changes` applied; a key is a path, `/`-separated (field names contain dots)."""
    payload = copy.deepcopy(load_fixture("workitem-commented.json"))
    for path, value in changes.items():
        *parents, last = path.split("/")
        target = payload
        for key in parents:
            target = target[key]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return payload


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"resource/commentVersionRef": DELETE}, {"comment_id": None, "comment_version": None}),
        (
            {"resource/commentVersionRef": {"commentId": "x", "version": True}},
            {"comment_id": None, "comment_version": None},
        ),
        ({"resource/commentVersionRef/version": 2}, {"comment_id": 5120431, "comment_version": 2}),
        ({"resource/workItemId": 77}, {"work_item_id": 77}),
        ({"resource/id": "31"}, {"work_item_id": 31}),
        ({"id": DELETE}, {"event_id": None}),
        ({"resourceVersion": DELETE}, {"rev": 3}),
        (
            {"resource/fields/System.ChangedBy": "Jamal Hartnett <FABRIKAM\\jamal>"},
            {"author": CommentAuthor("Jamal Hartnett", "FABRIKAM\\jamal", None)},
        ),
        (
            {"resource/fields/System.ChangedBy": "Jamal Hartnett"},
            {"author": CommentAuthor("Jamal Hartnett", None, None)},
        ),
        (
            {"resource/fields/System.ChangedBy": {"displayName": "Ann", "uniqueName": "ann@x.io", "id": "a1"}},
            {"author": CommentAuthor("Ann", "ann@x.io", "a1")},
        ),
        ({"resource/fields/System.ChangedBy": DELETE}, {"author": None}),
        ({"resource/fields/System.History": {"newValue": "<div>hi</div>"}}, {"text_html": "<div>hi</div>"}),
        (
            {"resource/fields/System.ChangedDate": DELETE},
            {"commented_at": datetime(2018, 7, 5, 21, 3, 44, 173921, tzinfo=UTC)},
        ),
        (
            {"resource/fields/System.ChangedDate": "2018-07-05T23:03:41+02:00"},
            {"commented_at": datetime(2018, 7, 5, 21, 3, 41, tzinfo=UTC)},
        ),
        (
            {"resource/fields/System.ChangedDate": "2018-07-05T21:03:41"},
            {"commented_at": datetime(2018, 7, 5, 21, 3, 41, tzinfo=UTC)},
        ),
    ],
)
def test_parse_is_tolerant_where_ado_varies(changes: dict[str, Any], expected: dict[str, Any]) -> None:
    delivery = parse_commented(_with(changes))

    assert {name: getattr(delivery, name) for name in expected} == expected


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"eventType": "workitem.updated"}, "eventType"),
        ({"eventType": DELETE}, "eventType"),
        ({"resourceVersion": "2.0"}, "resourceVersion"),
        ({"resourceContainers/collection": DELETE}, "resourceContainers.collection.id"),
        ({"resourceContainers/collection/id": ""}, "resourceContainers.collection.id"),
        ({"resourceContainers/collection/id": "a/b"}, "resourceContainers.collection.id"),
        ({"resourceContainers/project": DELETE}, "resourceContainers.project.id"),
        ({"resourceContainers/project/id": 7}, "resourceContainers.project.id"),
        ({"resource": DELETE}, "resource"),
        ({"resource": []}, "resource"),
        ({"resource/fields": DELETE}, "resource.fields"),
        ({"resource/id": DELETE}, "resource.id"),
        ({"resource/id": 0}, "resource.id"),
        ({"resource/id": True}, "resource.id"),
        ({"resource/id": "31a"}, "resource.id"),
        ({"resource/id": 2**31}, "resource.id"),
        ({"resource/rev": DELETE}, "resource.rev"),
        ({"resource/rev": -1}, "resource.rev"),
        ({"resource/fields/System.History": DELETE}, "System.History"),
        ({"resource/fields/System.History": "  "}, "System.History"),
        ({"resource/fields/System.History": 42}, "System.History"),
        ({"resource/fields/System.History": "x" * (MAX_COMMENT_HTML + 1)}, "System.History"),
        ({"resource/fields/System.ChangedDate": DELETE, "createdDate": DELETE}, "System.ChangedDate"),
        ({"resource/fields/System.ChangedDate": "yesterday", "createdDate": "soon"}, "System.ChangedDate"),
    ],
)
def test_parse_rejects_malformed_payloads(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as error:
        parse_commented(_with(changes))
    assert error.value.field == field
    assert error.value.status == 400


@pytest.mark.parametrize("payload", [None, [], "workitem.commented"])
def test_parse_rejects_a_payload_that_is_not_an_object(payload: Any) -> None:
    with pytest.raises(InvalidInput):
        parse_commented(payload)
