"""Work item writes of the sandbox: conditional updates (`test /rev`) and revision bookkeeping."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.devhost.sandbox_client import ORG, Ado, Receiver, running_ado, running_receiver, subscribe


@pytest.fixture
def ado() -> Iterator[Ado]:
    yield from running_ado()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running_receiver()


ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _patch(ado: Ado, wid: int, ops: list[dict[str, Any]]) -> Any:
    return ado.patch_doc("PATCH", f"Fabrikam/_apis/wit/workitems/{wid}", ops)


def test_stale_rev_test_is_412_and_changes_nothing(ado: Ado, receiver: Receiver) -> None:
    subscribe(ado, receiver.url)
    wid = ado.sandbox.create_work_item(ORG, "Fabrikam", title="Before")["id"]
    ado.sandbox.update_work_item(ORG, wid, state="Active")  # rev 2
    ado.sandbox.wait_idle(5)
    delivered = len(receiver.requests)
    before = ado.get(f"_apis/wit/workitems/{wid}").json()

    stale = [
        {"op": "test", "path": "/rev", "value": 1},
        {"op": "replace", "path": "/fields/System.Title", "value": "After"},
    ]
    resp = _patch(ado, wid, stale)
    assert resp.status_code == 412, resp.text
    error = resp.json()
    assert error["typeKey"] == "TestPatchOperationFailedException"
    assert error["message"] == "VS403351: Test Operation for path /rev failed, value 2 was not equal to test value 1."
    assert ado.get(f"_apis/wit/workitems/{wid}").json() == before
    assert ado.sandbox.wait_idle(5) and len(receiver.requests) == delivered


def test_matching_rev_test_applies_the_patch(ado: Ado) -> None:
    wid = ado.sandbox.create_work_item(ORG, "Fabrikam", title="Before")["id"]
    ops = [
        {"op": "test", "path": "/rev", "value": 1},
        {"op": "replace", "path": "/fields/System.Title", "value": "After"},
    ]
    resp = _patch(ado, wid, ops)
    assert resp.status_code == 200, resp.text
    assert resp.json()["rev"] == 2 and resp.json()["fields"]["System.Title"] == "After"
    # the same document again is stale now
    assert _patch(ado, wid, ops).status_code == 412


def test_test_op_on_a_field_value(ado: Ado) -> None:
    wid = ado.sandbox.create_work_item(ORG, "Fabrikam", title="Before")["id"]
    wrong = [
        {"op": "test", "path": "/fields/System.State", "value": "Active"},
        {"op": "replace", "path": "/fields/System.State", "value": "Resolved"},
    ]
    resp = _patch(ado, wid, wrong)
    assert resp.status_code == 412
    assert "Test Operation for path /fields/System.State failed, value New" in resp.json()["message"]
    right = [{**wrong[0], "value": "New"}, wrong[1]]
    assert _patch(ado, wid, right).json()["fields"]["System.State"] == "Resolved"


def test_every_change_bumps_rev_changed_date_and_changed_by(ado: Ado) -> None:
    created = ado.sandbox.create_work_item(ORG, "Fabrikam", title="t", created_by="lauryn@example.com")
    wid = created["id"]
    assert created["fields"]["System.ChangedBy"] == "Lauryn <lauryn@example.com>"
    seen = [created["fields"]["System.ChangedDate"]]
    revs = [created["rev"]]
    for i in range(5):  # faster than the clock's millisecond: dates still strictly increase
        item = _patch(ado, wid, [{"op": "replace", "path": "/fields/System.Title", "value": f"t{i}"}]).json()
        revs.append(item["rev"])
        seen.append(item["fields"]["System.ChangedDate"])
        assert item["fields"]["System.ChangedBy"] == "fabrikam Integration <integration@fabrikam.sandbox.example>"
    assert revs == list(range(1, 7))
    assert all(ISO_UTC.match(d) for d in seen)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    relation = {"rel": "Hyperlink", "url": "https://tracker.example/1"}
    linked = _patch(ado, wid, [{"op": "add", "path": "/relations/-", "value": relation}]).json()
    assert linked["rev"] == 7 and linked["fields"]["System.ChangedDate"] > seen[-1]
