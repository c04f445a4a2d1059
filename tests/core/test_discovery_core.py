"""shared.core.discovery: paging, the shapes of discovery answers, tree flattening and dry-run field errors."""

from __future__ import annotations

from typing import Any

import pytest

from shared.core import discovery as d
from shared.core.errors import InvalidInput

# --- paging --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        pytest.param({}, d.Page(100, 0), id="defaults"),
        pytest.param({"top": "5", "skip": "10"}, d.Page(5, 10), id="both"),
        pytest.param({"top": " 1000 ", "skip": ""}, d.Page(1000, 0), id="max-top-and-blank-skip"),
    ],
)
def test_page_params(query: dict[str, str], expected: d.Page) -> None:
    assert d.page_params(query) == expected


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param({"top": "0"}, "top", id="zero-top"),
        pytest.param({"top": "1001"}, "top", id="top-too-large"),
        pytest.param({"top": "-1"}, "top", id="negative-top"),
        pytest.param({"top": "1e3"}, "top", id="not-digits"),
        pytest.param({"skip": "\uff11"}, "skip", id="unicode-digit"),
        pytest.param({"skip": "x"}, "skip", id="text-skip"),
    ],
)
def test_bad_page_params_are_400_naming_the_parameter(query: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        d.page_params(query)
    assert (caught.value.status, caught.value.field) == (400, field)


@pytest.mark.parametrize(
    ("count", "query", "page", "headers"),
    [
        pytest.param(5, {}, [0, 1, 2, 3, 4], {"X-Total-Count": "5"}, id="all-on-one-page"),
        pytest.param(5, {"top": "2"}, [0, 1],
                     {"X-Total-Count": "5", "Link": '<?top=2&skip=2>; rel="next"'}, id="first-page"),
        pytest.param(5, {"top": "2", "skip": "2", "query": "ann b"}, [2, 3],
                     {"X-Total-Count": "5", "Link": '<?query=ann+b&top=2&skip=4>; rel="next"'},
                     id="keeps-other-parameters"),
        pytest.param(5, {"top": "2", "skip": "4"}, [4], {"X-Total-Count": "5"}, id="last-page"),
        pytest.param(5, {"skip": "9"}, [], {"X-Total-Count": "5"}, id="past-the-end"),
        pytest.param(0, {}, [], {"X-Total-Count": "0"}, id="empty"),
    ],
)
def test_paged(count: int, query: dict[str, str], page: list[int], headers: dict[str, str]) -> None:
    assert d.paged(list(range(count)), d.page_params(query), query) == (page, headers)


# --- shapes --------------------------------------------------------------------------------------


def test_field_shape_and_defaults() -> None:
    raw = {"alwaysRequired": True, "defaultValue": None, "referenceName": "Custom.Customer", "name": "Customer",
           "url": "https://x/", "allowedValues": ["Contoso", "Fabrikam"], "helpText": "h"}
    assert d.field(raw) == {"name": "Customer", "reference_name": "Custom.Customer", "required": True,
                            "allowed_values": ["Contoso", "Fabrikam"], "default_value": None}
    assert d.field({"referenceName": "System.Title"})["allowed_values"] == []


def test_type_shape_keeps_states_and_marks_missing_ones() -> None:
    raw = {"name": "Bug", "referenceName": "Microsoft.VSTS.WorkItemTypes.Bug", "color": "CC293D",
           "description": "d", "isDisabled": False, "icon": {}, "url": "u",
           "states": [{"name": "New", "color": "b2b2b2", "category": "Proposed"}]}
    assert d.work_item_type(raw) == {"name": "Bug", "reference_name": "Microsoft.VSTS.WorkItemTypes.Bug",
                                     "description": "d", "color": "CC293D", "is_disabled": False,
                                     "states": [{"name": "New", "category": "Proposed", "color": "b2b2b2"}]}
    assert d.work_item_type({"name": "Task"})["states"] is None


def test_user_shape() -> None:
    raw = {"subjectKind": "user", "descriptor": "aad.X", "displayName": "Ann", "mailAddress": "ann@example.com",
           "principalName": "ann@example.com", "origin": "aad", "url": "u"}
    assert d.user(raw) == {"display_name": "Ann", "email": "ann@example.com", "principal_name": "ann@example.com",
                           "descriptor": "aad.X", "origin": "aad"}


USERS = [d.user({"displayName": n, "mailAddress": m, "principalName": p}) for n, m, p in (
    ("Lauryn", "lauryn@example.com", "lauryn@example.com"),
    ("jamal Hartnett", "jamal@example.com", "jamal@example.com"),
    ("Build Service", "", "build@svc"),
)]


@pytest.mark.parametrize(
    ("text", "names"),
    [
        pytest.param("", ["Build Service", "jamal Hartnett", "Lauryn"], id="everyone-by-name"),
        pytest.param("HART", ["jamal Hartnett"], id="display-name-any-case"),
        pytest.param("lauryn@", ["Lauryn"], id="e-mail"),
        pytest.param("@svc", ["Build Service"], id="principal-name"),
        pytest.param("example.com", ["jamal Hartnett", "Lauryn"], id="several"),
        pytest.param("nobody", [], id="none"),
    ],
)
def test_matching_users(text: str, names: list[str]) -> None:
    assert [u["display_name"] for u in d.matching_users(USERS, d.user_query({"query": text}))] == names


def test_user_query_is_bounded() -> None:
    with pytest.raises(InvalidInput) as caught:
        d.user_query({"query": "x" * 257})
    assert caught.value.field == "query"


def test_flatten_gives_field_paths_parents_first_with_iteration_dates() -> None:
    tree = {"id": 1, "identifier": "a", "name": "Fabrikam", "structureType": "iteration", "hasChildren": True,
            "path": "\\Fabrikam\\Iteration", "children": [
                {"id": 2, "identifier": "b", "name": "R1", "structureType": "iteration",
                 "path": "\\Fabrikam\\Iteration\\R1", "children": [
                     {"id": 3, "identifier": "c", "name": "Sprint 1", "structureType": "iteration",
                      "attributes": {"startDate": "2026-01-05T00:00:00Z", "finishDate": "2026-01-16T00:00:00Z"}}]},
                {"id": 4, "identifier": "d", "name": "R2", "structureType": "iteration", "hasChildren": True}]}
    assert d.flatten(tree) == [
        {"path": "Fabrikam", "name": "Fabrikam", "id": 1, "identifier": "a", "start_date": None, "finish_date": None},
        {"path": "Fabrikam\\R1", "name": "R1", "id": 2, "identifier": "b", "start_date": None, "finish_date": None},
        {"path": "Fabrikam\\R1\\Sprint 1", "name": "Sprint 1", "id": 3, "identifier": "c",
         "start_date": "2026-01-05T00:00:00Z", "finish_date": "2026-01-16T00:00:00Z"},
        {"path": "Fabrikam\\R2", "name": "R2", "id": 4, "identifier": "d", "start_date": None, "finish_date": None},
    ]
    areas = d.flatten({"name": "Web", "structureType": "area", "children": [{"name": "Team A"}]})
    assert [a["path"] for a in areas] == ["Web", "Web\\Team A"] and "start_date" not in areas[0]


@pytest.mark.parametrize(
    ("value", "found"),
    [("Web\\Team A", True), ("web\\team a", True), ("\\Web\\Team A\\", True), ("Web", True),
     ("Web\\Team B", False), ("Team A", False), ("", False)],
)
def test_has_path(value: str, found: bool) -> None:
    paths = d.flatten({"name": "Web", "structureType": "area", "children": [{"name": "Team A"}]})
    assert d.has_path(paths, value) is found


PROJECTS = [{"id": "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c", "name": "Fabrikam", "description": ""}]
TYPES = [d.work_item_type({"name": "User Story", "referenceName": "Microsoft.VSTS.WorkItemTypes.UserStory",
                           "states": [{"name": "New"}, {"name": "Active"}]}),
         d.work_item_type({"name": "Bug", "referenceName": "Microsoft.VSTS.WorkItemTypes.Bug",
                           "states": [{"name": "New"}, {"name": "Resolved"}]})]


@pytest.mark.parametrize(
    ("ref", "found"),
    [("6CE954B1-CE1F-45D1-B94D-E6BF2464BA2C", True), ("fabrikam", True), ("Fabrikam2", False)],
)
def test_find_project_by_id_or_name(ref: str, found: bool) -> None:
    assert (d.find_project(PROJECTS, ref) is not None) is found


@pytest.mark.parametrize(
    ("ref", "name"),
    [("user story", "User Story"), ("Microsoft.VSTS.WorkItemTypes.Bug", "Bug"), ("Epic", None)],
)
def test_find_type_by_name_or_reference(ref: str, name: str | None) -> None:
    found = d.find_type(TYPES, ref)
    assert (found["name"] if found else None) == name


def test_state_names_of_every_type() -> None:
    assert d.state_names(TYPES) == {"new": "New", "active": "Active", "resolved": "Resolved"}


# --- dry-run field errors ------------------------------------------------------------------------


def _field(reference: str, *, required: bool = False, allowed: list[Any] | None = None,
           default: Any = None) -> dict[str, Any]:
    return {"name": reference.rsplit(".", 1)[-1], "reference_name": reference, "required": required,
            "allowed_values": allowed or [], "default_value": default}


FIELDS = [
    _field("System.Title", required=True),
    _field("System.State", required=True, allowed=["New", "Active"], default="New"),
    _field("System.AreaPath", required=True),  # filled by Azure DevOps with the project root
    _field("System.Description"),
    _field("Microsoft.VSTS.Common.Priority", allowed=[1, 2, 3, 4], default=2),
    _field("Microsoft.VSTS.Common.Severity", required=True, allowed=["1 - Critical", "2 - High"],
           default="2 - High"),
    _field("Custom.Customer", required=True, allowed=["Contoso", "Fabrikam"]),
]
BASE = {"System.Title": "t", "System.Description": "d", "System.History": "d", "Custom.Customer": "Contoso"}


@pytest.mark.parametrize(
    ("values", "errors"),
    [
        pytest.param(BASE, [], id="valid"),
        pytest.param({**BASE, "Custom.Customer": "contoso", "Microsoft.VSTS.Common.Priority": "3"}, [],
                     id="picklists-ignore-case-and-number-as-text"),
        pytest.param({k: v for k, v in BASE.items() if k != "Custom.Customer"}, ["fields.Custom.Customer"],
                     id="required-without-default"),
        pytest.param({**BASE, "Custom.Customer": "  "}, ["fields.Custom.Customer"], id="required-blank"),
        pytest.param({"System.Title": "t", "custom.customer": "Initech"}, ["fields.Custom.Customer"],
                     id="not-an-allowed-value-any-case-name"),
        pytest.param({**BASE, "Microsoft.VSTS.Common.Priority": 7}, ["fields.Microsoft.VSTS.Common.Priority"],
                     id="number-not-allowed"),
        pytest.param({**BASE, "Custom.Nope": 1}, ["fields.Custom.Nope"], id="unknown-field"),
        pytest.param({**BASE, "System.AreaPath": "Web\\X", "System.Tags": "a"}, [],
                     id="paths-and-tags-are-checked-elsewhere"),
        pytest.param({"System.Title": "t"}, ["fields.Custom.Customer"], id="only-title"),
    ],
)
def test_field_errors(values: dict[str, Any], errors: list[str]) -> None:
    found = d.field_errors(FIELDS, values, "Bug")
    assert [e.field for e in found] == errors
    assert all(e.message for e in found)


def test_field_error_messages_say_what_to_do() -> None:
    (missing,) = d.field_errors(FIELDS, {"System.Title": "t"}, "Bug")
    assert "Custom.Customer" in missing.message and "required" in missing.message and "`fields`" in missing.message
    (wrong,) = d.field_errors(FIELDS, {**BASE, "Custom.Customer": "Initech"}, "Bug")
    assert "'Initech'" in wrong.message and "Contoso, Fabrikam" in wrong.message
    assert wrong.view() == {"field": "fields.Custom.Customer", "message": wrong.message}
