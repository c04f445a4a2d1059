"""Create, link and search work items against the HTTPS sandbox ADO and a real Azurite.

The sandbox does not answer WIQL yet: the marker lookup of a retried create is stubbed with
`responses` (everything else passes through to the sandbox and Azurite).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import requests
import responses
from conftest import Intercepted

from shared.adapters.groups import GroupStore
from shared.adapters.http import error_reply
from shared.compose import Services
from shared.core import workitems as wi
from shared.core.errors import (
    AdoAuthError,
    AdoThrottled,
    AdoUnavailable,
    BundleError,
    Conflict,
    IdentityInvalid,
    InvalidInput,
    NotFound,
    StorageUnavailable,
)
from shared.core.models import Creation, Group, GroupChange, GroupState, Identity, Integration, Link, OrgLink
from shared.flows import workitems


@dataclass
class Setup:
    svc: Services
    sandbox: Any
    org: str  # sandbox organization name (= account name)
    account_id: str
    project_id: str
    org_id: str  # tracker organization
    group_id: str

    def calls(self) -> list[dict[str, Any]]:
        """Requests the sandbox received for this organization."""
        return [c for c in self.sandbox.calls if c["path"].startswith(f"/{self.org}/")]

    def creates(self) -> list[dict[str, Any]]:
        return [c for c in self.calls() if c["method"] == "POST" and "/_apis/wit/workitems/" in c["path"]]

    def body(self, **extra: Any) -> dict[str, Any]:
        return {"group_id": self.group_id, "project": self.project_id, "work_item_type": "Bug",
                "title": "Hello", "description": "Fix this.", **extra}

    def create(self, svc: Services | None = None, **extra: Any) -> Any:
        return workitems.create_issue(svc or self.svc, self.account_id, self.org_id, self.body(**extra))

    def group(self) -> GroupState:
        state = self.svc.store.groups.read(self.org_id, self.group_id)
        assert state is not None
        return state

    def claim(self, creation: Creation) -> None:
        """Write the group's creation claim for the integration, as an earlier request left it."""
        self.svc.store.groups.change(self.org_id, self.group_id, lambda _: GroupChange(creations=[creation]))

    @property
    def marker(self) -> str:
        return wi.marker(self.account_id, self.org_id, self.group_id)

    def marked_items(self) -> list[int]:
        """Ids of the sandbox work items carrying this group's marker tag."""
        with self.sandbox.state.lock:
            items = self.sandbox.state.org(self.org).work_items
            return sorted(i for i, item in items.items()
                          if self.marker in str(item.fields.get("System.Tags") or "").split("; "))


@pytest.fixture
def ado(svc: Services, sandbox_ado: Any, uid: str) -> Setup:
    org = f"wi{uid}"
    account_id = sandbox_ado.add_organization(org)
    project_id = sandbox_ado.add_project(org, "Fabrikam")
    token = sandbox_ado.issue_token(org)
    integrations = svc.store.integrations
    integrations.save(Integration(account_id=account_id, account_name=org, domain_name=sandbox_ado.instance_url(org)))
    integrations.save_identity(account_id, Identity(kind="oauth", access_token=token["access_token"],
                                                    refresh_token=token["refresh_token"],
                                                    expires_at=token["expires_at"]))
    integrations.save_org_link(OrgLink(account_id=account_id, org_id=uid))
    svc.store.groups.put(Group(org_id=uid, group_id="g1", project_id="p1", title="Boom"))
    return Setup(svc, sandbox_ado, org, account_id, project_id, uid, "g1")


class LinkingFails(GroupStore):
    """Groups whose `add_link` finds storage down (after Azure DevOps created the work item)."""

    def add_link(self, link: Link, *, new_work_item: bool = False) -> GroupState:
        raise StorageUnavailable("storage did not answer")


def linking_fails(svc: Services) -> Services:
    return replace(svc, store=replace(svc.store, groups=LinkingFails(svc.store.integrations, svc.clock)))


# --- create --------------------------------------------------------------------------------------


