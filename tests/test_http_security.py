"""Hardened HTTP inputs through the real decorated functions, on Azurite: 415 for non-JSON bodies,
400 for duplicate JSON keys, 400 for ids that are dot segments, and Azure DevOps URLs that no id can
reshape.
"""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest
import requests
from conftest import StubContext, load_fixture

from manage_http import integrations as integration_routes
from manage_http import records
from shared.adapters.ado_client import Api, path
from shared.compose import services
from shared.core.errors import InvalidInput
from shared.core.models import Integration
from shared.core.secrets import hash_secret
from webhook_http import webhook_http

pytestmark = pytest.mark.usefixtures("azurite")

KEY = "http-security-key-0123456789"
GROUP = {"project_id": "p1", "title": "Boom", "status": "unresolved", "assignee": None}
SECRET = "hook-secret-" + "b" * 52


@pytest.fixture(autouse=True)
def manage_key(env: pytest.MonkeyPatch) -> None:
    env.setenv("MANAGE_API_KEY", KEY)


def call(function: Any, method: str, route_params: dict[str, str], data: bytes,
         content_type: str | None = "application/json") -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {KEY}"}
    if content_type is not None:
        headers["Content-Type"] = content_type
    req = func.HttpRequest(method, "http://localhost/api/manage", headers=headers, route_params=route_params,
                           body=data)
    response = function(req, StubContext())
    text = response.get_body()
    return response.status_code, json.loads(text) if text else None


def put_group(org: str, group: str, data: bytes, content_type: str | None = "application/json") -> tuple[int, Any]:
    return call(records.manage_group_put, "PUT", {"org_id": org, "group_id": group}, data, content_type)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "application/jsonx", "multipart/form-data; boundary=x", "text/json"])
def test_a_json_route_refuses_other_content_types_with_415(uid: str, content_type: str | None) -> None:
    status, body = put_group(uid, "g1", json.dumps(GROUP).encode(), content_type)
    assert status == 415 and "application/json" in body["detail"]
    assert services().store.groups.get(uid, "g1") is None


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON"])
def test_json_with_or_without_parameters_is_accepted(uid: str, content_type: str) -> None:
    assert put_group(uid, "g1", json.dumps(GROUP).encode(), content_type)[0] == 200


@pytest.mark.parametrize("raw", [
    b'{"project_id": "p1", "title": "Boom", "status": "unresolved", "status": "resolved"}',
    b'{"project_id": "p1", "title": "Boom", "status": "unresolved", "assignee": null, "title": "Other"}',
    b'{"project_id": "p1", "title": "Boom", "status": "unresolved", "x": {"a": 1, "a": 2}}',
])
def test_duplicate_json_keys_are_400_and_write_nothing(uid: str, raw: bytes) -> None:
    status, body = put_group(uid, "g1", raw)
    assert status == 400 and "duplicate key" in body["detail"]
    assert services().store.groups.get(uid, "g1") is None


def test_install_refuses_a_body_with_a_duplicate_identity(uid: str) -> None:
    raw = (b'{"account_name": "a", "organization_id": "o", "identity": {"kind": "pat", "access_token": "x"},'
           b' "identity": {"kind": "pat", "access_token": "y"}}')
    status, body = call(integration_routes.manage_integration_put, "PUT", {"account_id": f"acct-{uid}"}, raw)
    assert status == 400 and "duplicate key" in body["detail"]
    assert services().store.integrations.get(f"acct-{uid}") is None


@pytest.mark.parametrize("bad_id", [".", "..", "...", "...."])
def test_dot_ids_are_400(uid: str, bad_id: str) -> None:
    status, body = put_group(uid, bad_id, json.dumps(GROUP).encode())
    assert status == 400 and "group_id" in body["detail"]
    status, body = put_group(bad_id, "g1", json.dumps(GROUP).encode())
    assert status == 400 and "org_id" in body["detail"]
    status, body = call(integration_routes.manage_integration_get, "GET", {"account_id": bad_id}, b"")
    assert status == 400 and "account_id" in body["detail"]


@pytest.mark.parametrize(("field", "value"), [("project", ".."), ("project", "."), ("work_item_type", "..")])
def test_creating_an_issue_with_a_dot_project_or_type_is_400(uid: str, field: str, value: str) -> None:
    issue = {"group_id": "g1", "project": "p1", "work_item_type": "Bug", "title": "t", "description": "d",
             field: value}
    status, body = call(integration_routes.manage_issue_create, "POST", {"account_id": f"acct-{uid}", "org_id": uid},
                        json.dumps(issue).encode())
    assert status == 400 and field in body["detail"]


@pytest.mark.parametrize(("parts", "expected"), [
    ({"project": "../../_apis/projects", "type": "Bug"}, "..%2F..%2F_apis%2Fprojects/_apis/wit/workitems/$Bug"),
    ({"project": "My Project", "type": "User Story"}, "My%20Project/_apis/wit/workitems/$User%20Story"),
    ({"project": "%2E%2E", "type": "Bug"}, "%252E%252E/_apis/wit/workitems/$Bug"),
    ({"project": "p?x=1#y", "type": "Bug"}, "p%3Fx%3D1%23y/_apis/wit/workitems/$Bug"),
])
def test_ids_in_ado_urls_are_quoted_so_the_path_keeps_its_shape(parts: dict[str, str], expected: str) -> None:
    relative = path(Api.CREATE_WORK_ITEM, **parts)
    assert relative == expected
    sent = requests.Request("POST", "https://dev.azure.com/org/" + relative).prepare().path_url
    assert sent.startswith("/org/") and sent.endswith("/_apis/wit/workitems/$" + parts["type"].replace(" ", "%20"))


@pytest.mark.parametrize("value", ["..", ".", ""])
def test_a_dot_segment_never_reaches_an_ado_url(value: str) -> None:
    # `requests` decodes %2E back to a dot, so quoting alone would not keep `..` from climbing a level.
    with pytest.raises(InvalidInput, match="project"):
        path(Api.PROJECT, project=value)


def webhook(data: bytes, content_type: str | None) -> int:
    headers = {"shared-secret": SECRET}
    if content_type is not None:
        headers["Content-Type"] = content_type
    req = func.HttpRequest("POST", "http://localhost/api/vsts/issue-updated", headers=headers, body=data)
    return webhook_http(req, StubContext()).status_code


def test_the_webhook_refuses_non_json_content_types_and_duplicate_keys(uid: str) -> None:
    account = f"acct-{uid}"
    services().store.integrations.save(Integration(account_id=account, account_name="a", domain_name="https://a/",
                                                   secret_hash=hash_secret(SECRET)))
    payload = load_fixture("workitem-updated-state-active-to-resolved.json")
    payload["resourceContainers"]["collection"]["id"] = account
    good = json.dumps(payload).encode()

    assert webhook(good, "application/json; charset=utf-8") == 200  # what Azure DevOps sends
    assert webhook(good, "text/plain") == 415
    assert webhook(good, "application/x-www-form-urlencoded") == 415
    # Two readings of one body: the collection id twice (another integration's id first).
    twice = good.replace(b'"collection": {', b'"collection": {"id": "someone-else", ', 1)
    assert twice != good and webhook(twice, "application/json") == 400
