"""shared.core.workitems: create bodies, description HTML, type names, ADO rule errors, markers, field values."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest

from shared.core.errors import AdoBadRequest, AdoNotFound, InvalidInput
from shared.core.models import Link
from shared.core.workitems import (
    MARKER_PREFIX,
    ado_failure,
    create_request,
    description_html,
    display_name,
    field_values,
    issue_url,
    issue_view,
    marker,
    type_names,
    with_marker,
)

BODY = {"group_id": "g1", "project": "Fabrikam", "work_item_type": "Bug", "title": "Crash in checkout"}


def _ops_by_path(ops: list[dict[str, Any]]) -> dict[str, Any]:
    assert all(op["op"] == "add" for op in ops)
    return {op["path"].removeprefix("/fields/"): op["value"] for op in ops}


# --- create_request -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "sent"),
    [
        pytest.param("Short", "Short", id="short"),
        pytest.param("x" * 128, "x" * 128, id="exactly-128-kept"),
        pytest.param("x" * 129, "x" * 125 + "...", id="129-cut-to-125-plus-dots"),
        pytest.param("y" * 4000, "y" * 125 + "...", id="longest-accepted-cut"),
        pytest.param("  padded  ", "padded", id="trimmed"),
        pytest.param(" " * 10 + "z" * 128 + " " * 10, "z" * 128, id="trimmed-before-cut"),
    ],
)
def test_title_is_cut_at_128(title: str, sent: str) -> None:
    request = create_request({**BODY, "title": title})
    assert request.title == sent
    assert _ops_by_path(request.ops)["System.Title"] == sent
    assert len(sent) <= 128


def test_minimal_body() -> None:
    request = create_request(BODY)
    assert (request.group_id, request.project, request.work_item_type) == ("g1", "Fabrikam", "Bug")
    assert request.description == ""
    assert _ops_by_path(request.ops) == {"System.Title": "Crash in checkout", "System.Description": "",
                                         "System.History": ""}


def test_full_body_in_order() -> None:
    request = create_request({**BODY, "description": "**boom**", "area_path": "Fabrikam\\Team A",
                              "iteration_path": "Fabrikam\\Sprint 7", "tags": ["sentry", "prod"],
                              "fields": {"Custom.Severity": "2 - High", "Microsoft.VSTS.Common.Priority": 1}})
    assert [op["path"] for op in request.ops] == [
        "/fields/System.Title", "/fields/System.Description", "/fields/System.History", "/fields/System.AreaPath",
        "/fields/System.IterationPath", "/fields/System.Tags", "/fields/Custom.Severity",
        "/fields/Microsoft.VSTS.Common.Priority"]
    values = _ops_by_path(request.ops)
    assert values["System.Description"] == values["System.History"] == "<p><strong>boom</strong></p>"
    assert request.description == "**boom**", "the answer keeps the markdown the caller sent"
    assert values["System.Tags"] == "sentry; prod"
    assert values["Microsoft.VSTS.Common.Priority"] == 1


@pytest.mark.parametrize(
    ("tags", "sent"),
    [
        pytest.param(["a"], "a", id="one"),
        pytest.param([" a ", "b"], "a; b", id="trimmed"),
        pytest.param(["a", "b", "a"], "a; b", id="duplicates-dropped-order-kept"),
        pytest.param([], None, id="empty-list-no-op"),
        pytest.param(None, None, id="null-no-op"),
    ],
)
def test_tags(tags: list[str] | None, sent: str | None) -> None:
    assert _ops_by_path(create_request({**BODY, "tags": tags}).ops).get("System.Tags") == sent


@pytest.mark.parametrize(
    ("fields", "value"),
    [
        pytest.param({"Custom.Severity": "2 - High"}, "2 - High", id="string"),
        pytest.param({"Custom.Severity": 3}, 3, id="int"),
        pytest.param({"Custom.Severity": 2.5}, 2.5, id="float"),
        pytest.param({"Custom.Severity": False}, False, id="bool"),
        pytest.param({"Custom.Severity": ""}, "", id="empty-string"),
    ],
)
def test_custom_field_values(fields: dict[str, Any], value: Any) -> None:
    assert _ops_by_path(create_request({**BODY, "fields": fields}).ops)["Custom.Severity"] == value


@pytest.mark.parametrize(
    ("change", "field", "status", "message"),
    [
        pytest.param({"group_id": None}, "group_id", 422, "is required", id="missing-group"),
        pytest.param({"group_id": "a/b"}, "group_id", 400, "not allowed", id="group-id-not-a-key"),
        pytest.param({"project": None}, "project", 422, "is required", id="missing-project"),
        pytest.param({"project": ".."}, "project", 400, "only of dots", id="project-dot-dot"),
        pytest.param({"project": "."}, "project", 400, "only of dots", id="project-dot"),
        pytest.param({"project": "a/b"}, "project", 400, "not allowed", id="project-with-slash"),
        pytest.param({"project": "p" * 257}, "project", 422, "at most 256", id="project-too-long"),
        pytest.param({"work_item_type": ""}, "work_item_type", 422, "not be empty", id="empty-type"),
        pytest.param({"work_item_type": ".."}, "work_item_type", 400, "only of dots", id="type-dot-dot"),
        pytest.param({"title": None}, "title", 422, "is required", id="missing-title"),
        pytest.param({"title": "   "}, "title", 422, "not be empty", id="blank-title"),
        pytest.param({"title": "t" * 4001}, "title", 422, "at most 4000", id="absurd-title"),
        pytest.param({"description": 5}, "description", 422, "must be a string", id="description-not-text"),
        pytest.param({"area_path": 5}, "area_path", 422, "must be a string", id="area-not-text"),
        pytest.param({"iteration_path": ""}, "iteration_path", 422, "not be empty", id="empty-iteration"),
        pytest.param({"tags": "a;b"}, "tags", 422, "must be a list", id="tags-not-a-list"),
        pytest.param({"tags": ["a;b"]}, "tags", 422, "';'", id="tag-with-separator"),
        pytest.param({"tags": [" "]}, "tags", 422, "non-empty", id="blank-tag"),
        pytest.param({"fields": ["Custom.X"]}, "fields", 422, "must be an object", id="fields-not-an-object"),
        pytest.param({"fields": {"Severity": "1"}}, "fields", 422, "reference name", id="not-a-reference-name"),
        pytest.param({"fields": {"Custom.Bad Name": "1"}}, "fields", 422, "reference name", id="space-in-name"),
        pytest.param({"fields": {"Custom.X": None}}, "fields", 422, "string, number or boolean", id="null-value"),
        pytest.param({"fields": {"Custom.X": {"a": 1}}}, "fields", 422, "string, number or boolean",
                     id="object-value"),
        pytest.param({"fields": {"Custom.X": "v" * 16_001}}, "fields", 422, "larger than 16000", id="value-too-long"),
        pytest.param({"fields": {f"Custom.F{n}": n for n in range(101)}}, "fields", 422, "at most 100",
                     id="too-many-fields"),
        *[pytest.param({"fields": {name: "x"}}, "fields", 422, f"with `{key}`", id=f"reserved-{name}")
          for name, key in [("System.Title", "title"), ("System.Description", "description"),
                            ("System.History", "description"), ("System.AreaPath", "area_path"),
                            ("System.IterationPath", "iteration_path"), ("System.Tags", "tags")]],
        pytest.param(
            {"fields": {"system.title": "x" * 300}}, "fields", 422, "with `title`", id="reserved-any-case",
        ),
    ],
)
def test_invalid_create_bodies_name_the_field(change: dict[str, Any], field: str, status: int, message: str) -> None:
    body = {k: v for k, v in {**BODY, **change}.items() if v is not None}
    try:
        create_request(body)
    except InvalidInput as error:
        assert (error.field, error.status) == (field, status)
        assert message in error.message
    else:
        raise AssertionError(f"{change} was accepted")


# --- description_html ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("**bold** and _it_", "<p><strong>bold</strong> and <em>it</em></p>", id="markdown"),
        pytest.param("> quoted", "<blockquote>\n<p>quoted</p>\n</blockquote>", id="blockquote"),
        pytest.param("<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>",
                     id="script-block-escaped"),
        pytest.param("a <b>x</b> & y", "<p>a &lt;b&gt;x&lt;/b&gt; &amp; y</p>", id="inline-html-escaped"),
        pytest.param('<a href="javascript:alert(1)">l</a>', '<p>&lt;a href="javascript:alert(1)"&gt;l&lt;/a&gt;</p>',
                     id="raw-anchor-escaped"),
        pytest.param('<img src=x onerror="alert(1)">', "<p>&lt;img src=x onerror=\"alert(1)\"&gt;</p>",
                     id="event-handler-escaped"),
        pytest.param("[l](https://x.example/a?b=1&c=2)", '<p><a href="https://x.example/a?b=1&amp;c=2">l</a></p>',
                     id="https-link-kept"),
        pytest.param("[l](mailto:a@x.example)", '<p><a href="mailto:a@x.example">l</a></p>', id="mailto-kept"),
        pytest.param("[l](/relative)", '<p><a href="/relative">l</a></p>', id="relative-kept"),
        pytest.param("", "", id="empty"),
    ],
)
def test_description_html(text: str, expected: str) -> None:
    assert description_html(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[l](javascript:alert(1))", id="javascript-link"),
        pytest.param("[l](JaVaScRiPt:alert(1))", id="javascript-mixed-case"),
        pytest.param("[l](  javascript:alert(1))", id="javascript-leading-space"),
        pytest.param("[l](vbscript:msgbox(1))", id="vbscript"),
        pytest.param("![i](data:text/html;base64,PHNjcmlwdD4=)", id="data-image"),
        pytest.param("[l][1]\n\n[1]: javascript:alert(1)", id="reference-link"),
        pytest.param("[l](<javascript:alert(1)>)", id="angle-bracket-target"),
        pytest.param(
            "[l](&#106;avascript:alert(1))", id="entity-encoded-scheme-letter",
        ),
        pytest.param(
            "[l](javascript&#58;alert(1))", id="entity-encoded-colon",
        ),
        pytest.param(
            "![i](&#100;ata:text/html,x)", id="entity-encoded-data-image",
        ),
    ],
)
def test_unsafe_link_targets_never_reach_the_html(text: str) -> None:
    rendered = description_html(text)
    targets = _Targets.of(rendered)
    assert targets, f"expected a link or image element in {rendered!r}"
    for target in targets:
        # What a browser would follow: entities decoded, ASCII tab/newline removed, outer spaces trimmed.
        followed = re.sub(r"[\t\n\r]", "", target).strip(_C0_AND_SPACE).lower()
        assert urlsplit(followed).scheme in ("", "http", "https", "mailto"), f"{target!r} in {rendered!r}"


_C0_AND_SPACE = "".join(map(chr, range(0x21)))


class _Targets(HTMLParser):
    """The href/src attribute values of an HTML fragment, entities decoded as a browser decodes them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found += [value or "" for name, value in attrs if name in ("href", "src")]

    @classmethod
    def of(cls, fragment: str) -> list[str]:
        parser = cls()
        parser.feed(fragment)
        parser.close()
        return parser.found