def test_create_sends_patch_document_and_links_group(ado: Setup) -> None:
    """Reference item 39 (+ 45): the create call, its body, and the answer."""
    reply = ado.create(work_item_type="Microsoft.VSTS.WorkItemTypes.Task")

    key = reply.body["key"]
    assert reply.status == 200
    assert reply.body == {
        "key": key,
        "title": "Hello",
        "description": "Fix this.",
        "url": f"{ado.sandbox.instance_url(ado.org)}_workitems/edit/{key}",
        "metadata": {"display_name": f"Fabrikam#{key}"},
    }
    create = [c for c in ado.calls() if c["method"] in ("POST", "PATCH")]
    assert len(create) == 1
    assert create[0]["path"] == f"/{ado.org}/{ado.project_id}/_apis/wit/workitems/$Task"
    assert create[0]["headers"]["Content-Type"] == "application/json-patch+json"
    assert json.loads(create[0]["body"]) == [
        {"op": "add", "path": "/fields/System.Title", "value": "Hello"},
        {"op": "add", "path": "/fields/System.Description", "value": "<p>Fix this.</p>"},
        {"op": "add", "path": "/fields/System.History", "value": "<p>Fix this.</p>"},
        {"op": "add", "path": "/fields/System.Tags", "value": ado.marker},
    ]
    item = ado.sandbox.work_item(ado.org, int(key))
    assert item["fields"]["System.WorkItemType"] == "Task"
    state = ado.group()
    link = state.links[(ado.account_id, key)]
    assert (link.project_id, link.work_item_type, link.display_name) == (ado.project_id, "Task", f"Fabrikam#{key}")
    assert state.creations == {}, "linking ended the creation claim"
    # The link knows the revision it was created at, so the first push is already conditional.
    assert link.state_rev == item["rev"] and link.state_value == item["fields"]["System.State"]


def test_created_work_item_carries_the_group_marker_tag(ado: Setup) -> None:
    reply = ado.create()

    assert ado.marked_items() == [int(reply.body["key"])]
    assert ado.marker != wi.marker(ado.account_id, ado.org_id, "g2")


def test_type_reference_lookup_is_cached(ado: Setup) -> None:
    body = ado.body(work_item_type="Microsoft.VSTS.WorkItemTypes.UserStory")
    first = workitems.create_issue(ado.svc, ado.account_id, ado.org_id, body)
    ado.svc.store.groups.put(Group(org_id=ado.org_id, group_id="g2", project_id="p1", title="Other"))
    ado.sandbox.reset_calls()

    workitems.create_issue(ado.svc, ado.account_id, ado.org_id, {**body, "group_id": "g2"})

    assert [c["method"] for c in ado.calls()] == ["POST"]  # no second categories call
    assert ado.calls()[0]["path"].endswith("/$User Story")
    assert ado.sandbox.work_item(ado.org, int(first.body["key"]))["fields"]["System.WorkItemType"] == "User Story"


def test_create_with_area_iteration_tags_and_custom_fields(ado: Setup) -> None:
    reply = ado.create(area_path="Fabrikam\\Team A", iteration_path="Fabrikam\\Sprint 7", tags=["sentry", "prod"],
                       fields={"Custom.Severity": "2 - High", "Microsoft.VSTS.Common.Priority": 1})

    fields = ado.sandbox.work_item(ado.org, int(reply.body["key"]))["fields"]
    assert fields["System.AreaPath"] == "Fabrikam\\Team A"
    assert fields["System.IterationPath"] == "Fabrikam\\Sprint 7"
    assert fields["System.Tags"] == f"sentry; prod; {ado.marker}"
    assert fields["Custom.Severity"] == "2 - High"
    assert fields["Microsoft.VSTS.Common.Priority"] == 1
    assert reply.body["metadata"]["display_name"] == f"Fabrikam\\Team A#{reply.body['key']}"


