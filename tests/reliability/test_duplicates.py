"""Duplicated and reordered webhook deliveries over HTTP: every group ends at its highest revision."""

from __future__ import annotations

import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from reliability_support import Seeded, Sender, private_bundle, seed

from shared.compose import Services

ITEMS = 50
REVS = range(2, 18)  # 16 revisions per work item: 800 distinct events
DUPLICATES = 200  # 20 % of the 1,000 deliveries


def state_at(rev: int) -> str:
    """Revisions alternate, so every revision is a real state change of its work item."""
    return "Resolved" if rev % 2 == 0 else "Active"


def previous(rev: int) -> str:
    return state_at(rev - 1)


def status_of(state: str) -> str:
    return "resolved" if state == "Resolved" else "unresolved"


def check_group(svc: Services, world: Seeded, group: str, key: str, highest: int) -> list[int]:
    """Assert the group is consistent with revisions applied in increasing order; returns activity revs."""
    current = svc.store.groups.get(world.org, group)
    assert current is not None
    assert current.status == status_of(state_at(highest)), (group, current.status)
    state = svc.store.groups.read(world.org, group)
    assert state is not None and state.links[(world.account, key)].state_rev == highest
    activity = [a for a in svc.store.groups.activity(world.org, group) if a.kind != "link"]
    assert {a.kind for a in activity} <= {"set_resolved", "set_unresolved"}, activity
    revs = [int(a.data["rev"]) for a in activity]
    assert revs == sorted(set(revs)), f"{group}: activity revisions not strictly increasing: {revs}"
    status = "unresolved"
    for item in activity:
        assert item.data["key"] == key
        target = item.kind.removeprefix("set_")
        assert target != status, f"{group}: activity {item.kind} at rev {item.data['rev']} changed nothing"
        assert target == status_of(state_at(int(item.data["rev"]))), f"{group}: wrong state for rev"
        status = target
    assert status == current.status, f"{group}: activity does not explain the final status"
    return revs


@pytest.mark.slow
def test_duplicated_and_shuffled_deliveries_end_at_the_highest_revision(uid: str) -> None:
    with private_bundle() as (bundle, _, svc):
        run(svc, bundle.url, uid)


def run(svc: Services, url: str, uid: str) -> None:
    world = seed(svc, uid, ITEMS)
    rng = random.Random(20261124)
    events = [(key, rev) for key in world.keys for rev in REVS]
    deliveries = events + rng.sample(events, DUPLICATES)
    rng.shuffle(deliveries)
    payloads = {(key, rev): world.payload(key, rev, previous(rev), state_at(rev), event_id=f"{uid}-{key}-{rev}")
                for key, rev in events}
    sender = Sender(url)

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda d: sender.post(payloads[d]).status_code, deliveries))
    assert len(statuses) == 1000
    assert Counter(statuses) == {200: 1000}

    applied = 0
    for group, key in zip(world.groups, world.keys, strict=True):
        applied += len(check_group(svc, world, group, key, max(REVS)))
    assert applied > 0

    # The groups still take new revisions: one more, opposite to the current state, is applied
    # and its activity is the last one.
    tail = max(REVS) + 1
    with ThreadPoolExecutor(8) as pool:
        tails = list(pool.map(lambda key: sender.post(world.payload(
            key, tail, previous(tail), state_at(tail), event_id=f"{uid}-{key}-{tail}")).status_code, world.keys))
    assert tails == [200] * ITEMS
    for group, key in zip(world.groups, world.keys, strict=True):
        revs = check_group(svc, world, group, key, tail)
        assert revs[-1] == tail, f"{group}: the highest revision's activity is missing"