# --- type_names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("categories", "expected"),
    [
        pytest.param(
            [{"defaultWorkItemType": {"name": "Bug", "url": "https://x/_apis/wit/workItemTypes/Bug"},
              "workItemTypes": [{"name": "Product Backlog Item",
                                 "url": "https://x/_apis/wit/workItemTypes/Microsoft.VSTS.WorkItemTypes.PBI"}]}],
            {"bug": "Bug", "product backlog item": "Product Backlog Item",
             "microsoft.vsts.workitemtypes.pbi": "Product Backlog Item"},
            id="names-and-reference-names-lower-cased"),
        pytest.param([{"workItemTypes": [{"name": "User Story", "url": "https://x/workItemTypes/User%20Story/"}]}],
                     {"user story": "User Story"}, id="url-decoded-trailing-slash"),
        pytest.param([{"workItemTypes": [{"name": "Task"}]}], {"task": "Task"}, id="no-url"),
        pytest.param([{"defaultWorkItemType": None, "workItemTypes": None}, {}], {}, id="empty-categories"),
        pytest.param([{"workItemTypes": ["Bug", {"url": "https://x/Bug"}, {"name": ""}]}], {},
                     id="malformed-members-skipped"),
        pytest.param([{"workItemTypes": [{"name": "Feature", "url": "https://x/Epic"}, {"name": "Epic"}]}],
                     {"feature": "Feature", "epic": "Epic"}, id="a-name-wins-over-a-reference"),
    ],
)
def test_type_names(categories: list[dict[str, Any]], expected: dict[str, str]) -> None:
    assert type_names(categories) == expected


