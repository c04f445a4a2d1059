"""The Work Item Comments API and the `workitem.commented` service-hook event of the sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.devhost.sandbox_client import ORG, Ado, Receiver, running_ado, running_receiver

PREVIEW = "7.1-preview.4"


@pytest.fixture
def ado() -> Iterator[Ado]:
    yield from running_ado()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running_receiver()


def _comments(ado: Ado, wid: int, suffix: str = "", *, version: str = PREVIEW) -> str:
    return ado.url(f"Fabrikam/_apis/wit/workItems/{wid}/comments{suffix}?api-version={version}")


def _add(ado: Ado, wid: int, text: str, **kw: Any) -> requests.Response:
    return ado.session.post(_comments(ado, wid, **kw), json={"text": text}, timeout=5)


def test_add_comment_answers_the_documented_shape_and_revises_the_work_item(ado: Ado) -> None:
    item = ado.sandbox.create_work_item(ORG, "Fabrikam", title="t")
    resp = _add(ado, item["id"], "<p>Looks <b>good</b></p>")
    assert resp.status_code == 200, resp.text
    comment = resp.json()
    assert comment["workItemId"] == item["id"] and comment["version"] == 1
    assert comment["text"] == "<p>Looks <b>good</b></p>" and comment["isDeleted"] is False
    assert comment["createdBy"]["uniqueName"] == "integration@fabrikam.sandbox.example"
    assert comment["modifiedBy"]["id"] == comment["createdBy"]["id"]
    assert comment["createdDate"] == comment["modifiedDate"]
    assert comment["url"] == ado.url(f"{ado.project_id}/_apis/wit/workItems/{item['id']}/comments/{comment['id']}")
    assert "renderedText" not in comment

    after = ado.sandbox.work_item(ORG, item["id"])
    assert after["rev"] == item["rev"] + 1
    assert after["fields"]["System.CommentCount"] == 1
    assert after["fields"]["System.History"] == "<p>Looks <b>good</b></p>"
    assert after["fields"]["System.ChangedDate"] > item["fields"]["System.ChangedDate"]
    assert after["fields"]["System.ChangedDate"] == comment["createdDate"]

    one = ado.session.get(_comments(ado, item["id"], f"/{comment['id']}") + "&$expand=renderedText", timeout=5)
    assert one.json()["renderedText"] == "<p>Looks <b>good</b></p>"


def test_comments_api_is_preview_only(ado: Ado) -> None:
    wid = ado.sandbox.create_work_item(ORG, "Fabrikam")["id"]
    released = _add(ado, wid, "x", version="7.1")
    assert released.status_code == 400 and "-preview" in released.json()["message"]
    assert _add(ado, wid, "a", version="7.1-preview.3").status_code == 200
    assert _add(ado, wid, "b", version="7.0-preview.3").status_code == 200
    assert _add(ado, wid, "c", version="5.0-preview.2").status_code == 400
    assert ado.session.post(
        ado.url(f"_apis/wit/workItems/{wid}/comments?api-version={PREVIEW}"), json={"text": "x"}, timeout=5
    ).status_code == 404  # the project is part of the route
    assert _add(ado, 999, "x").status_code == 404
    assert _add(ado, wid, "").status_code == 400


def test_list_pages_newest_first_and_counts(ado: Ado) -> None:
    wid = ado.sandbox.create_work_item(ORG, "Fabrikam")["id"]
    ids = [_add(ado, wid, f"c{i}").json()["id"] for i in range(5)]
    first = ado.session.get(_comments(ado, wid) + "&$top=2", timeout=5).json()
    assert first["totalCount"] == 5 and first["count"] == 2
    assert [c["id"] for c in first["comments"]] == ids[::-1][:2]
    token = first["continuationToken"]
    second = ado.session.get(_comments(ado, wid) + f"&$top=2&continuationToken={token}", timeout=5).json()
    assert [c["id"] for c in second["comments"]] == ids[::-1][2:4]
    ascending = ado.session.get(_comments(ado, wid) + "&order=asc", timeout=5).json()
    assert [c["id"] for c in ascending["comments"]] == ids and "continuationToken" not in ascending


def test_edit_and_delete_change_only_the_comment_and_fire_nothing(ado: Ado, receiver: Receiver) -> None:
    wid = ado.sandbox.create_work_item(ORG, "Fabrikam")["id"]
    cid = _add(ado, wid, "first").json()["id"]
    for event in ("workitem.updated", "workitem.commented"):
        _subscribe_to(ado, receiver, event)
    rev = ado.sandbox.work_item(ORG, wid)["rev"]

    edited = ado.session.patch(_comments(ado, wid, f"/{cid}"), json={"text": "second"}, timeout=5)
    assert edited.status_code == 200
    assert edited.json()["version"] == 2 and edited.json()["text"] == "second"
    assert edited.json()["modifiedDate"] > edited.json()["createdDate"]

    deleted = ado.session.delete(_comments(ado, wid, f"/{cid}"), timeout=5)
    assert deleted.status_code == 200
    assert ado.session.get(_comments(ado, wid, f"/{cid}"), timeout=5).status_code == 404
    listed = ado.session.get(_comments(ado, wid), timeout=5).json()
    assert listed["totalCount"] == 0 and listed["comments"] == []
    with_deleted = ado.session.get(_comments(ado, wid) + "&includeDeleted=true", timeout=5).json()
    assert with_deleted["comments"][0]["isDeleted"] is True and with_deleted["comments"][0]["version"] == 3

    assert ado.sandbox.work_item(ORG, wid)["rev"] == rev
    assert ado.sandbox.wait_idle(5) and receiver.requests == []


def _subscribe_to(ado: Ado, receiver: Receiver, event: str, **publisher: str) -> dict[str, Any]:
    body = {
        "publisherId": "tfs",
        "eventType": event,
        "resourceVersion": "1.0",
        "consumerId": "webHooks",
        "consumerActionId": "httpRequest",
        "publisherInputs": {"projectId": ado.project_id, **publisher},
        "consumerInputs": {"url": receiver.url, "resourceDetailsToSend": "all"},
    }
    resp = ado.post("_apis/hooks/subscriptions", body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_commented_event_carries_the_comment_html(ado: Ado, receiver: Receiver) -> None:
    wid = ado.sandbox.create_work_item(ORG, "Fabrikam", title="Crash on save")["id"]
    commented = _subscribe_to(ado, receiver, "workitem.commented")
    updated = _subscribe_to(ado, receiver, "workitem.updated")
    comment = ado.sandbox.add_comment(ORG, wid, "<div>Seen on <i>prod</i></div>", author="jamal@example.com")
    assert ado.sandbox.wait_idle(5)
    by_sub = {r["json"]["subscriptionId"]: r["json"] for r in receiver.requests}
    assert set(by_sub) == {commented["id"], updated["id"]}  # one subscription, one event type

    event = by_sub[commented["id"]]
    assert event["eventType"] == "workitem.commented" and event["publisherId"] == "tfs"
    resource = event["resource"]
    assert resource["id"] == wid and resource["rev"] == ado.sandbox.work_item(ORG, wid)["rev"]
    assert resource["fields"]["System.History"] == "<div>Seen on <i>prod</i></div>"
    assert resource["fields"]["System.CommentCount"] == 1
    assert resource["fields"]["System.ChangedBy"] == "Jamal Hartnett <jamal@example.com>"
    assert "revisedBy" not in resource
    assert resource["commentVersionRef"]["commentId"] == comment["id"]
    assert resource["commentVersionRef"]["version"] == 1
    assert resource["url"].endswith(f"/_apis/wit/workItems/{wid}")
    assert event["message"]["text"].startswith(f"Bug #{wid} (Crash on save) commented on by Jamal Hartnett.")
    assert event["detailedMessage"]["text"].endswith("<div>Seen on <i>prod</i></div>")
    assert event["resourceContainers"]["collection"]["id"] == ado.account_id

    update = by_sub[updated["id"]]["resource"]
    assert update["workItemId"] == wid and update["fields"]["System.History"]["newValue"].startswith("<div>")
    assert update["fields"]["System.CommentCount"] == {"oldValue": 0, "newValue": 1}


def test_history_patch_is_a_comment_too_and_comment_pattern_filters(ado: Ado, receiver: Receiver) -> None:
    wid = ado.sandbox.create_work_item(ORG, "Fabrikam")["id"]
    _subscribe_to(ado, receiver, "workitem.commented", commentPattern="deploy")
    ado.patch_doc("PATCH", f"_apis/wit/workitems/{wid}", [
        {"op": "add", "path": "/fields/System.History", "value": "<p>please deploy</p>"}
    ])
    ado.sandbox.add_comment(ORG, wid, "unrelated")
    assert ado.sandbox.wait_idle(5)
    assert [r["json"]["resource"]["fields"]["System.History"] for r in receiver.requests] == ["<p>please deploy</p>"]
    listed = ado.session.get(_comments(ado, wid) + "&order=asc", timeout=5).json()
    assert [c["text"] for c in listed["comments"]] == ["<p>please deploy</p>", "unrelated"]
    assert ado.sandbox.work_item(ORG, wid)["fields"]["System.CommentCount"] == 2
    bad = {"eventType": "workitem.commented", "publisherInputs": {"commentPattern": "<script>"}}
    body = {**_subscription_body(receiver), **bad}
    assert ado.post("_apis/hooks/subscriptions", body).status_code == 400


def _subscription_body(receiver: Receiver) -> dict[str, Any]:
    return {
        "publisherId": "tfs",
        "resourceVersion": "1.0",
        "consumerId": "webHooks",
        "consumerActionId": "httpRequest",
        "consumerInputs": {"url": receiver.url},
    }
