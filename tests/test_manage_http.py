"""Management API basics through the real decorated functions, on Azurite."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func
import pytest
from conftest import StubContext

from manage_http import records as manage_http
from shared.compose import services

KEY = "test-manage-key-0123456789"
pytestmark = pytest.mark.usefixtures("azurite")


@pytest.fixture(autouse=True)
def manage_key(env: pytest.MonkeyPatch) -> None:
    env.setenv("MANAGE_API_KEY", KEY)


def call(function: Any, method: str, route_params: dict[str, str], body: Any = None, *,
         key: str | None = KEY, raw: bytes | None = None, params: dict[str, str] | None = None
         ) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    req = func.HttpRequest(method, "http://localhost/api/manage", headers=headers, route_params=route_params,
                           params=params or {}, body=data)
    response = function(req, StubContext())
    text = response.get_body()
    return response.status_code, json.loads(text) if text else None


def put_user(org: str, user: str, body: Any, **kw: Any) -> tuple[int, Any]:
    return call(manage_http.manage_user_put, "PUT", {"org_id": org, "user_id": user}, body, **kw)


def put_group(org: str, group: str, body: Any, **kw: Any) -> tuple[int, Any]:
    return call(manage_http.manage_group_put, "PUT", {"org_id": org, "group_id": group}, body, **kw)


def get_group(org: str, group: str, **kw: Any) -> tuple[int, Any]:
    return call(manage_http.manage_group_get, "GET", {"org_id": org, "group_id": group}, **kw)


GROUP = {"project_id": "p1", "title": "Boom", "status": "unresolved", "assignee": None}


def test_health_answers_ok_without_auth() -> None:
    status, body = call(manage_http.health, "GET", {}, key=None)
    assert (status, body) == (200, {"status": "ok"})


@pytest.mark.parametrize("key", [None, "", "wrong", KEY + "x", "Basic " + KEY])
def test_missing_or_wrong_key_is_401_and_writes_nothing(uid: str, key: str | None) -> None:
    status, body = put_user(uid, "u1", {"emails": ["a@b.c"], "projects": []}, key=key)
    assert status == 401
    assert "detail" in body
    assert services().store.users.get(uid, "u1") is None


def test_unset_key_rejects_every_call(uid: str, env: pytest.MonkeyPatch) -> None:
    env.delenv("MANAGE_API_KEY")
    from shared import config

    config.reset()
    assert put_user(uid, "u1", {"emails": [], "projects": []})[0] == 401
    assert get_group(uid, "g1")[0] == 401


def test_user_round_trip(uid: str) -> None:
    status, body = put_user(uid, "u1", {"emails": ["ann@example.com"], "projects": ["p1"]})
    assert status == 200
    status, body = call(manage_http.manage_user_get, "GET", {"org_id": uid, "user_id": "u1"})
    assert (status, body["emails"], body["projects"]) == (200, ["ann@example.com"], ["p1"])


def test_group_round_trip_with_links_and_activity(uid: str) -> None:
    put_user(uid, "u1", {"emails": ["ann@example.com"], "projects": ["p1"]})
    status, body = put_group(uid, "g1", {**GROUP, "assignee": "u1"})
    assert status == 200
    status, body = get_group(uid, "g1")
    assert status == 200
    assert (body["status"], body["assignee"], body["links"], body["activity"]) == ("unresolved", "u1", [], [])


def test_patch_updates_the_group_and_records_activity(uid: str) -> None:
    put_group(uid, "g1", GROUP)
    status, body = call(manage_http.manage_group_patch, "PATCH", {"org_id": uid, "group_id": "g1"},
                        {"status": "resolved"})
    assert status == 200
    assert body["status"] == "resolved"
    assert [a["kind"] for a in body["activity"]] == ["set_resolved"]
    assert body["activity"][0]["created"].endswith("Z"), "timestamps in JSON are ISO 8601 UTC"


def test_repository_round_trip(uid: str) -> None:
    repo = {"name": "acme/web", "provider": "visualstudio", "external_id": "e1",
            "config": {"project": "Acme", "name": "web"}, "status": "disabled"}
    status, _ = call(manage_http.manage_repository_put, "PUT", {"org_id": uid, "repo_id": "r1"}, repo)
    assert status == 200
    status, body = call(manage_http.manage_repository_get, "GET", {"org_id": uid, "repo_id": "r1"})
    assert status == 200
    assert (body["provider"], body["integration_id"], body["status"]) == ("visualstudio", None, "disabled")


@pytest.mark.parametrize("function,params", [
    (manage_http.manage_group_get, {"group_id": "nope"}),
    (manage_http.manage_user_get, {"user_id": "nope"}),
    (manage_http.manage_repository_get, {"repo_id": "nope"}),
])
def test_unknown_records_are_404(uid: str, function: Any, params: dict[str, str]) -> None:
    status, body = call(function, "GET", {"org_id": uid, **params})
    assert status == 404 and body["detail"]


@pytest.mark.parametrize("body,field", [
    ({"title": "t", "status": "unresolved"}, "project_id"),
    ({"project_id": "p1", "status": "unresolved"}, "title"),
    ({**GROUP, "status": "ignored"}, "status"),
    ({**GROUP, "title": 42}, "title"),
    ({**GROUP, "assignee": "ghost"}, "assignee"),
    ({**GROUP, "project_id": "a/b"}, "project_id"),
])
def test_invalid_group_bodies_name_the_field_and_write_nothing(uid: str, body: dict, field: str) -> None:
    status, answer = put_group(uid, "g1", body)
    assert status in (400, 422)
    assert field in answer["detail"]
    assert services().store.groups.get(uid, "g1") is None


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b"", b"\xff", b'"text"'])
def test_bodies_that_are_not_json_objects_are_400(uid: str, raw: bytes) -> None:
    status, body = put_group(uid, "g1", None, raw=raw)
    assert status == 400 and body["detail"]
    assert services().store.groups.get(uid, "g1") is None


@pytest.mark.parametrize("bad_id", ["a/b", "a#b", "a?b", "a\\b", "x\x01y", "x" * 300])
def test_forbidden_key_characters_are_400_not_a_crash(bad_id: str) -> None:
    status, body = put_group(bad_id, "g1", GROUP)
    assert status == 400
    assert "org_id" in body["detail"]


@pytest.mark.parametrize("body,field", [
    ({"emails": "ann@example.com", "projects": []}, "emails"),
    ({"emails": [42], "projects": []}, "emails"),
    ({"emails": ["not-an-email"], "projects": []}, "emails"),
    ({"emails": [], "projects": "p1"}, "projects"),
])
def test_invalid_user_bodies(uid: str, body: dict, field: str) -> None:
    status, answer = put_user(uid, "u1", body)
    assert status in (400, 422) and field in answer["detail"]
    assert services().store.users.get(uid, "u1") is None
