"""Create, link and search work items against the HTTPS sandbox ADO and a real Azurite."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

from shared.adapters import store
from shared.adapters.http import error_reply
from shared.core.errors import (
    AdoAuthError,
    AdoThrottled,
    BundleError,
    Conflict,
    IdentityInvalid,
    InvalidInput,
    NotFound,
    StorageUnavailable,
)
from shared.core.models import Group, Identity, Integration, OrgLink
from shared.flows import workitems

pytestmark = pytest.mark.usefixtures("azurite")


@dataclass
class Setup:
    sandbox: Any
    org: str  # sandbox organization name (= account name)
    account_id: str
    project_id: str
    org_id: str  # tracker organization
    group_id: str

    def calls(self) -> list[dict[str, Any]]:
        """Requests the sandbox received for this organization."""
        return [c for c in self.sandbox.calls if c["path"].startswith(f"/{self.org}/")]

    def body(self, **extra: Any) -> dict[str, Any]:
        return {"group_id": self.group_id, "project": self.project_id, "work_item_type": "Bug",
                "title": "Hello", "description": "Fix this.", **extra}


@pytest.fixture
def ado(sandbox_ado: Any, uid: str) -> Setup:
    org = f"wi{uid}"
    account_id = sandbox_ado.add_organization(org)
    project_id = sandbox_ado.add_project(org, "Fabrikam")
    token = sandbox_ado.issue_token(org)
    store.save_integration(Integration(account_id=account_id, account_name=org,
                                       domain_name=sandbox_ado.instance_url(org)))
    store.save_identity(account_id, Identity(kind="oauth", access_token=token["access_token"],
                                             refresh_token=token["refresh_token"], expires_at=token["expires_at"]))
    store.save_org_link(OrgLink(account_id=account_id, org_id=uid))
    store.put_group(Group(org_id=uid, group_id="g1", project_id="p1", title="Boom"))
    return Setup(sandbox_ado, org, account_id, project_id, uid, "g1")


def test_create_sends_patch_document_and_links_group(ado: Setup) -> None:
    """Reference item 39 (+ 45): the create call, its body, and the answer."""
    reply = workitems.create_issue(ado.account_id, ado.org_id, ado.body(
        work_item_type="Microsoft.VSTS.WorkItemTypes.Task"))

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
    ]
    assert ado.sandbox.work_item(ado.org, int(key))["fields"]["System.WorkItemType"] == "Task"
    state = store.read_group(ado.org_id, ado.group_id)
    assert state is not None
    link = state.links[(ado.account_id, key)]
    assert (link.project_id, link.work_item_type, link.display_name) == (ado.project_id, "Task", f"Fabrikam#{key}")


def test_type_reference_lookup_is_cached(ado: Setup) -> None:
    body = ado.body(work_item_type="Microsoft.VSTS.WorkItemTypes.UserStory")
    first = workitems.create_issue(ado.account_id, ado.org_id, body)
    store.put_group(Group(org_id=ado.org_id, group_id="g2", project_id="p1", title="Other"))
    ado.sandbox.reset_calls()

    workitems.create_issue(ado.account_id, ado.org_id, {**body, "group_id": "g2"})

    assert [c["method"] for c in ado.calls()] == ["POST"]  # no second categories call
    assert ado.calls()[0]["path"].endswith("/$User Story")
    assert ado.sandbox.work_item(ado.org, int(first.body["key"]))["fields"]["System.WorkItemType"] == "User Story"


def test_create_with_area_iteration_tags_and_custom_fields(ado: Setup) -> None:
    reply = workitems.create_issue(ado.account_id, ado.org_id, ado.body(
        area_path="Fabrikam\\Team A", iteration_path="Fabrikam\\Sprint 7", tags=["sentry", "prod"],
        fields={"Custom.Severity": "2 - High", "Microsoft.VSTS.Common.Priority": 1}))

    fields = ado.sandbox.work_item(ado.org, int(reply.body["key"]))["fields"]
    assert fields["System.AreaPath"] == "Fabrikam\\Team A"
    assert fields["System.IterationPath"] == "Fabrikam\\Sprint 7"
    assert fields["System.Tags"] == "sentry; prod"
    assert fields["Custom.Severity"] == "2 - High"
    assert fields["Microsoft.VSTS.Common.Priority"] == 1
    assert reply.body["metadata"]["display_name"] == f"Fabrikam\\Team A#{reply.body['key']}"


def test_required_field_rule_is_422_naming_the_field(ado: Setup) -> None:
    ado.sandbox.set_required_fields(ado.org, "Fabrikam", ["Microsoft.VSTS.Common.Severity"])

    with pytest.raises(BundleError) as caught:
        workitems.create_issue(ado.account_id, ado.org_id, ado.body())

    assert caught.value.status == 422
    assert "Severity" in caught.value.message and "TF401320" in caught.value.message
    assert getattr(caught.value, "field", None) == "Severity"
    state = store.read_group(ado.org_id, ado.group_id)
    assert state is not None and not state.links

    reply = workitems.create_issue(ado.account_id, ado.org_id, ado.body(
        fields={"Microsoft.VSTS.Common.Severity": "3 - Medium"}))
    assert reply.status == 200


def test_invalid_area_path_is_422_naming_area_path(ado: Setup) -> None:
    with pytest.raises(BundleError) as caught:
        workitems.create_issue(ado.account_id, ado.org_id, ado.body(area_path="Elsewhere\\Team"))
    assert caught.value.status == 422 and getattr(caught.value, "field", None) == "area_path"


def test_second_create_returns_existing_link_without_a_second_work_item(ado: Setup) -> None:
    first = workitems.create_issue(ado.account_id, ado.org_id, ado.body())
    ado.sandbox.reset_calls()

    second = workitems.create_issue(ado.account_id, ado.org_id, ado.body(title="Hello again"))

    assert second.status == 200
    assert second.body == first.body
    assert ado.calls() == []
    with pytest.raises(Exception, match="TF401232"):
        ado.sandbox.work_item(ado.org, int(first.body["key"]) + 1)


def test_concurrent_create_for_the_same_group_is_409(ado: Setup) -> None:
    held = store.begin_creation(ado.account_id, ado.org_id, ado.group_id)
    assert held is not None
    with pytest.raises(Conflict):
        workitems.create_issue(ado.account_id, ado.org_id, ado.body())
    assert not [c for c in ado.calls() if c["method"] == "POST"], "no work item was created"
    store.end_creation(held)
    assert workitems.create_issue(ado.account_id, ado.org_id, ado.body()).status == 200


def test_create_that_failed_before_linking_is_linked_on_retry_not_duplicated(
        ado: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    real_add_link = store.add_link

    def storage_down(link: Any) -> None:
        raise StorageUnavailable("storage did not answer")

    monkeypatch.setattr(store, "add_link", storage_down)
    with pytest.raises(StorageUnavailable):
        workitems.create_issue(ado.account_id, ado.org_id, ado.body())
    monkeypatch.setattr(store, "add_link", real_add_link)

    reply = workitems.create_issue(ado.account_id, ado.org_id, ado.body())

    creates = [c for c in ado.calls() if c["method"] == "POST" and "workitems" in c["path"]]
    assert len(creates) == 1, "the retry linked the work item the first attempt created"
    state = store.read_group(ado.org_id, ado.group_id)
    assert state is not None and list(state.links) == [(ado.account_id, reply.body["key"])]


def test_resumed_create_links_the_work_item_as_it_is_not_as_the_retry_asks(
        ado: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    real_add_link = store.add_link
    monkeypatch.setattr(store, "add_link", lambda link: (_ for _ in ()).throw(StorageUnavailable("down")))
    with pytest.raises(StorageUnavailable):
        workitems.create_issue(ado.account_id, ado.org_id, ado.body(title="First"))
    monkeypatch.setattr(store, "add_link", real_add_link)

    other_project = ado.sandbox.add_project(ado.org, "Other")
    reply = workitems.create_issue(ado.account_id, ado.org_id, ado.body(title="Second", project=other_project))

    state = store.read_group(ado.org_id, ado.group_id)
    assert state is not None
    link = state.links[(ado.account_id, reply.body["key"])]
    assert (link.title, link.project_id) == ("First", ado.project_id)


def test_create_recorded_for_a_work_item_deleted_since_creates_a_new_one(ado: Setup) -> None:
    held = store.begin_creation(ado.account_id, ado.org_id, ado.group_id)
    assert held is not None
    store.record_creation(held, "987654")  # an attempt created #987654, which is gone now

    reply = workitems.create_issue(ado.account_id, ado.org_id, ado.body())

    assert reply.status == 200 and reply.body["key"] != "987654"
    assert ado.sandbox.work_item(ado.org, int(reply.body["key"]))["fields"]["System.Title"] == "Hello"


def test_raw_html_in_description_is_escaped(ado: Setup) -> None:
    text = "<script>alert(1)</script>\n\n**bold** <b>x</b> & [l](javascript:alert(2))\n\n> quoted"
    reply = workitems.create_issue(ado.account_id, ado.org_id, ado.body(description=text))

    fields = ado.sandbox.work_item(ado.org, int(reply.body["key"]))["fields"]
    html = fields["System.Description"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html and "<b>" not in html and "javascript:" not in html
    assert "<strong>bold</strong>" in html and "&lt;b&gt;x&lt;/b&gt; &amp;" in html
    assert "<blockquote>" in html
    assert reply.body["description"] == text


def test_long_title_is_cut_to_128_characters(ado: Setup) -> None:
    title = "x" * 120 + "abcdefghij" * 3
    reply = workitems.create_issue(ado.account_id, ado.org_id, ado.body(title=title))

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
        workitems.create_issue(ado.account_id, ado.org_id, {k: v for k, v in body.items() if v is not None})

    assert caught.value.status == status
    if field:
        assert getattr(caught.value, "field", None) == field
        assert field in caught.value.message
    assert len(ado.sandbox.calls) == before


def test_unknown_integration_or_unlinked_org_is_404_before_any_call(ado: Setup, uid: str) -> None:
    before = len(ado.sandbox.calls)
    with pytest.raises(NotFound):
        workitems.create_issue(f"nope-{uid}", ado.org_id, ado.body())
    with pytest.raises(NotFound, match="not linked"):
        workitems.create_issue(ado.account_id, f"other-{uid}", ado.body())
    store.save_org_link(OrgLink(account_id=ado.account_id, org_id=ado.org_id, status="disabled"))
    with pytest.raises(NotFound):
        workitems.create_issue(ado.account_id, ado.org_id, ado.body())
    assert len(ado.sandbox.calls) == before


def test_refused_credential_is_502_without_the_secret(ado: Setup) -> None:
    store.save_identity(ado.account_id, Identity(kind="pat", access_token="wrong-pat-value-123"))

    with pytest.raises(AdoAuthError) as caught:
        workitems.create_issue(ado.account_id, ado.org_id, ado.body())

    assert caught.value.status == 502
    assert "credential" in caught.value.message
    assert "wrong-pat-value-123" not in caught.value.message


def test_refused_refresh_is_502(ado: Setup) -> None:
    store.save_identity(ado.account_id, Identity(kind="oauth", access_token="expired", refresh_token="bogus",
                                                 expires_at=1.0))
    with pytest.raises(IdentityInvalid) as caught:
        workitems.create_issue(ado.account_id, ado.org_id, ado.body())
    assert caught.value.status == 502


def test_throttled_create_is_503_with_retry_after(ado: Setup) -> None:
    ado.sandbox.inject_fault("429", path_contains=f"/{ado.org}/", retry_after=7)
    try:
        with pytest.raises(AdoThrottled) as caught:
            workitems.create_issue(ado.account_id, ado.org_id, ado.body())
    finally:
        ado.sandbox.clear_faults()

    reply = error_reply(caught.value)
    assert reply.status == 503 and reply.headers["Retry-After"] == "7"
    state = store.read_group(ado.org_id, ado.group_id)
    assert state is not None and not state.links


def test_link_reads_work_item_and_resolves_project_once(ado: Setup) -> None:
    """Reference item 41 (get issue), plus the cached project id."""
    item = ado.sandbox.create_work_item(ado.org, "Fabrikam", title="Existing", description="<p>Broken</p>")
    other = ado.sandbox.create_work_item(ado.org, "Fabrikam", title="Second")
    store.put_group(Group(org_id=ado.org_id, group_id="g2", project_id="p1", title="Other"))
    ado.sandbox.reset_calls()

    reply = workitems.link_issue(ado.account_id, ado.org_id, {"group_id": "g1", "key": str(item["id"])})
    workitems.link_issue(ado.account_id, ado.org_id, {"group_id": "g2", "key": other["id"]})

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
        state = store.read_group(ado.org_id, group_id)
        assert state is not None
        (link,) = state.links.values()
        assert link.project_id == ado.project_id and link.work_item_type == "Bug"


def test_link_to_missing_work_item_is_422(ado: Setup) -> None:
    with pytest.raises(BundleError) as caught:
        workitems.link_issue(ado.account_id, ado.org_id, {"group_id": "g1", "key": "987654"})
    assert caught.value.status == 422 and "987654" in caught.value.message
    with pytest.raises(InvalidInput):
        workitems.link_issue(ado.account_id, ado.org_id, {"group_id": "g1", "key": "12; drop"})


def test_search_returns_label_value_pairs(ado: Setup) -> None:
    """Reference item 58."""
    first = ado.sandbox.create_work_item(ado.org, "Fabrikam", title="Title")
    ado.sandbox.create_work_item(ado.org, "Fabrikam", title="Unrelated")
    ado.sandbox.reset_calls()

    reply = workitems.search(ado.account_id, {"field": "externalIssue", "query": "title"})

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
        workitems.search(ado.account_id, params)
    assert error_reply(caught.value).body == {"detail": detail}
    assert caught.value.status == status


def test_search_unknown_integration_is_404(uid: str) -> None:
    with pytest.raises(NotFound):
        workitems.search(f"missing-{uid}", {"field": "externalIssue", "query": "x"})


def test_type_names_from_categories() -> None:
    categories = [{"defaultWorkItemType": {"name": "Bug", "url": "https://x/_apis/wit/workItemTypes/Bug"},
                   "workItemTypes": [{"name": "Product Backlog Item",
                                      "url": "https://x/_apis/wit/workItemTypes/Microsoft.VSTS.WorkItemTypes.PBI"}]}]
    names = workitems.type_names(categories)
    assert names["microsoft.vsts.workitemtypes.pbi"] == "Product Backlog Item"
    assert names["bug"] == "Bug"
