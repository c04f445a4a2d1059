"""The sandbox Azure DevOps behaves like the real one where the bundle depends on it.

Every test talks HTTPS to a real `SandboxAdo` on loopback through `requests`, trusting its CA.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from devhost.sandbox_ado import SandboxAdo
from tests.devhost.sandbox_client import (
    ACCOUNT_ID,
    FIXTURES,
    ORG,
    ROOT,
    Ado,
    Receiver,
    basic,
    running_ado,
    running_receiver,
    subscribe,
    title_op,
)


@pytest.fixture
def ado() -> Iterator[Ado]:
    yield from running_ado()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running_receiver()


# -- authentication and api-version ------------------------------------------------------------


def test_pat_and_bearer_token_are_accepted(ado: Ado) -> None:
    assert ado.get("_apis/projects").status_code == 200
    token = ado.sandbox.issue_token(ORG)
    resp = requests.get(
        ado.url("_apis/projects"),
        params={"api-version": "7.1"},
        headers={"Authorization": f"Bearer {token['access_token']}"},
        verify=ado.sandbox.ca_pem_path,
        timeout=5,
    )
    assert resp.status_code == 200
    assert resp.json()["value"][0]["name"] == "Fabrikam"


def test_bad_credential_is_401_with_suppress_header_and_203_sign_in_page_without(ado: Ado) -> None:
    url, verify = ado.url("_apis/projects?api-version=7.1"), ado.sandbox.ca_pem_path
    suppressed = requests.get(
        url, headers={"Authorization": "Bearer nope", "X-TFS-FedAuthRedirect": "Suppress"}, verify=verify, timeout=5
    )
    assert suppressed.status_code == 401
    assert "TF400813" in suppressed.json()["message"]
    redirected = requests.get(url, headers={"Authorization": basic("wrong-pat")}, verify=verify, timeout=5)
    assert redirected.status_code == 203
    assert redirected.headers["Content-Type"].startswith("text/html")
    assert "Sign In" in redirected.text


def test_expired_or_foreign_tokens_are_rejected(ado: Ado) -> None:
    token = ado.sandbox.issue_token(ORG)
    ado.sandbox.expire_access_token(token["access_token"])
    ado.sandbox.add_organization("other")
    other = ado.sandbox.issue_token("other")
    for access in (token["access_token"], other["access_token"]):
        headers = {"Authorization": f"Bearer {access}", "X-TFS-FedAuthRedirect": "Suppress"}
        resp = ado.get("_apis/projects", headers=headers)
        assert resp.status_code == 401


def test_api_version_is_required_in_query_or_accept_header(ado: Ado) -> None:
    missing = ado.session.get(ado.url("_apis/projects"), timeout=5)
    assert missing.status_code == 400
    error = missing.json()
    assert error["$id"] == "1" and "api-version" in error["message"] and error["typeKey"]
    via_accept = ado.session.get(
        ado.url("_apis/projects"), headers={"Accept": "application/json; api-version=7.1"}, timeout=5
    )
    assert via_accept.status_code == 200


def test_requests_are_recorded_without_credentials(ado: Ado) -> None:
    ado.sandbox.reset_calls()
    ado.get("_apis/projects")
    (call,) = ado.sandbox.calls
    assert call["method"] == "GET" and call["path"] == f"/{ORG}/_apis/projects"
    assert call["query"] == {"api-version": "7.1"} and call["status"] == 200
    assert call["headers"]["Authorization"] == "Basic"
    assert ado.pat not in json.dumps(call)


# -- work items ---------------------------------------------------------------------------------


def test_create_work_item_with_literal_or_encoded_dollar(ado: Ado) -> None:
    created = ado.patch_doc("POST", "Fabrikam/_apis/wit/workitems/$Bug", title_op("Crash on save"))
    assert created.status_code == 200, created.text
    item = created.json()
    assert item["rev"] == 1
    assert item["fields"]["System.Title"] == "Crash on save"
    assert item["fields"]["System.TeamProject"] == "Fabrikam"
    assert item["fields"]["System.State"] == "New"
    assert item["_links"]["html"]["href"] == ado.url(f"Fabrikam/_workitems/edit/{item['id']}")

    by_id = ado.patch_doc("POST", f"{ado.project_id}/_apis/wit/workitems/%24User%20Story", title_op("Story"))
    assert by_id.status_code == 200, by_id.text
    assert by_id.json()["fields"]["System.WorkItemType"] == "User Story"

    fetched = ado.get(f"_apis/wit/workitems/{item['id']}").json()
    assert fetched["fields"]["System.Title"] == "Crash on save"
    assert ado.get("_apis/wit/workitems/999").status_code == 404


def test_create_rejects_wrong_content_type_and_unknown_type(ado: Ado) -> None:
    plain = ado.post("Fabrikam/_apis/wit/workitems/$Bug", title_op("x"))
    assert plain.status_code == 415
    unknown = ado.patch_doc("POST", "Fabrikam/_apis/wit/workitems/$Spaceship", title_op("x"))
    assert unknown.status_code == 404


def test_create_without_title_or_required_field_is_tf401320(ado: Ado) -> None:
    ops = [{"op": "add", "path": "/fields/System.Description", "value": "<p>no title</p>"}]
    no_title = ado.patch_doc("POST", "Fabrikam/_apis/wit/workitems/$Bug", ops)
    assert no_title.status_code == 400
    assert (
        "TF401320: Rule Error for field Title. Error code: Required, HasValues, LimitedToValues, "
        "AllowsOldValue, InvalidEmpty." in no_title.json()["message"]
    )
    ado.sandbox.set_required_fields(ORG, "Fabrikam", ["Custom.Customer"])
    missing = ado.patch_doc("POST", "Fabrikam/_apis/wit/workitems/$Bug", title_op("x"))
    assert missing.status_code == 400
    assert "TF401320: Rule Error for field Customer." in missing.json()["message"]
    ops = [*title_op("x"), {"op": "add", "path": "/fields/Custom.Customer", "value": "Contoso"}]
    ops.append({"op": "add", "path": "/fields/System.History", "value": "<p>line 1</p>\n<p>line 2</p>"})
    assert ado.patch_doc("POST", "Fabrikam/_apis/wit/workitems/$Bug", ops).status_code == 200


def test_patch_changes_fields_and_increments_rev(ado: Ado) -> None:
    wid = ado.sandbox.create_work_item(ORG, "Fabrikam", title="Broken")["id"]
    ops = [
        {"op": "replace", "path": "/fields/System.State", "value": "Active"},
        {"op": "replace", "path": "/fields/System.AssignedTo", "value": "jamal@example.com"},
    ]
    resp = ado.patch_doc("PATCH", f"_apis/wit/workitems/{wid}", ops)
    assert resp.status_code == 200, resp.text
    assert resp.json()["rev"] == 2
    fields = ado.get(f"_apis/wit/workitems/{wid}").json()["fields"]
    assert fields["System.State"] == "Active"
    assert fields["System.AssignedTo"] == "Jamal Hartnett <jamal@example.com>"

    by_name = [{"op": "replace", "path": "/fields/System.AssignedTo", "value": "Lauryn"}]
    assert ado.patch_doc("PATCH", f"_apis/wit/workitems/{wid}", by_name).json()["rev"] == 3
    unassign = [{"op": "remove", "path": "/fields/System.AssignedTo"}]
    after = ado.patch_doc("PATCH", f"_apis/wit/workitems/{wid}", unassign).json()
    assert after["rev"] == 4 and "System.AssignedTo" not in after["fields"]


def test_patch_rejects_unknown_state_identity_and_plain_json(ado: Ado) -> None:
    wid = ado.sandbox.create_work_item(ORG, "Fabrikam")["id"]
    bad_state = [{"op": "replace", "path": "/fields/System.State", "value": "Done-ish"}]
    assert ado.patch_doc("PATCH", f"_apis/wit/workitems/{wid}", bad_state).status_code == 400
    bad_user = [{"op": "replace", "path": "/fields/System.AssignedTo", "value": "ghost@example.com"}]
    assert ado.patch_doc("PATCH", f"_apis/wit/workitems/{wid}", bad_user).status_code == 400
    plain = ado.session.patch(ado.url(f"_apis/wit/workitems/{wid}?api-version=7.1"), json=bad_state, timeout=5)
    assert plain.status_code == 415
    assert ado.sandbox.work_item(ORG, wid)["rev"] == 1


def test_states_and_type_categories(ado: Ado) -> None:
    states = ado.get(f"{ado.project_id}/_apis/wit/workitemtypes/Bug/states").json()
    assert states["count"] == len(states["value"]) == 5
    assert {s["name"]: s["category"] for s in states["value"]} == {
        "New": "Proposed",
        "Active": "InProgress",
        "Resolved": "Resolved",
        "Closed": "Completed",
        "Removed": "Removed",
    }
    categories = ado.get("Fabrikam/_apis/wit/workitemtypecategories").json()["value"]
    bug = next(c for c in categories if c["referenceName"] == "Microsoft.BugCategory")
    assert bug["defaultWorkItemType"]["name"] == "Bug"
    assert [t["name"] for t in bug["workItemTypes"]] == ["Bug"]


def test_helper_changes_deliver_nothing_without_subscription_but_update_state(ado: Ado) -> None:
    wid = ado.sandbox.create_work_item(ORG, "Fabrikam", assigned_to="lauryn@example.com")["id"]
    item = ado.sandbox.update_work_item(ORG, wid, state="Resolved", assigned_to=None)
    assert item["rev"] == 2 and item["fields"]["System.State"] == "Resolved"
    assert "System.AssignedTo" not in item["fields"]
    assert ado.sandbox.wait_idle(2) and ado.sandbox.deliveries == []


# -- projects, repositories, users ------------------------------------------------------------


def test_projects_page_with_top_and_continuation_token(ado: Ado) -> None:
    for i in range(4):
        ado.sandbox.add_project(ORG, f"P{i}")
    names: list[str] = []
    params: dict[str, Any] = {"$top": 2}
    while True:
        resp = ado.get("_apis/projects", params=params)
        names += [p["name"] for p in resp.json()["value"]]
        token = resp.headers.get("x-ms-continuationtoken")
        if not token:
            break
        params = {"$top": 2, "continuationToken": token}
    assert names == ["Fabrikam", "P0", "P1", "P2", "P3"]
    skipped = ado.get("_apis/projects", params={"$top": 100, "$skip": 4}).json()
    assert [p["name"] for p in skipped["value"]] == ["P3"]
    one = ado.get(f"_apis/projects/{ado.project_id}").json()
    assert one["name"] == "Fabrikam" and one["state"] == "wellFormed"


def test_graph_users_are_paged_by_continuation_header(ado: Ado) -> None:
    emails: list[str] = []
    pages = 0
    params: dict[str, Any] = {}
    while True:
        resp = ado.get("_apis/graph/users", params={"api-version": "7.1-preview.1", **params})
        pages += 1
        emails += [u["mailAddress"] for u in resp.json()["value"]]
        token = resp.headers.get("X-MS-ContinuationToken")
        if not token:
            break
        params = {"continuationToken": token}
    assert pages == 2
    assert emails == ["jamal@example.com", "lauryn@example.com", "ftotten@example.com"]


def test_repositories_hidden_when_inaccessible_and_401_when_git_denied(ado: Ado) -> None:
    ado.sandbox.add_repository(ORG, "Fabrikam", "web")
    hidden = ado.sandbox.add_repository(ORG, "Fabrikam", "secret", accessible=False)
    listed = ado.get("_apis/git/repositories").json()["value"]
    assert [r["name"] for r in listed] == ["web"]
    assert listed[0]["project"]["name"] == "Fabrikam" and listed[0]["remoteUrl"]
    assert ado.get("Fabrikam/_apis/git/repositories/web").json()["name"] == "web"
    assert ado.get(f"Fabrikam/_apis/git/repositories/{hidden}").status_code == 404
    ado.sandbox.set_git_unauthorized(ORG)
    assert ado.get("_apis/git/repositories").status_code == 401


# -- lookup, search, oauth --------------------------------------------------------------------


def test_account_lookup_returns_the_instance_url(ado: Ado) -> None:
    url = ado.sandbox.lookup_url_template.format(account_id=ACCOUNT_ID)
    found = requests.get(url, verify=ado.sandbox.ca_pem_path, timeout=5)
    assert found.status_code == 200
    assert found.json()["locationUrl"] == ado.sandbox.instance_url(ORG)
    unknown = ado.sandbox.lookup_url_template.format(account_id="11111111-1111-4111-8111-111111111111")
    assert requests.get(unknown, verify=ado.sandbox.ca_pem_path, timeout=5).status_code == 404


def test_search_matches_title_substring_or_id(ado: Ado) -> None:
    first = ado.sandbox.create_work_item(ORG, "Fabrikam", title="Login page crashes")["id"]
    ado.sandbox.create_work_item(ORG, "Fabrikam", title="Slow dashboard")
    url = ado.sandbox.search_url_template.format(account_name=ORG)
    resp = ado.session.post(url, params={"api-version": "7.1"}, json={"searchText": "LOGIN", "$top": 10}, timeout=5)
    assert resp.status_code == 200
    body = resp.json()
    assert body["count"] == 1
    assert body["results"][0]["fields"]["system.id"] == str(first)
    assert body["results"][0]["fields"]["system.title"] == "Login page crashes"
    by_id = ado.session.post(url, params={"api-version": "7.1"}, json={"searchText": str(first)}, timeout=5)
    assert [r["fields"]["system.id"] for r in by_id.json()["results"]] == [str(first)]


def test_token_refresh_rotates_and_rejects_used_or_unknown_tokens(ado: Ado) -> None:
    ado.sandbox.set_oauth_client("client-1", "secret-1")
    pair = ado.sandbox.issue_token(ORG, expires_in=60)
    form = {
        "grant_type": "refresh_token",
        "refresh_token": pair["refresh_token"],
        "client_id": "client-1",
        "client_secret": "secret-1",
    }
    verify = ado.sandbox.ca_pem_path
    resp = requests.post(ado.sandbox.token_url, data=form, verify=verify, timeout=5)
    assert resp.status_code == 200
    fresh = resp.json()
    assert fresh["token_type"] == "Bearer" and fresh["expires_in"] > 0
    assert fresh["refresh_token"] != pair["refresh_token"]
    headers = {"Authorization": f"Bearer {fresh['access_token']}", "X-TFS-FedAuthRedirect": "Suppress"}
    assert ado.get("_apis/projects", headers=headers).status_code == 200

    reused = requests.post(ado.sandbox.token_url, data=form, verify=verify, timeout=5)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    wrong_secret = {**form, "refresh_token": fresh["refresh_token"], "client_secret": "nope"}
    assert requests.post(ado.sandbox.token_url, data=wrong_secret, verify=verify, timeout=5).status_code == 401
    assert "secret-1" not in json.dumps(ado.sandbox.calls)


def test_token_refresh_without_rotation_keeps_the_refresh_token(ado: Ado) -> None:
    ado.sandbox.set_oauth_client(None, None, rotate_refresh_tokens=False)
    pair = ado.sandbox.issue_token(ORG)
    form = {"grant_type": "refresh_token", "refresh_token": pair["refresh_token"]}
    for _ in range(2):
        resp = requests.post(ado.sandbox.token_url, data=form, verify=ado.sandbox.ca_pem_path, timeout=5)
        assert resp.status_code == 200 and resp.json()["refresh_token"] == pair["refresh_token"]


# -- fault injection --------------------------------------------------------------------------


def test_injected_429_carries_retry_after_then_recovers(ado: Ado) -> None:
    ado.sandbox.inject_fault("429", times=2, retry_after=7, path_contains="/_apis/projects")
    first, second, third = (ado.get("_apis/projects") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (429, 429, 200)
    assert first.headers["Retry-After"] == "7"
    assert ado.get("_apis/graph/users").status_code == 200


def test_injected_503_drop_and_timeout(ado: Ado) -> None:
    ado.sandbox.inject_fault("503")
    assert ado.get("_apis/projects").status_code == 503
    ado.sandbox.inject_fault("drop")
    with pytest.raises(requests.ConnectionError):
        ado.get("_apis/projects")
    ado.sandbox.timeout_seconds = 1.0
    ado.sandbox.inject_fault("timeout")
    with pytest.raises(requests.Timeout):
        ado.get("_apis/projects", timeout=0.3)
    assert ado.get("_apis/projects").status_code == 200


def test_fault_rate_is_reproducible_and_clearable(ado: Ado) -> None:
    def run() -> list[int]:
        with SandboxAdo() as other:
            client = Ado(other)
            other.inject_fault("500", rate=0.5)
            return [client.get("_apis/projects").status_code for _ in range(12)]

    first = run()
    assert first == run()
    assert set(first) == {200, 500}
    ado.sandbox.inject_fault("500", rate=1.0)
    assert ado.get("_apis/projects").status_code == 500
    ado.sandbox.clear_faults()
    assert ado.get("_apis/projects").status_code == 200


# -- service hooks ----------------------------------------------------------------------------


def test_subscription_crud_masks_password(ado: Ado) -> None:
    created = subscribe(
        ado,
        "https://sync.example.com/hooks/ado/t1",
        basicAuthUsername="ado",
        basicAuthPassword="s3cret",
        httpHeaders="shared-secret:abc",
    )
    assert created["status"] == "enabled" and len(created["id"]) == 36
    assert created["consumerInputs"]["basicAuthPassword"] == "********"
    fetched = ado.get(f"_apis/hooks/subscriptions/{created['id']}").json()
    assert fetched["consumerInputs"]["basicAuthPassword"] == "********"
    assert fetched["consumerInputs"]["httpHeaders"] == "shared-secret:abc"
    assert "s3cret" not in ado.get("_apis/hooks/subscriptions").text
    assert ado.sandbox.subscriptions(ORG)[0]["consumerInputs"]["basicAuthPassword"] == "s3cret"

    query = {"publisherId": "tfs", "eventType": "workitem.updated", "consumerId": "webHooks"}
    assert [s["id"] for s in ado.post("_apis/hooks/subscriptionsquery", query).json()["results"]] == [created["id"]]
    other = {**query, "eventType": "workitem.created"}
    assert ado.post("_apis/hooks/subscriptionsquery", other).json()["results"] == []
    assert ado.get("_apis/hooks/subscriptions").json()["count"] == 1

    deleted = ado.session.delete(ado.url(f"_apis/hooks/subscriptions/{created['id']}?api-version=7.1"), timeout=5)
    assert deleted.status_code == 204
    assert ado.get(f"_apis/hooks/subscriptions/{created['id']}").status_code == 404


@pytest.mark.parametrize(
    "change",
    [
        {"publisherId": "github"},
        {"eventType": "build.complete"},
        {"consumerId": "slack"},
        {"consumerActionId": "postMessage"},
        {"consumerInputs": {"url": "ftp://example.com/hook"}},
    ],
)
def test_subscription_create_validates_body(ado: Ado, change: dict[str, Any]) -> None:
    body = {
        "publisherId": "tfs",
        "eventType": "workitem.updated",
        "consumerId": "webHooks",
        "consumerActionId": "httpRequest",
        "consumerInputs": {"url": "https://example.com/hook"},
        **change,
    }
    assert ado.post("_apis/hooks/subscriptions", body).status_code == 400


def test_update_is_delivered_with_auth_headers_and_fixture_shape(ado: Ado, receiver: Receiver) -> None:
    sub = subscribe(
        ado,
        receiver.url,
        basicAuthUsername="ado",
        basicAuthPassword="hook-pass",
        httpHeaders="shared-secret:s3cr3t\nX-Tenant:t1",
    )
    wid = ado.sandbox.create_work_item(ORG, "Fabrikam", title="Crash", assigned_to="lauryn@example.com")["id"]
    ops = [
        {"op": "replace", "path": "/fields/System.State", "value": "Resolved"},
        {"op": "replace", "path": "/fields/System.AssignedTo", "value": "Jamal Hartnett <jamal@example.com>"},
    ]
    assert ado.patch_doc("PATCH", f"_apis/wit/workitems/{wid}", ops).status_code == 200
    assert ado.sandbox.wait_idle(5)

    (delivery,) = receiver.requests
    headers = {k.lower(): v for k, v in delivery["headers"].items()}
    assert headers["authorization"] == "Basic " + base64.b64encode(b"ado:hook-pass").decode()
    assert headers["shared-secret"] == "s3cr3t" and headers["x-tenant"] == "t1"
    event = delivery["json"]
    fixture = json.loads((FIXTURES / "workitem-updated-assigned.json").read_text())
    assert set(fixture) <= set(event)
    assert set(fixture["resource"]) <= set(event["resource"])
    assert set(fixture["resourceContainers"]) == set(event["resourceContainers"])
    assert event["eventType"] == "workitem.updated" and event["publisherId"] == "tfs"
    assert event["resourceVersion"] == "1.0" and event["subscriptionId"] == sub["id"]
    assert event["resourceContainers"]["collection"]["id"] == ACCOUNT_ID
    assert event["resourceContainers"]["project"]["id"] == ado.project_id
    resource = event["resource"]
    assert resource["workItemId"] == wid and resource["rev"] == 2
    assert resource["fields"]["System.State"] == {"oldValue": "New", "newValue": "Resolved"}
    assert resource["fields"]["System.AssignedTo"] == {
        "oldValue": "Lauryn <lauryn@example.com>",
        "newValue": "Jamal Hartnett <jamal@example.com>",
    }
    assert resource["fields"]["System.Rev"] == {"oldValue": 1, "newValue": 2}
    assert "System.Title" not in resource["fields"]
    assert resource["revision"]["fields"]["System.TeamProject"] == "Fabrikam"
    assert resource["revisedBy"]["uniqueName"]
    (record,) = ado.sandbox.deliveries
    assert record["status"] == 200 and record["work_item_id"] == wid and record["event_id"] == event["id"]


def test_unassign_by_helper_sends_only_old_value(ado: Ado, receiver: Receiver) -> None:
    subscribe(ado, receiver.url)
    wid = ado.sandbox.create_work_item(ORG, "Fabrikam", assigned_to="lauryn@example.com")["id"]
    ado.sandbox.update_work_item(ORG, wid, assigned_to=None, changed_by="jamal@example.com")
    assert ado.sandbox.wait_idle(5)
    resource = receiver.requests[0]["json"]["resource"]
    assert resource["fields"]["System.AssignedTo"] == {"oldValue": "Lauryn <lauryn@example.com>"}
    assert resource["revisedBy"]["uniqueName"] == "jamal@example.com"


def test_failures_put_subscription_on_probation_then_disable_it(ado: Ado, receiver: Receiver) -> None:
    sub_id = subscribe(ado, receiver.url)["id"]
    wid = ado.sandbox.create_work_item(ORG, "Fabrikam")["id"]
    receiver.status = 500

    def status() -> str:
        return str(ado.get(f"_apis/hooks/subscriptions/{sub_id}").json()["status"])

    ado.sandbox.update_work_item(ORG, wid, state="Active")
    assert ado.sandbox.wait_idle(5)
    assert status() == "onProbation"
    ado.sandbox.update_work_item(ORG, wid, state="Resolved")
    ado.sandbox.update_work_item(ORG, wid, state="Closed")
    assert ado.sandbox.wait_idle(5)
    assert status() == "disabledBySystem"
    ado.sandbox.update_work_item(ORG, wid, state="Active")
    assert ado.sandbox.wait_idle(5)
    assert len(receiver.requests) == 3
    assert [d["status"] for d in ado.sandbox.deliveries] == [500, 500, 500]


def test_success_after_failure_restores_enabled(ado: Ado, receiver: Receiver) -> None:
    sub_id = subscribe(ado, receiver.url)["id"]
    wid = ado.sandbox.create_work_item(ORG, "Fabrikam")["id"]
    receiver.status = 404
    ado.sandbox.update_work_item(ORG, wid, state="Active")
    assert ado.sandbox.wait_idle(5)
    receiver.status = 200
    ado.sandbox.update_work_item(ORG, wid, state="Resolved")
    assert ado.sandbox.wait_idle(5)
    assert ado.sandbox.subscriptions(ORG)[0]["status"] == "enabled"
    assert [e["json"]["resource"]["rev"] for e in receiver.requests] == [2, 3]
    assert ado.get(f"_apis/hooks/subscriptions/{sub_id}").json()["status"] == "enabled"


def test_unreachable_receiver_is_retried_then_counted_as_failure(ado: Ado) -> None:
    subscribe(ado, "http://127.0.0.1:9/nothing-listens-here")
    wid = ado.sandbox.create_work_item(ORG, "Fabrikam")["id"]
    ado.sandbox.update_work_item(ORG, wid, state="Active")
    assert ado.sandbox.wait_idle(5)
    attempts = ado.sandbox.deliveries
    assert [d["attempt"] for d in attempts] == [1, 2, 3]
    assert all(d["status"] is None and d["error"] for d in attempts)
    assert ado.sandbox.subscriptions(ORG)[0]["status"] == "onProbation"


# -- standalone ---------------------------------------------------------------------------------


def test_standalone_server_writes_env_and_stops_on_sigterm(tmp_path: Path) -> None:
    state_dir = tmp_path / "sandbox"
    proc = subprocess.Popen(
        [sys.executable, "-m", "devhost.sandbox_ado", "--port", "0", "--state-dir", str(state_dir)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not (state_dir / "env").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "sandbox did not start"
            time.sleep(0.05)
        env = dict(line.split("=", 1) for line in (state_dir / "env").read_text().splitlines())
        assert set(env) == {
            "REQUESTS_CA_BUNDLE",
            "ADO_TOKEN_URL",
            "ADO_ACCOUNT_LOOKUP_URL",
            "ADO_SEARCH_URL",
            "ADO_GRAPH_USERS_URL",
            "ADO_SERVER_HOSTS",
        }
        assert f"https://{env['ADO_SERVER_HOSTS']}/" in env["ADO_TOKEN_URL"] + "/"
        lookup = env["ADO_ACCOUNT_LOOKUP_URL"].format(account_id="00000000-0000-4000-8000-00000000a001")
        found = requests.get(lookup, verify=env["REQUESTS_CA_BUNDLE"], timeout=5)
        assert found.status_code == 200 and found.json()["locationUrl"].endswith("/sandbox/")
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, output
    assert "sandbox-pat-" in output
