"""Discovery for the management surface: types, fields, states, areas and iterations, and their rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.devhost.sandbox_client import ORG, Ado, running_ado, title_op


@pytest.fixture
def ado() -> Iterator[Ado]:
    yield from running_ado()


def _create(ado: Ado, *ops: dict[str, Any], wtype: str = "Bug") -> Any:
    return ado.patch_doc("POST", f"Fabrikam/_apis/wit/workitems/${wtype}", [*title_op("t"), *ops])


def _add(field: str, value: Any) -> dict[str, Any]:
    return {"op": "add", "path": f"/fields/{field}", "value": value}


def test_work_item_types_with_description_color_and_states(ado: Ado) -> None:
    body = ado.get("Fabrikam/_apis/wit/workitemtypes").json()
    types = {t["name"]: t for t in body["value"]}
    assert body["count"] == len(types) and {"Bug", "Task", "User Story", "Issue"} <= set(types)
    bug = types["Bug"]
    assert bug["referenceName"] == "Microsoft.VSTS.WorkItemTypes.Bug"
    assert bug["color"] == "CC293D" and bug["description"] and bug["isDisabled"] is False
    assert bug["icon"]["url"].startswith(ado.url(""))
    assert [s["name"] for s in bug["states"]] == ["New", "Active", "Resolved", "Closed", "Removed"]
    assert all({"name", "color", "category"} <= set(s) for s in bug["states"])
    one = ado.get("Fabrikam/_apis/wit/workitemtypes/User%20Story").json()
    assert one["referenceName"] == "Microsoft.VSTS.WorkItemTypes.UserStory"
    assert ado.get("Fabrikam/_apis/wit/workitemtypes/Spaceship").status_code == 404


def test_fields_with_allowed_values_required_and_defaults(ado: Ado) -> None:
    ado.sandbox.set_required_fields(ORG, "Fabrikam", ["Custom.Customer"])
    ado.sandbox.set_allowed_values(ORG, "Fabrikam", "Custom.Customer", ["Contoso", "Fabrikam"])
    expanded = ado.get("Fabrikam/_apis/wit/workitemtypes/Bug/fields", params={"$expand": "allowedValues"}).json()
    fields = {f["referenceName"]: f for f in expanded["value"]}
    assert expanded["count"] == len(fields)
    title, state = fields["System.Title"], fields["System.State"]
    assert title == {
        "alwaysRequired": True,
        "defaultValue": None,
        "referenceName": "System.Title",
        "name": "Title",
        "url": ado.url("_apis/wit/fields/System.Title"),
        "allowedValues": [],
    }
    assert state["allowedValues"] == ["New", "Active", "Resolved", "Closed", "Removed"]
    assert state["defaultValue"] == "New"
    assert fields["Microsoft.VSTS.Common.Severity"]["allowedValues"][0] == "1 - Critical"
    assert fields["Microsoft.VSTS.Common.Priority"]["allowedValues"] == [1, 2, 3, 4]
    assert fields["Custom.Customer"]["alwaysRequired"] is True
    assert fields["Custom.Customer"]["allowedValues"] == ["Contoso", "Fabrikam"]

    plain = ado.get("Fabrikam/_apis/wit/workitemtypes/Task/fields").json()["value"]
    assert "allowedValues" not in plain[0] and "Microsoft.VSTS.Common.Severity" not in {
        f["referenceName"] for f in plain
    }
    one = ado.get("Fabrikam/_apis/wit/workitemtypes/Bug/fields/System.State", params={"$expand": "all"}).json()
    assert one["allowedValues"][0] == "New" and one["dependentFields"] == []
    assert ado.get("Fabrikam/_apis/wit/workitemtypes/Bug/fields/Custom.Nope").status_code == 404


def test_classification_trees(ado: Ado) -> None:
    ado.sandbox.add_area(ORG, "Fabrikam", "Team A\\Backend")
    areas = ado.get("Fabrikam/_apis/wit/classificationnodes/Areas", params={"$depth": "2"}).json()
    assert areas["name"] == "Fabrikam" and areas["structureType"] == "area" and areas["hasChildren"] is True
    assert areas["path"] == "\\Fabrikam\\Area"
    team_a = next(c for c in areas["children"] if c["name"] == "Team A")
    assert team_a["path"] == "\\Fabrikam\\Area\\Team A" and team_a["hasChildren"] is True
    assert team_a["children"][0]["name"] == "Backend" and team_a["children"][0]["hasChildren"] is False
    assert "children" not in ado.get("Fabrikam/_apis/wit/classificationnodes/Areas").json()  # $depth=0

    iterations = ado.get("Fabrikam/_apis/wit/classificationnodes/Iterations", params={"$depth": "1"}).json()
    sprint = iterations["children"][0]
    assert sprint["name"] == "Sprint 7" and sprint["structureType"] == "iteration"
    assert sprint["attributes"] == {"startDate": "2026-11-30T00:00:00Z", "finishDate": "2026-12-11T00:00:00Z"}
    assert sprint["url"] == ado.url(f"{ado.project_id}/_apis/wit/classificationNodes/Iterations/Sprint%207")

    one = ado.get("Fabrikam/_apis/wit/classificationnodes/Areas/Team%20A/Backend").json()
    assert one["path"] == "\\Fabrikam\\Area\\Team A\\Backend"
    both = ado.get("Fabrikam/_apis/wit/classificationnodes", params={"$depth": "1"}).json()
    assert [n["structureType"] for n in both["value"]] == ["area", "iteration"]
    assert ado.get("Fabrikam/_apis/wit/classificationnodes/Areas/Nowhere").status_code == 404


def test_create_rules_name_the_field(ado: Ado) -> None:
    ado.sandbox.set_allowed_values(ORG, "Fabrikam", "Custom.Customer", ["Contoso"])
    bad_severity = _create(ado, _add("Microsoft.VSTS.Common.Severity", "0 - Apocalyptic"))
    assert bad_severity.status_code == 400
    assert bad_severity.json()["message"].startswith("TF401320: Rule Error for field Severity. Error code: ValidValues")
    assert bad_severity.json()["typeKey"] == "RuleValidationException"
    assert _create(ado, _add("Custom.Customer", "Initech")).status_code == 400
    assert _create(ado, _add("Microsoft.VSTS.Common.Priority", 9)).status_code == 400

    for field, path in (("System.AreaPath", "Fabrikam\\Team Z"), ("System.IterationPath", "Fabrikam\\Sprint 99"),
                        ("System.AreaPath", "Other\\Team A")):
        resp = _create(ado, _add(field, path))
        assert resp.status_code == 400, (field, path)
        assert resp.json()["message"] == f"TF401347: Invalid tree name given for work item -1, field '{field}'."

    ok = _create(
        ado,
        _add("System.AreaPath", "fabrikam\\team a"),
        _add("System.IterationPath", "Fabrikam\\Sprint 8"),
        _add("Microsoft.VSTS.Common.Severity", "2 - High"),
        _add("Custom.Customer", "Contoso"),
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["fields"]["System.AreaPath"] == "Fabrikam\\Team A"  # stored as the node is named
    wid = ok.json()["id"]
    moved = ado.patch_doc("PATCH", f"_apis/wit/workitems/{wid}", [
        {"op": "replace", "path": "/fields/System.IterationPath", "value": "Fabrikam\\Nope"}
    ])
    assert moved.status_code == 400 and f"work item {wid}, field 'System.IterationPath'" in moved.json()["message"]


def test_a_field_the_project_makes_required_reports_no_default(ado: Ado) -> None:
    """The fields answer must not promise a default the create does not fill (a dry run trusts it)."""
    fields = "Fabrikam/_apis/wit/workitemtypes/Bug/fields/Microsoft.VSTS.Common.Severity"
    assert ado.get(fields).json()["defaultValue"] == "3 - Medium"
    ado.sandbox.set_required_fields(ORG, "Fabrikam", ["Microsoft.VSTS.Common.Severity"])
    severity = ado.get(fields).json()
    assert (severity["alwaysRequired"], severity["defaultValue"]) == (True, None)
    assert _create(ado).status_code == 400
