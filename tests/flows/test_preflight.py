"""Live checks before saving or creating: org config validation, create dry runs, and issue defaults,
against the HTTPS sandbox ADO and Azurite."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import azure.functions as func
import pytest
from conftest import StubContext

from manage_http import integrations as routes
from shared.compose import Services
from shared.core.errors import BundleError, InvalidInput, TransientError, Unprocessable
from shared.core.models import Group, Identity, Integration, OrgLink
from shared.flows import install, preflight, workitems

KEY = "preflight-manage-key-0123456789"
MAPPING = {"on_resolve": "Resolved", "on_unresolve": "Active"}


@dataclass
class Setup:
    svc: Services
    sandbox: Any
    org: str
    account_id: str
    project_id: str
    org_id: str

    def calls(self) -> list[dict[str, Any]]:
        return [c for c in self.sandbox.calls if c["path"].startswith(f"/{self.org}/")]

    def creates(self) -> list[dict[str, Any]]:
        return [c for c in self.calls() if c["method"] == "POST" and "/_apis/wit/workitems/" in c["path"]]

    def config(self) -> dict[str, Any]:
        link = self.svc.store.integrations.get_org_link(self.account_id, self.org_id)
        assert link is not None
        return link.config

    def put_config(self, body: dict[str, Any]) -> Any:
        return install.put_org_config(self.svc, self.account_id, self.org_id, body)

    def group(self, group_id: str, project: str = "p1") -> str:
        self.svc.store.groups.put(Group(org_id=self.org_id, group_id=group_id, project_id=project, title="Boom"))
        return group_id

    def create(self, group_id: str, **body: Any) -> Any:
        return workitems.create_issue(self.svc, self.account_id, self.org_id,
                                      {"group_id": group_id, "title": "Boom", **body})

    def dry_run(self, group_id: str = "g1", **body: Any) -> dict[str, Any]:
        reply = preflight.dry_run(self.svc, self.account_id, self.org_id, {"group_id": group_id, "title": "Boom",
                                                                           **body})
        assert reply.status == 200
        return dict(reply.body)

    def fields(self, key: str) -> dict[str, Any]:
        return dict(self.sandbox.work_item(self.org, int(key))["fields"])


@pytest.fixture
def ado(svc: Services, sandbox_ado: Any, uid: str) -> Setup:
    org = f"pre{uid}"
    account_id = sandbox_ado.add_organization(org)
    project_id = sandbox_ado.add_project(org, "Fabrikam")
    integrations = svc.store.integrations
    integrations.save(Integration(account_id=account_id, account_name=org, domain_name=sandbox_ado.instance_url(org)))
    integrations.save_identity(account_id, Identity(kind="pat", access_token=sandbox_ado.add_pat(org)))
    integrations.save_org_link(OrgLink(account_id=account_id, org_id=uid, config={"sync_comments": True}))
    setup = Setup(svc, sandbox_ado, org, account_id, project_id, uid)
    setup.group("g1")
    return setup


# --- organization config -------------------------------------------------------------------------


def test_a_config_naming_existing_projects_states_types_and_paths_is_saved(ado: Setup) -> None:
    body = {"sync_status_forward": {ado.project_id: {"on_resolve": "closed", "on_unresolve": "Active"}},
            "inbound_status": {ado.project_id: {"resolve": ["Resolved"], "unresolve": ["New"]}},
            "project_issue_defaults": {"p1": {"project": ado.project_id, "work_item_type": "User Story",
                                              "area_path": "Fabrikam\\Team A", "iteration_path": "fabrikam\\sprint 8"}},
            "resolution_strategy": "resolve_next_release"}

    reply = ado.put_config(body)

    assert reply.status == 200
    assert ado.config()["sync_status_forward"] == body["sync_status_forward"]
    assert ado.config()["project_issue_defaults"] == body["project_issue_defaults"]
    assert ado.config()["resolution_strategy"] == "resolve_next_release"


@pytest.mark.parametrize(
    ("body", "starts"),
    [
        pytest.param(lambda p: {"sync_status_forward": {"0d1c7ff8-3e0b-4a4c-9c8e-1b0c0d0a0b0c": MAPPING}},
                     "sync_status_forward.0d1c7ff8-3e0b-4a4c-9c8e-1b0c0d0a0b0c: no Azure DevOps project",
                     id="unknown-project"),
        pytest.param(lambda p: {"sync_status_forward": {"Fabrikam": MAPPING}},
                     "sync_status_forward.Fabrikam: use the project's id", id="project-name-instead-of-id"),
        pytest.param(lambda p: {"sync_status_forward": {p: {"on_resolve": "Done", "on_unresolve": "Active"}}},
                     "sync_status_forward.{p}.on_resolve: no state 'Done'", id="unknown-resolve-state"),
        pytest.param(lambda p: {"inbound_status": {p: {"resolve": ["Closed"], "unresolve": ["Doing"]}}},
                     "inbound_status.{p}.unresolve: no state 'Doing'", id="unknown-inbound-state"),
        pytest.param(lambda p: {"project_issue_defaults": {"p1": {"project": "Nowhere"}}},
                     "project_issue_defaults.p1.project: no Azure DevOps project Nowhere", id="defaults-project"),
        pytest.param(lambda p: {"project_issue_defaults": {"p1": {"project": p, "work_item_type": "Epic"}}},
                     "project_issue_defaults.p1.work_item_type: no work item type Epic", id="defaults-type"),
        pytest.param(lambda p: {"project_issue_defaults": {"p1": {"project": "Fabrikam", "area_path": "Fabrikam\\X"}}},
                     "project_issue_defaults.p1.area_path: no area path", id="defaults-area"),
        pytest.param(lambda p: {"project_issue_defaults": {"p1": {"project": p, "iteration_path": "Sprint 7"}}},
                     "project_issue_defaults.p1.iteration_path: no iteration path", id="defaults-iteration"),
    ],
)
def test_a_config_naming_what_does_not_exist_is_422_and_saves_nothing(ado: Setup, body: Any, starts: str) -> None:
    with pytest.raises(Unprocessable) as caught:
        ado.put_config(body(ado.project_id))

    assert caught.value.status == 422
    assert caught.value.message.startswith(starts.replace("{p}", ado.project_id)), caught.value.message
    assert ado.config() == {"sync_comments": True}


def test_unknown_state_lists_the_projects_states(ado: Setup) -> None:
    with pytest.raises(Unprocessable) as caught:
        ado.put_config({"sync_status_forward": {ado.project_id: {"on_resolve": "Done", "on_unresolve": "New"}}})
    assert "(its states: Active, Closed, New, Removed, Resolved)" in caught.value.message


def test_a_state_added_after_the_lookup_was_cached_is_accepted(ado: Setup) -> None:
    ado.put_config({"sync_status_forward": {ado.project_id: MAPPING}})  # warms the cache
    ado.sandbox.set_states(ado.org, "Fabrikam", "Bug", [
        {"name": "New", "color": "b2b2b2", "category": "Proposed"},
        {"name": "Shipped", "color": "339933", "category": "Completed"}])

    ado.put_config({"sync_status_forward": {ado.project_id: {"on_resolve": "Shipped", "on_unresolve": "New"}}})

    assert ado.config()["sync_status_forward"][ado.project_id]["on_resolve"] == "Shipped"


def test_azure_devops_out_of_reach_is_503_and_saves_nothing(ado: Setup) -> None:
    ado.sandbox.inject_fault("503", times=4, path_contains=f"/{ado.org}/_apis/projects")
    try:
        with pytest.raises(TransientError) as caught:
            ado.put_config({"sync_status_forward": {ado.project_id: MAPPING}, "sync_status_reverse": True})
    finally:
        ado.sandbox.clear_faults()
    assert caught.value.status == 503
    assert ado.config() == {"sync_comments": True}


def test_a_config_naming_nothing_in_azure_devops_asks_it_nothing(ado: Setup) -> None:
    ado.sandbox.reset_calls()
    ado.put_config({"sync_status_reverse": True, "project_issue_defaults": {"p1": {"tags": ["sentry"]}}})
    assert ado.calls() == []
    assert ado.config()["project_issue_defaults"] == {"p1": {"tags": ["sentry"]}}


# --- dry run -------------------------------------------------------------------------------------


def test_dry_run_of_a_valid_request_creates_claims_and_remembers_nothing(ado: Setup) -> None:
    answer = ado.dry_run(project=ado.project_id, work_item_type="Bug", area_path="Fabrikam\\Team B",
                         fields={"Microsoft.VSTS.Common.Severity": "2 - High"})

    assert answer == {"valid": True, "errors": [], "request": {
        "project": ado.project_id, "work_item_type": "Bug", "area_path": "Fabrikam\\Team B",
        "fields": {"Microsoft.VSTS.Common.Severity": "2 - High"}}}
    assert ado.creates() == []
    state = ado.svc.store.groups.read(ado.org_id, "g1")
    assert state is not None and state.creations == {} and state.links == {}
    assert ado.svc.store.choices.get(ado.account_id, ado.org_id, "p1") is None


def test_dry_run_reports_the_errors_a_create_meets(ado: Setup) -> None:
    ado.sandbox.set_required_fields(ado.org, "Fabrikam", ["Custom.Customer"])
    ado.sandbox.set_allowed_values(ado.org, "Fabrikam", "Custom.Customer", ["Contoso", "Fabrikam"])
    body = {"project": "Fabrikam", "work_item_type": "Bug", "fields": {"Microsoft.VSTS.Common.Severity": "9 - Meh"},
            "area_path": "Fabrikam\\Team C", "iteration_path": "Fabrikam\\Sprint 8"}

    answer = ado.dry_run(**body)

    assert answer["valid"] is False
    assert [e["field"] for e in answer["errors"]] == [
        "fields.Microsoft.VSTS.Common.Severity", "fields.Custom.Customer", "area_path"]
    assert "9 - Meh" in answer["errors"][0]["message"] and "Team C" in answer["errors"][2]["message"]
    # A create meets them too, one at a time, in Azure DevOps's words; with them fixed it goes through.
    with pytest.raises(BundleError) as caught:
        ado.create("g1", **body)
    assert caught.value.status == 422 and "TF401320" in caught.value.message
    fixed = {**body, "area_path": "Fabrikam\\Team A",
             "fields": {"Microsoft.VSTS.Common.Severity": "1 - Critical", "Custom.Customer": "contoso"}}
    assert ado.dry_run(**fixed)["valid"] is True
    assert ado.create("g1", **fixed).status == 200


@pytest.mark.parametrize(
    ("body", "field", "says"),
    [
        pytest.param({"project": "Nowhere", "work_item_type": "Bug"}, "project", "no Azure DevOps project Nowhere",
                     id="unknown-project"),
        pytest.param({"project": "Fabrikam", "work_item_type": "Epic"}, "work_item_type", "no work item type Epic",
                     id="unknown-type"),
        pytest.param({"project": "Fabrikam", "work_item_type": "Task", "fields": {"Custom.Nope": 1}},
                     "fields.Custom.Nope", "TF51535", id="unknown-field"),
        pytest.param({"project": "Fabrikam", "work_item_type": "Bug", "iteration_path": "Fabrikam\\Sprint 99"},
                     "iteration_path", "no iteration path", id="unknown-iteration"),
        pytest.param({"project": "Fabrikam", "work_item_type": "Bug", "title": ""}, "title", "not be empty",
                     id="body-check"),
        pytest.param({"work_item_type": "Bug"}, "project", "is required", id="no-project-and-no-default"),
    ],
)
def test_dry_run_errors_name_the_field(ado: Setup, body: dict[str, Any], field: str, says: str) -> None:
    answer = ado.dry_run(**body)
    assert answer["valid"] is False
    assert [e["field"] for e in answer["errors"]] == [field]
    assert says in answer["errors"][0]["message"]
    assert ado.creates() == []


def test_dry_run_of_a_linked_group_answers_its_link(ado: Setup) -> None:
    created = ado.create("g1", project="Fabrikam", work_item_type="Bug")
    answer = ado.dry_run(project="Fabrikam", work_item_type="Task")
    assert answer["valid"] is True and answer["existing"] == created.body


def call_issues(ado: Setup, params: dict[str, str], body: dict[str, Any]) -> tuple[int, Any]:
    req = func.HttpRequest("POST", "http://localhost/api/manage",
                           headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
                           route_params={"account_id": ado.account_id, "org_id": ado.org_id}, params=params,
                           body=json.dumps(body).encode())
    response = routes.manage_issue_create(req, StubContext())
    return response.status_code, json.loads(response.get_body())


def test_dry_run_through_the_route(ado: Setup, env: pytest.MonkeyPatch) -> None:
    env.setenv("MANAGE_API_KEY", KEY)
    body = {"group_id": "g1", "title": "Boom", "project": "Fabrikam", "work_item_type": "Spaceship"}

    status, answer = call_issues(ado, {"dry_run": "true"}, body)
    assert status == 200 and answer["valid"] is False and answer["errors"][0]["field"] == "work_item_type"
    status, answer = call_issues(ado, {"dry_run": "maybe"}, body)
    assert status == 400 and "dry_run" in answer["detail"]
    assert ado.creates() == []
    status, answer = call_issues(ado, {"dry_run": "false"}, {**body, "work_item_type": "Bug"})
    assert status == 200 and answer["key"]


# --- defaults and the last choice ----------------------------------------------------------------


def test_defaults_fill_a_create_and_the_last_choice_is_remembered(ado: Setup) -> None:
    ado.sandbox.add_area(ado.org, "Fabrikam", "Team A\\Backend")
    ado.put_config({"project_issue_defaults": {"p1": {
        "project": ado.project_id, "work_item_type": "Bug", "area_path": "Fabrikam\\Team A\\Backend",
        "iteration_path": "Fabrikam\\Sprint 8", "tags": ["sentry"], "fields": {"Microsoft.VSTS.Common.Priority": 1}}}})

    assert ado.dry_run()["request"] == {
        "project": ado.project_id, "work_item_type": "Bug", "area_path": "Fabrikam\\Team A\\Backend",
        "iteration_path": "Fabrikam\\Sprint 8", "tags": ["sentry"], "fields": {"Microsoft.VSTS.Common.Priority": 1}}
    first = ado.create("g1")
    fields = ado.fields(first.body["key"])
    assert fields["System.WorkItemType"] == "Bug" and fields["System.AreaPath"] == "Fabrikam\\Team A\\Backend"
    assert fields["System.IterationPath"] == "Fabrikam\\Sprint 8"
    assert fields["System.Tags"].startswith("sentry; ") and fields["Microsoft.VSTS.Common.Priority"] == 1

    # The caller picks another type once: the next create of that tracker project starts from it.
    second = ado.create(ado.group("g2"), work_item_type="Task", tags=[])
    assert ado.fields(second.body["key"])["System.WorkItemType"] == "Task"
    assert "sentry" not in ado.fields(second.body["key"])["System.Tags"]
    third = ado.create(ado.group("g3"))
    assert ado.fields(third.body["key"])["System.WorkItemType"] == "Task"
    assert ado.fields(third.body["key"])["System.AreaPath"] == "Fabrikam\\Team A\\Backend"
    # Another tracker project has its own (here: none).
    with pytest.raises(InvalidInput, match="project"):
        ado.create(ado.group("g4", project="p2"))

    # An administrator's new defaults win over a choice made under the old ones.
    ado.put_config({"project_issue_defaults": {"p1": {"project": ado.project_id, "work_item_type": "Issue"}}})
    fourth = ado.create(ado.group("g5"))
    assert ado.fields(fourth.body["key"])["System.WorkItemType"] == "Issue"


def test_defaults_of_one_project_never_leak_into_another(ado: Setup) -> None:
    other = ado.sandbox.add_project(ado.org, "Mobile")
    ado.put_config({"project_issue_defaults": {"p1": {"project": ado.project_id, "work_item_type": "Bug",
                                                      "area_path": "Fabrikam\\Team A"}}})

    answer = ado.dry_run(project=other, work_item_type="Task")
    assert answer == {"valid": True, "errors": [], "request": {"project": other, "work_item_type": "Task"}}
    reply = ado.create("g1", project=other, work_item_type="Task")
    assert ado.fields(reply.body["key"])["System.AreaPath"] == "Mobile"