# --- ado_failure --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "field", "message"),
    [
        pytest.param(AdoBadRequest("TF401320: Rule Error for field Severity. Error code: Required, InvalidEmpty.",
                                   http_status=400), "Severity", "requires a valid value for field Severity",
                     id="rule-error-names-the-field"),
        pytest.param(AdoBadRequest("TF401320: Rule Error for field Story Points. Error code: Required."),
                     "Story Points", "TF401320", id="rule-error-field-with-space"),
        pytest.param(AdoBadRequest("TF401347: Invalid tree name given for work item -1, field 'System.AreaPath'."),
                     "area_path", "not a valid path", id="invalid-area-path"),
        pytest.param(AdoBadRequest("TF401347: Invalid tree name given for work item -1, "
                                   "field 'System.IterationPath'."), "iteration_path", "TF401347",
                     id="invalid-iteration-path"),
        pytest.param(AdoNotFound("VS402323: Work item type Bugg does not exist in project Fabrikam",
                                 http_status=404, type_key="WorkItemTypeNotFoundException"),
                     "work_item_type", "no such work item type", id="type-not-found-by-type-key"),
        pytest.param(AdoBadRequest("something", type_key="WorkItemTypeNotFoundException"), "work_item_type",
                     "no such work item type", id="type-key-alone"),
        pytest.param(AdoBadRequest("VS402323: Work item type X does not exist"), "work_item_type",
                     "no such work item type", id="type-not-found-by-code-in-text"),
        pytest.param(AdoNotFound("TF200016: The following project does not exist: Nope", http_status=404),
                     "project", "no such Azure DevOps project", id="other-404-is-the-project"),
        pytest.param(AdoBadRequest("TF401326: Invalid field status 'ReadOnly' for field 'System.Id'."), None,
                     "rejected the work item: TF401326", id="other-400-passed-through"),
    ],
)
def test_ado_failure(error: AdoBadRequest | AdoNotFound, field: str | None, message: str) -> None:
    result = ado_failure(error)
    assert result.status == 422
    assert result.field == field
    assert message in result.message
    if field:
        assert result.message.startswith(f"{field}: ")