def test_required_field_rule_is_422_naming_the_field(ado: Setup) -> None:
    ado.sandbox.set_required_fields(ado.org, "Fabrikam", ["Microsoft.VSTS.Common.Severity"])

    with pytest.raises(BundleError) as caught:
        ado.create()

    assert caught.value.status == 422
    assert "Severity" in caught.value.message and "TF401320" in caught.value.message
    assert getattr(caught.value, "field", None) == "Severity"
    state = ado.group()
    assert not state.links
    assert state.creations == {}, "a refused create leaves no claim behind"

    reply = ado.create(fields={"Microsoft.VSTS.Common.Severity": "3 - Medium"})
    assert reply.status == 200


def test_invalid_area_path_is_422_naming_area_path(ado: Setup) -> None:
    with pytest.raises(BundleError) as caught:
        ado.create(area_path="Elsewhere\\Team")
    assert caught.value.status == 422 and getattr(caught.value, "field", None) == "area_path"


def test_second_create_returns_existing_link_without_a_second_work_item(ado: Setup) -> None:
    first = ado.create()
    ado.sandbox.reset_calls()

    second = ado.create(title="Hello again")

    assert second.status == 200
    assert second.body == first.body
    assert ado.calls() == []
    with pytest.raises(Exception, match="TF401232"):
        ado.sandbox.work_item(ado.org, int(first.body["key"]) + 1)


def test_concurrent_create_for_the_same_group_is_409(ado: Setup) -> None:
    ado.claim(Creation(ado.account_id, started=ado.svc.clock()))  # another request is creating it

    with pytest.raises(Conflict):
        ado.create()

    assert not ado.creates(), "no work item was created"
    ado.svc.store.groups.change(ado.org_id, ado.group_id,
                                lambda _: GroupChange(ended_creations=[ado.account_id]))
    assert ado.create().status == 200


def test_claim_left_by_a_request_that_died_before_asking_ado_expires(ado: Setup) -> None:
    ado.claim(Creation(ado.account_id, started=ado.svc.clock() - workitems.CREATION_LEASE - 1))

    reply = ado.create()

    assert reply.status == 200
    assert [c["method"] for c in ado.calls()] == ["POST"], "not attempted: no marker lookup, one create"
    assert ado.marked_items() == [int(reply.body["key"])]


def test_claim_is_marked_attempted_before_azure_devops_is_asked(ado: Setup) -> None:
    seen: list[Creation | None] = []

    def create_work_item(real: Callable[..., Any], *args: Any) -> Any:
        seen.append(ado.group().creations.get(ado.account_id))
        return real(*args)

    svc = replace(ado.svc, ado=Intercepted(ado.svc.ado, create_work_item=create_work_item))
    reply = ado.create(svc)

    (claim,) = seen
    assert claim is not None and claim.attempted and claim.key is None
    assert reply.status == 200 and ado.group().creations == {}


def test_create_that_failed_before_linking_is_linked_on_retry_not_duplicated(ado: Setup) -> None:
    with pytest.raises(StorageUnavailable):
        ado.create(linking_fails(ado.svc))
    claim = ado.group().creations[ado.account_id]
    assert claim.attempted and claim.key is not None, "the id was kept as soon as it was known"

    reply = ado.create()

    assert len(ado.creates()) == 1, "the retry linked the work item the first attempt created"
    assert list(ado.group().links) == [(ado.account_id, reply.body["key"])]
    assert reply.body["key"] == claim.key


def test_resumed_create_links_the_work_item_as_it_is_not_as_the_retry_asks(ado: Setup) -> None:
    with pytest.raises(StorageUnavailable):
        ado.create(linking_fails(ado.svc), title="First")

    other_project = ado.sandbox.add_project(ado.org, "Other")
    reply = ado.create(title="Second", project=other_project)

    link = ado.group().links[(ado.account_id, reply.body["key"])]
    assert (link.title, link.project_id) == ("First", ado.project_id)
    assert len(ado.creates()) == 1


def test_create_recorded_for_a_work_item_deleted_since_creates_a_new_one(ado: Setup) -> None:
    # An attempt created #987654, which is gone now.
    ado.claim(Creation(ado.account_id, started=ado.svc.clock(), attempted=True, key="987654"))

    reply = ado.create()

    assert reply.status == 200 and reply.body["key"] != "987654"
    assert ado.sandbox.work_item(ado.org, int(reply.body["key"]))["fields"]["System.Title"] == "Hello"


