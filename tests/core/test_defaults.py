"""shared.core.defaults: project_issue_defaults validation, and filling a create body from defaults."""

from __future__ import annotations

from typing import Any

import pytest

from shared.core import defaults
from shared.core import workitems as wi
from shared.core.errors import InvalidInput
from shared.core.orgconfig import parse_config

P1 = "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c"
P2 = "0d1c7ff8-3e0b-4a4c-9c8e-1b0c0d0a0b0c"
CONFIGURED = {"project": P1, "work_item_type": "Bug", "area_path": "Web\\Team A", "iteration_path": "Web\\Sprint 7",
              "tags": ["sentry"], "fields": {"Microsoft.VSTS.Common.Priority": 1, "Custom.Team": "web"}}


def remembered(project: str, wtype: str, configured: dict[str, Any] | None = CONFIGURED) -> dict[str, Any]:
    return {"project": project, "work_item_type": wtype, "basis": defaults.basis(configured)}


@pytest.mark.parametrize(
    ("body", "configured", "last", "expected"),
    [
        pytest.param({"title": "t"}, None, None, {"title": "t"}, id="nothing-to-fill"),
        pytest.param({"title": "t"}, CONFIGURED, None, {"title": "t", **CONFIGURED}, id="all-from-config"),
        pytest.param({"title": "t", "work_item_type": "Task", "tags": [], "fields": {"custom.team": "api"}},
                     CONFIGURED, None,
                     {"title": "t", **CONFIGURED, "work_item_type": "Task", "tags": [],
                      "fields": {"Microsoft.VSTS.Common.Priority": 1, "custom.team": "api"}},
                     id="body-wins-field-names-any-case"),
        pytest.param({"title": "t", "project": P2}, CONFIGURED, None, {"title": "t", "project": P2},
                     id="other-project-takes-nothing-else"),
        pytest.param({"title": "t", "project": P1.upper()}, CONFIGURED, None,
                     {"title": "t", **CONFIGURED, "project": P1.upper()}, id="same-project-any-case"),
        pytest.param({"title": "t"}, CONFIGURED, remembered(P1, "Task"),
                     {"title": "t", **CONFIGURED, "work_item_type": "Task"}, id="last-choice-wins-over-config"),
        pytest.param({"title": "t"}, CONFIGURED, remembered(P2, "Issue"),
                     {"title": "t", "project": P2, "work_item_type": "Issue"},
                     id="last-project-carries-only-its-own-choice"),
        pytest.param({"title": "t"}, CONFIGURED, remembered(P1, "Task", {"project": P1}),
                     {"title": "t", **CONFIGURED}, id="last-choice-under-an-older-config-is-ignored"),
        pytest.param({"title": "t"}, None, remembered(P2, "Issue", None),
                     {"title": "t", "project": P2, "work_item_type": "Issue"}, id="last-choice-without-config"),
        pytest.param({"title": "t", "work_item_type": "Epic"}, None, remembered(P2, "Issue", None),
                     {"title": "t", "project": P2, "work_item_type": "Epic"}, id="body-wins-over-last-choice"),
        pytest.param({"title": "t"}, {"work_item_type": "Bug", "tags": ["x"]}, None,
                     {"title": "t", "work_item_type": "Bug", "tags": ["x"]}, id="config-without-project-fits-all"),
    ],
)
def test_apply(body: dict[str, Any], configured: dict[str, Any] | None, last: dict[str, Any] | None,
               expected: dict[str, Any]) -> None:
    assert defaults.apply(body, configured, last) == expected


def test_choice_is_project_and_type_under_the_config_basis() -> None:
    request = wi.create_request({"group_id": "g", "project": P1, "work_item_type": "Task", "title": "t",
                                 "area_path": "Web\\Team B"})
    assert defaults.choice(request, CONFIGURED) == remembered(P1, "Task")
    assert defaults.basis(CONFIGURED) != defaults.basis({**CONFIGURED, "tags": []})
    assert defaults.basis(None) == defaults.basis({})


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"group_id": "g1", "title": "t"}, id="missing-project-and-type"),
        pytest.param({"group_id": "g1", "title": "t", "project": P1}, id="missing-type"),
    ],
)
def test_placeholders_let_the_rest_of_a_body_be_checked(body: dict[str, Any]) -> None:
    wi.create_request(defaults.with_placeholders(body))
    with pytest.raises(InvalidInput) as caught:
        wi.create_request(defaults.with_placeholders({**body, "tags": ["a;b"]}))
    assert caught.value.field == "tags"


# --- the config setting --------------------------------------------------------------------------


def test_valid_defaults_are_kept_without_nulls() -> None:
    config = parse_config({"project_issue_defaults": {"p1": {**CONFIGURED, "area_path": None}, "p2": {}}})
    assert config["project_issue_defaults"] == {"p1": {k: v for k, v in CONFIGURED.items() if k != "area_path"}}


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        pytest.param({"p1": "Bug"}, "project_issue_defaults", "must be an object", id="entry-not-an-object"),
        pytest.param({"a/b": {}}, "project_issue_defaults", "tracker project ids", id="bad-tracker-project"),
        pytest.param({"p1": {"title": "x"}}, "project_issue_defaults.title", "is not a default", id="unknown-key"),
        pytest.param({"p1": {"project": 5}}, "project_issue_defaults.project", "must be a string", id="project-type"),
        pytest.param({"p1": {"work_item_type": " "}}, "project_issue_defaults.work_item_type", "not be empty",
                     id="blank-type"),
        pytest.param({"p1": {"tags": ["a;b"]}}, "project_issue_defaults.tags", "';'", id="tag-separator"),
        pytest.param({"p1": {"fields": {"System.Title": "x"}}}, "project_issue_defaults.fields", "title",
                     id="reserved-field"),
        pytest.param({"p1": {"fields": {"Custom.X": [1]}}}, "project_issue_defaults.fields", "string, number",
                     id="field-value-type"),
        pytest.param({"p1": {"area_path": "x" * 4001}}, "project_issue_defaults.area_path", "4000",
                     id="long-area"),
    ],
)
def test_invalid_defaults_name_the_key(entry: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_config({"project_issue_defaults": entry})
    assert (caught.value.status, caught.value.field) == (422, field)
    assert message in caught.value.message
    if isinstance(entry.get("p1"), dict):
        assert "tracker project p1" in caught.value.message
