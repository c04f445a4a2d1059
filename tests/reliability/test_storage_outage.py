"""A storage outage in the middle of a webhook stream: 503 while down, nothing lost or half-applied after.

Uses its own Azurite (persistent, in a temporary directory) and its own devhost: the session
Azurite is in memory and shared, so stopping it would lose every other test's data.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import wait_for
from reliability_support import Sender, private_bundle, seed

GROUPS = 10
ITEMS_PER_GROUP = 30  # 300 work items, one delivery each: a lost delivery leaves its link at rev 0


def state_at(index: int) -> str:
    return "Resolved" if index % 2 == 0 else "Active"


@pytest.mark.slow
def test_storage_outage_answers_503_then_everything_is_applied(tmp_path: Path, uid: str) -> None:
    with private_bundle(persistent_dir=str(tmp_path / "azurite")) as (bundle, own, svc):
        world = seed(svc, uid, GROUPS * ITEMS_PER_GROUP, group_for=lambda i: f"g{i % GROUPS}", parallel=GROUPS)
        group_of = {key: f"g{i % GROUPS}" for i, key in enumerate(world.keys)}
        rev_of = {key: 2 + i for i, key in enumerate(world.keys)}
        # Within a group, consecutive work items alternate between resolving and reopening it.
        new_state = {key: state_at(i // GROUPS) for i, key in enumerate(world.keys)}
        bodies = [json.dumps(world.payload(key, rev_of[key], state_at(i // GROUPS + 1), new_state[key],
                                           event_id=f"{uid}-{key}")).encode()
                  for i, key in enumerate(world.keys)]
        sender = Sender(bundle.url)
        outcomes: dict[int, list[tuple[int, float]]] = {i: [] for i in range(len(bodies))}
        lock = threading.Lock()
        sent = threading.Semaphore(0)

        def send(index: int) -> None:
            started = time.monotonic()
            status = sender.post(None, raw=bodies[index]).status_code
            with lock:
                outcomes[index].append((status, time.monotonic() - started))
            sent.release()

        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(send, i) for i in range(len(bodies))]
            for _ in range(len(bodies) // 3):
                sent.acquire()
            own.stop()
            # Stay down until a good number of deliveries were refused.
            wait_for(lambda: sum(1 for o in outcomes.values() if o and o[-1][0] == 503) >= 40, timeout=60,
                     interval=0.05, what="deliveries refused during the outage")
            assert bundle.http.get(f"{bundle.url}/api/health", timeout=30).status_code == 503
            own.restart()
            for future in futures:
                future.result()

        first = Counter(o[0][0] for o in outcomes.values())
        assert set(first) <= {200, 503}, first
        refused = [i for i, o in outcomes.items() if o[0][0] == 503]
        assert len(refused) >= 40
        # Storage being down is noticed fast (no long client retries): ADO gets its 503 quickly.
        slowest_refusal = max(o[0][1] for o in outcomes.values() if o[0][0] == 503)
        assert slowest_refusal < 5.0, slowest_refusal

        # Azure DevOps delivers again whatever was not answered 200 (quickly at first, then backing off).
        pending = refused
        for attempt in range(12):
            if not pending:
                break
            time.sleep(min(0.25 * 2 ** attempt, 4.0))
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(send, pending))
            pending = [i for i in pending if outcomes[i][-1][0] != 200]
        assert not pending, f"{len(pending)} deliveries still refused after storage came back"
        assert bundle.http.get(f"{bundle.url}/api/health", timeout=30).status_code == 200

        # Nothing lost: every work item's one revision reached its link.
        lost = []
        for key in world.keys:
            state = svc.store.groups.read(world.org, group_of[key])
            assert state is not None
            if state.links[(world.account, key)].state_rev != rev_of[key]:
                lost.append(key)
        assert not lost, f"{len(lost)} deliveries answered 200 but never applied: {lost[:5]}"

        # Nothing half-applied: status, version and activity agree for every group.
        for group in world.groups:
            state = svc.store.groups.read(world.org, group)
            assert state is not None
            activity = [a for a in svc.store.groups.activity(world.org, group) if a.kind != "link"]
            status = "unresolved"
            for item in activity:
                target = item.kind.removeprefix("set_")
                assert target != status, (group, item)
                assert target == ("resolved" if new_state[item.data["key"]] == "Resolved" else "unresolved")
                status = target
            assert status == state.group.status, group
            # put_group wrote version 1; each applied status change adds one version and one activity.
            assert state.group.version == 1 + len(activity), (group, state.group.version, len(activity))