class MarkerLookup:
    """A stub of WIQL (`/_apis/wit/wiql`) answering from the sandbox's work items and their tags."""

    def __init__(self, ado: Setup) -> None:
        self.ado = ado
        self.queries: list[str] = []

    def __call__(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        query = json.loads(request.body or b"{}")["query"]
        self.queries.append(query)
        tag = re.search(r"\[System\.Tags\] CONTAINS '([^']+)'", query)
        assert tag is not None and tag.group(1) == self.ado.marker
        items = [{"id": i, "url": f"{self.ado.sandbox.instance_url(self.ado.org)}_apis/wit/workItems/{i}"}
                 for i in self.ado.marked_items()]
        return 200, {}, json.dumps({"queryType": "flat", "workItems": items})


@dataclass
class Stubbed:
    rsps: responses.RequestsMock
    lookup: MarkerLookup


@pytest.fixture
def wiql(ado: Setup) -> Iterator[Stubbed]:
    """`responses` with WIQL stubbed by a `MarkerLookup`; every other call reaches the sandbox and Azurite."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_passthru(re.compile(".*"))
        lookup = MarkerLookup(ado)
        rsps.add_callback(responses.POST, re.compile(r".*/_apis/wit/wiql(\?.*)?$"), callback=lookup)
        yield Stubbed(rsps, lookup)


def test_retry_after_a_create_with_no_answer_finds_the_work_item_by_its_marker(ado: Setup, wiql: Stubbed) -> None:
    """Azure DevOps created the work item but its answer was lost: the retry links it, never a second one."""

    def created_but_unanswered(request: requests.PreparedRequest) -> Exception:
        project = request.path_url.split("/")[2]
        ado.sandbox.state.create_work_item(ado.org, project, "Bug", json.loads(request.body or b"[]"))
        return requests.exceptions.ReadTimeout("the answer never came")

    lost = wiql.rsps.add_callback(responses.POST, re.compile(r".*/_apis/wit/workitems/\$Bug.*"),
                             callback=created_but_unanswered)
    with pytest.raises(AdoUnavailable):
        ado.create()
    (created,) = ado.marked_items()
    claim = ado.group().creations[ado.account_id]
    assert claim.attempted and claim.key is None and not ado.group().links
    wiql.rsps.remove(lost)

    reply = ado.create()

    assert reply.status == 200 and reply.body["key"] == str(created)
    assert ado.marked_items() == [created], "no second work item"
    assert not ado.creates(), "the retry did not ask Azure DevOps to create again"
    assert len(wiql.lookup.queries) == 1
    assert list(ado.group().links) == [(ado.account_id, str(created))] and ado.group().creations == {}


def test_retry_after_a_create_that_never_reached_ado_creates_it_once(ado: Setup, wiql: Stubbed) -> None:
    ado.sandbox.inject_fault("drop", path_contains="/_apis/wit/workitems/")
    try:
        with pytest.raises(AdoUnavailable):
            ado.create()
    finally:
        ado.sandbox.clear_faults()
    assert ado.marked_items() == [] and ado.group().creations[ado.account_id].attempted

    reply = ado.create()

    assert len(wiql.lookup.queries) == 1, "the marker was looked up before creating"
    assert ado.marked_items() == [int(reply.body["key"])]
    assert list(ado.group().links) == [(ado.account_id, reply.body["key"])]


def test_raw_html_in_description_is_escaped(ado: Setup) -> None:
    text = "<script>alert(1)</script>\n\n**bold** <b>x</b> & [l](javascript:alert(2))\n\n> quoted"
    reply = ado.create(description=text)

    fields = ado.sandbox.work_item(ado.org, int(reply.body["key"]))["fields"]
    html = fields["System.Description"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html and "<b>" not in html and "javascript:" not in html
    assert "<strong>bold</strong>" in html and "&lt;b&gt;x&lt;/b&gt; &amp;" in html
    assert "<blockquote>" in html
    assert reply.body["description"] == text


def test_long_title_is_cut_to_128_characters(ado: Setup) -> None:
    title = "x" * 120 + "abcdefghij" * 3
    reply = ado.create(title=title)

    sent = ado.sandbox.work_item(ado.org, int(reply.body["key"]))["fields"]["System.Title"]
    assert sent == title[:125] + "..."
    assert len(sent) == 128 and reply.body["title"] == sent


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"project": None}, 422, "project"),
        ({"work_item_type": ""}, 422, "work_item_type"),
        ({"title": None}, 422, "title"),
        ({"group_id": None}, 422, "group_id"),
        ({"group_id": "missing"}, 404, None),
        ({"tags": ["a;b"]}, 422, "tags"),
        ({"fields": {"not a reference": "x"}}, 422, "fields"),
        ({"fields": {"Custom.Thing": {"nested": 1}}}, 422, "fields"),
        ({"fields": {"System.Title": "x"}}, 422, "fields"),
        ({"area_path": 5}, 422, "area_path"),
    ],
)
def test_create_validates_before_any_ado_call(ado: Setup, change: dict[str, Any], status: int,
                                              field: str | None) -> None:
    body = ado.body()
    body.update(change)
    before = len(ado.sandbox.calls)

    with pytest.raises(BundleError) as caught:
        workitems.create_issue(ado.svc, ado.account_id, ado.org_id, {k: v for k, v in body.items() if v is not None})

    assert caught.value.status == status
    if field:
        assert getattr(caught.value, "field", None) == field
        assert field in caught.value.message
    assert len(ado.sandbox.calls) == before


def test_unknown_integration_or_unlinked_org_is_404_before_any_call(ado: Setup, uid: str) -> None:
    before = len(ado.sandbox.calls)
    with pytest.raises(NotFound):
        workitems.create_issue(ado.svc, f"nope-{uid}", ado.org_id, ado.body())
    with pytest.raises(NotFound, match="not linked"):
        workitems.create_issue(ado.svc, ado.account_id, f"other-{uid}", ado.body())
    ado.svc.store.integrations.save_org_link(OrgLink(account_id=ado.account_id, org_id=ado.org_id,
                                                     status="disabled"))
    with pytest.raises(NotFound):
        ado.create()
    assert len(ado.sandbox.calls) == before


def test_refused_credential_is_502_without_the_secret(ado: Setup) -> None:
    ado.svc.store.integrations.save_identity(ado.account_id, Identity(kind="pat", access_token="wrong-pat-value-123"))

    with pytest.raises(AdoAuthError) as caught:
        ado.create()

    assert caught.value.status == 502
    assert "credential" in caught.value.message
    assert "wrong-pat-value-123" not in caught.value.message


def test_refused_refresh_is_502(ado: Setup) -> None:
    ado.svc.store.integrations.save_identity(ado.account_id, Identity(kind="oauth", access_token="expired",
                                                                      refresh_token="bogus", expires_at=1.0))
    with pytest.raises(IdentityInvalid) as caught:
        ado.create()
    assert caught.value.status == 502


def test_throttled_create_is_503_with_retry_after(ado: Setup) -> None:
    ado.sandbox.inject_fault("429", path_contains=f"/{ado.org}/", retry_after=7)
    try:
        with pytest.raises(AdoThrottled) as caught:
            ado.create()
    finally:
        ado.sandbox.clear_faults()

    reply = error_reply(caught.value)
    assert reply.status == 503 and reply.headers["Retry-After"] == "7"
    assert not ado.group().links


# --- link and search -----------------------------------------------------------------------------


def test_link_reads_work_item_and_resolves_project_once(ado: Setup) -> None:
    """Reference item 41 (get issue), plus the cached project id."""
    item = ado.sandbox.create_work_item(ado.org, "Fabrikam", title="Existing", description="<p>Broken</p>")
    other = ado.sandbox.create_work_item(ado.org, "Fabrikam", title="Second")
    ado.svc.store.groups.put(Group(org_id=ado.org_id, group_id="g2", project_id="p1", title="Other"))
    ado.sandbox.reset_calls()

    reply = workitems.link_issue(ado.svc, ado.account_id, ado.org_id, {"group_id": "g1", "key": str(item["id"])})
    workitems.link_issue(ado.svc, ado.account_id, ado.org_id, {"group_id": "g2", "key": other["id"]})

    key = str(item["id"])
    assert reply.body == {
        "key": key,
        "title": "Existing",
        "description": "<p>Broken</p>",
        "url": f"{ado.sandbox.instance_url(ado.org)}_workitems/edit/{key}",
        "metadata": {"display_name": f"Fabrikam#{key}"},
    }
    gets = [c for c in ado.calls() if "/wit/workitems/" in c["path"].lower()]
    assert len(gets) == 2 and gets[0]["headers"]["Content-Type"] == "application/json"
    assert len([c for c in ado.calls() if c["path"].endswith("/_apis/projects")]) == 1
    for group_id in ("g1", "g2"):
        state = ado.svc.store.groups.read(ado.org_id, group_id)
        assert state is not None
        (link,) = state.links.values()
        assert link.project_id == ado.project_id and link.work_item_type == "Bug"
    # The webhook finds both groups from the work item ids.
    assert ado.svc.store.integrations.groups_linked_to(ado.account_id, key) == [(ado.org_id, "g1")]


def test_link_to_missing_work_item_is_422(ado: Setup) -> None:
    with pytest.raises(BundleError) as caught:
        workitems.link_issue(ado.svc, ado.account_id, ado.org_id, {"group_id": "g1", "key": "987654"})
    assert caught.value.status == 422 and "987654" in caught.value.message
    with pytest.raises(InvalidInput):
        workitems.link_issue(ado.svc, ado.account_id, ado.org_id, {"group_id": "g1", "key": "12; drop"})


def test_search_returns_label_value_pairs(ado: Setup) -> None:
    """Reference item 58."""
    first = ado.sandbox.create_work_item(ado.org, "Fabrikam", title="Title")
    ado.sandbox.create_work_item(ado.org, "Fabrikam", title="Unrelated")
    ado.sandbox.reset_calls()

    reply = workitems.search(ado.svc, ado.account_id, {"field": "externalIssue", "query": "title"})

    assert reply.body == [{"label": f"({first['id']}) Title", "value": str(first["id"])}]
    (call,) = ado.calls()
    assert call["method"] == "POST" and call["path"] == f"/{ado.org}/_apis/search/workitemsearchresults"


@pytest.mark.parametrize(
    ("params", "status", "detail"),
    [
        ({"query": "x"}, 400, "field is required"),
        ({"field": "externalIssue"}, 400, "query is required"),
        ({"field": "externalIssue", "query": " "}, 400, "query is required"),
        ({"field": "other", "query": "x"}, 400, "Invalid field"),
    ],
)
def test_search_rejects_bad_params(ado: Setup, params: dict[str, str], status: int, detail: str) -> None:
    with pytest.raises(BundleError) as caught:
        workitems.search(ado.svc, ado.account_id, params)
    assert error_reply(caught.value).body == {"detail": detail}
    assert caught.value.status == status


def test_search_unknown_integration_is_404(svc: Services, uid: str) -> None:
    with pytest.raises(NotFound):
        workitems.search(svc, f"missing-{uid}", {"field": "externalIssue", "query": "x"})


def test_type_names_from_categories() -> None:
    categories = [{"defaultWorkItemType": {"name": "Bug", "url": "https://x/_apis/wit/workItemTypes/Bug"},
                   "workItemTypes": [{"name": "Product Backlog Item",
                                      "url": "https://x/_apis/wit/workItemTypes/Microsoft.VSTS.WorkItemTypes.PBI"}]}]
    names = wi.type_names(categories)
    assert names["microsoft.vsts.workitemtypes.pbi"] == "Product Backlog Item"
    assert names["bug"] == "Bug"