# --- marker / with_marker -----------------------------------------------------------------------


def test_marker_is_stable_and_per_group() -> None:
    tag = marker("acc", "org", "g1")
    assert tag == marker("acc", "org", "g1")
    assert tag.startswith(MARKER_PREFIX) and len(tag) == len(MARKER_PREFIX) + 20
    assert ";" not in tag
    others = {marker("acc", "org", "g2"), marker("acc", "org2", "g1"), marker("acc2", "org", "g1")}
    assert tag not in others and len(others) == 3


TITLE = {"op": "add", "path": "/fields/System.Title", "value": "T"}
TAGS = {"op": "add", "path": "/fields/System.Tags", "value": "a; b"}


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        pytest.param([TITLE], [TITLE, {"op": "add", "path": "/fields/System.Tags", "value": "M"}],
                     id="no-tags-adds-a-tags-op"),
        pytest.param([TAGS, TITLE], [TITLE, {"op": "add", "path": "/fields/System.Tags", "value": "a; b; M"}],
                     id="existing-tags-extended"),
        pytest.param([], [{"op": "add", "path": "/fields/System.Tags", "value": "M"}], id="no-ops"),
    ],
)
def test_with_marker(ops: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    before = [dict(op) for op in ops]
    assert with_marker(ops, "M") == expected
    assert ops == before, "the caller's ops are not changed"


def test_create_request_with_marker_has_one_tags_op() -> None:
    ops = with_marker(create_request({**BODY, "tags": ["x"]}).ops, marker("acc", "org", "g1"))
    tags = [op for op in ops if op["path"] == "/fields/System.Tags"]
    assert len(tags) == 1 and tags[0]["value"] == f"x; {marker('acc', 'org', 'g1')}"


# --- field_values -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param({"System.State": "Active", "System.AssignedTo": "Jamie <Jamie@X.example>"},
                     ("Active", "jamie@x.example"), id="string-identity-lower-cased"),
        pytest.param({"System.State": "Done", "System.AssignedTo": {"uniqueName": "Jamie@X.example"}},
                     ("Done", "jamie@x.example"), id="identity-object"),
        pytest.param({"System.State": "New"}, ("New", ""), id="unassigned"),
        pytest.param({"System.AssignedTo": ""}, (None, ""), id="empty-assignee-no-state"),
        pytest.param({"System.AssignedTo": "Jamie"}, (None, ""), id="assignee-without-email"),
        pytest.param({"System.State": 5}, (None, ""), id="state-not-text"),
        pytest.param({}, (None, ""), id="nothing"),
    ],
)
def test_field_values(fields: dict[str, Any], expected: tuple[str | None, str]) -> None:
    assert field_values(fields) == expected


# --- answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "url"),
    [
        pytest.param("https://dev.azure.com/fabrikam/", "https://dev.azure.com/fabrikam/_workitems/edit/31",
                     id="trailing-slash"),
        pytest.param("https://fabrikam.visualstudio.com", "https://fabrikam.visualstudio.com/_workitems/edit/31",
                     id="no-trailing-slash"),
    ],
)
def test_issue_url(domain: str, url: str) -> None:
    assert issue_url(domain, "31") == url


def test_display_name_and_issue_view() -> None:
    assert display_name({"System.AreaPath": "Fabrikam\\Team A"}, "31") == "Fabrikam\\Team A#31"
    assert display_name({}, "31") == "#31"
    link = Link(org_id="o", group_id="g", account_id="a", key="31", url="https://u", title="T", description="D",
                display_name="Fabrikam#31")
    assert issue_view(link) == {"key": "31", "title": "T", "description": "D", "url": "https://u",
                                "metadata": {"display_name": "Fabrikam#31"}}
