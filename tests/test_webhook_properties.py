"""Property and fuzz tests of the service-hook receiver (hypothesis), on Azurite."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_webhook_http import SECRET, World, post

from shared.compose import services

pytestmark = pytest.mark.usefixtures("azurite")

STATES = ("Active", "Resolved")


@pytest.fixture
def world(uid: str) -> World:
    return World(uid)  # alternate, so every revision is a real resolve or unresolve


def _history(length: int, start: int) -> list[str]:
    return [STATES[(start + i) % 2] for i in range(length + 1)]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_order_with_duplicates_ends_at_highest_revision(data: st.DataObject) -> None:
    world = World(uuid.uuid4().hex[:12])
    histories = {
        key: _history(data.draw(st.integers(1, 5), label=f"len{key}"), data.draw(st.integers(0, 1)))
        for key in ("33", "31")
    }
    deliveries: list[dict[str, Any]] = []
    for key, states in histories.items():
        for rev in range(1, len(states)):
            payload = world.payload("workitem-updated-state-active-to-resolved.json", rev=rev + 1,
                                    workItemId=int(key))
            payload["id"] = f"evt-{key}-{rev}"
            payload["resource"]["fields"]["System.State"] = {"oldValue": states[rev - 1], "newValue": states[rev]}
            deliveries.append(payload)
    duplicated = deliveries + data.draw(st.lists(st.sampled_from(deliveries), max_size=6))
    order = data.draw(st.permutations(duplicated))

    for payload in order:
        assert post(payload).status_code == 200

    # Both work items are linked to the same group: its status follows whichever work item's
    # newest revision was applied last, but each work item's own activity is ordered and unique.
    activity = [a for a in services().store.groups.activity(world.org, world.group) if a.kind != "link"]
    for key in histories:
        revs = [a.data["rev"] for a in activity if a.data.get("key") == key]
        assert revs == sorted(set(revs)), f"duplicate or out-of-order activity for {key}: {revs}"
    group = services().store.groups.get(world.org, world.group)
    assert group is not None


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_single_work_item_ends_in_state_of_highest_revision(data: st.DataObject) -> None:
    world = World(uuid.uuid4().hex[:12])
    states = _history(data.draw(st.integers(1, 6)), data.draw(st.integers(0, 1)))
    deliveries = []
    for rev in range(1, len(states)):
        payload = world.payload("workitem-updated-state-active-to-resolved.json", rev=rev + 1)
        payload["id"] = f"evt-{rev}"
        payload["resource"]["fields"]["System.State"] = {"oldValue": states[rev - 1], "newValue": states[rev]}
        deliveries.append(payload)
    order = data.draw(st.permutations(deliveries + data.draw(st.lists(st.sampled_from(deliveries), max_size=5))))

    for payload in order:
        assert post(payload).status_code == 200

    group = services().store.groups.get(world.org, world.group)
    assert group is not None
    expected = "resolved" if states[-1] == "Resolved" else "unresolved"
    assert group.status == expected
    activity = [a for a in services().store.groups.activity(world.org, world.group) if a.kind != "link"]
    revs = [a.data["rev"] for a in activity]
    assert revs == sorted(set(revs)), f"duplicate or out-of-order activity: {revs}"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
PATHS = [("eventType",), ("id",), ("resourceContainers",), ("resourceContainers", "collection"),
         ("resourceContainers", "collection", "id"), ("resourceContainers", "project", "id"), ("resource",),
         ("resource", "workItemId"), ("resource", "rev"), ("resource", "fields"),
         ("resource", "fields", "System.State"), ("resource", "fields", "System.AssignedTo"),
         ("resource", "fields", "System.AssignedTo", "newValue"), ("resource", "revision")]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(st.tuples(st.sampled_from(PATHS), json_values), max_size=4),
       headers=st.dictionaries(st.sampled_from(["shared-secret", "Authorization", "Content-Type"]),
                               st.text(max_size=30), max_size=3),
       keep_secret=st.booleans())
def test_mutated_payloads_never_crash(world: World, mutations: list[Any], headers: dict[str, str],
                                      keep_secret: bool) -> None:
    payload: Any = world.payload("workitem-updated-state-active-to-resolved.json")
    for path, value in mutations:
        target = payload
        for part in path[:-1]:
            if not isinstance(target, dict):
                break
            target = target.setdefault(part, {})
        if isinstance(target, dict):
            target[path[-1]] = value
    if keep_secret:
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        headers["shared-secret"] = SECRET
    response = post(payload, secret=None, headers=headers)
    assert response.status_code in (200, 400, 401, 413, 415, 503), response.get_body()
    if response.status_code >= 400:
        body = json.loads(response.get_body() or b"{}")
        assert "Traceback" not in json.dumps(body)


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=300))
def test_random_bytes_are_rejected_cleanly(raw: bytes) -> None:
    assert post(None, raw=raw, secret=None).status_code in (200, 400)
