"""Benchmark the webhook: deliveries through the devhost on Azurite, at concurrency 1, 8 and 32.

Prints requests/s, p50 and p99 latency, storage round trips per delivery (HTTP calls to Azurite)
and Azure DevOps calls (none expected: the done states are cached). Run: `.venv/bin/python bench/webhook.py`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devhost import azurite
from devhost.host import Host
from shared import compose
from shared.compose import Services
from shared.core.models import Group, Integration, Link, OrgLink, User
from shared.core.secrets import hash_secret

SECRET = "bench-secret-" + "0" * 51
PROJECT = "bench-project"
FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ado-webhooks"


class Counter:
    """Counts outgoing HTTP requests by destination: storage (Azurite ports) or anything else."""

    def __init__(self, storage_ports: set[int], ignore_ports: set[int]) -> None:
        self.storage = 0
        self.other = 0
        self.lock = threading.Lock()
        self.storage_ports = storage_ports
        self.ignore_ports = ignore_ports
        original = requests.Session.send
        counter = self

        def send(session: requests.Session, request: requests.PreparedRequest, **kwargs: object) -> object:
            port = urlsplit(request.url or "").port
            with counter.lock:
                if port in counter.storage_ports:
                    counter.storage += 1
                elif port not in counter.ignore_ports:
                    counter.other += 1
            return original(session, request, **kwargs)  # type: ignore[arg-type]

        requests.Session.send = send  # type: ignore[method-assign]

    def reset(self) -> None:
        with self.lock:
            self.storage = self.other = 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def seed(svc: Services, account: str, org: str, items: int) -> None:
    store = svc.store
    store.integrations.save(Integration(account_id=account, account_name="bench", domain_name="https://bench/",
                                        secret_hash=hash_secret(SECRET)))
    store.integrations.save_org_link(OrgLink(account_id=account, org_id=org, config={
        "sync_status_reverse": True, "sync_reverse_assignment": True}))
    store.users.put(User(org_id=org, user_id="lauryn", emails=["lauryn@sentry.io"], projects=["p"]))
    for n in range(items):
        store.groups.put(Group(org_id=org, group_id=f"g{n}", project_id="p", title=f"group {n}"))
        store.groups.add_link(Link(org_id=org, group_id=f"g{n}", account_id=account, key=str(1000 + n),
                                   project_id=PROJECT, work_item_type="Bug"))
    store.cache.put(account, f"states|{PROJECT}|Bug", ["Closed", "Resolved"], ttl=3600)


def deliveries(account: str, items: int, count: int, start_rev: int) -> list[bytes]:
    state = json.loads((FIXTURE / "workitem-updated-state-active-to-resolved.json").read_text())
    assign = json.loads((FIXTURE / "workitem-updated-assigned.json").read_text())
    bodies = []
    for n in range(count):
        item = n % items
        rev = start_rev + n // items
        payload = json.loads(json.dumps(state if n % 2 == 0 else assign))
        payload["id"] = f"bench-{start_rev}-{n}"
        payload["resourceContainers"]["collection"]["id"] = account
        payload["resourceContainers"]["project"]["id"] = PROJECT
        payload["resource"]["workItemId"] = 1000 + item
        payload["resource"]["rev"] = rev
        if n % 2 == 0:
            resolved = (rev % 2) == 0
            payload["resource"]["fields"]["System.State"] = {
                "oldValue": "Active" if resolved else "Resolved", "newValue": "Resolved" if resolved else "Active"}
        elif (rev // 2) % 2:
            payload["resource"]["fields"]["System.AssignedTo"] = {"oldValue": "lauryn <lauryn@sentry.io>"}
        bodies.append(json.dumps(payload).encode())
    return bodies


def run(url: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    session = requests.Session()
    session.trust_env = False
    latencies: list[float] = []
    lock = threading.Lock()

    def post(body: bytes) -> None:
        began = time.perf_counter()
        response = session.post(url, data=body, headers={"shared-secret": SECRET}, timeout=60)
        elapsed = time.perf_counter() - began
        if response.status_code != 200:
            raise RuntimeError(f"webhook answered {response.status_code}: {response.text[:200]}")
        with lock:
            latencies.append(elapsed)

    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(post, bodies))
    return time.perf_counter() - began, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deliveries", type=int, default=300, help="deliveries per concurrency level")
    parser.add_argument("--items", type=int, default=50, help="linked work items (one group each)")
    args = parser.parse_args()

    storage = azurite.start()
    port = free_port()
    counter = Counter(set(storage.ports.values()), {port})
    host = Host(port=port, settings={"AzureWebJobsStorage": storage.connection_string,
                                     "MANAGE_API_KEY": "bench", "WEBHOOK_URL": "http://127.0.0.1/"})
    host.start()
    try:
        account, org = "bench-account", "bench-org"
        seed(compose.build(), account, org, args.items)
        url = f"{host.url}/api/vsts/issue-updated"
        revs = itertools.count(2, step=100)
        run(url, deliveries(account, args.items, args.items, next(revs)), 4)  # warm the in-memory caches
        print(f"webhook benchmark: {args.deliveries} deliveries per level over {args.items} work items "
              "(half status, half assignee changes), one linked group each, warm state cache")
        print(f"{'concurrency':>11} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'storage/delivery':>17} "
              f"{'ADO calls':>10}")
        for concurrency in (1, 8, 32):
            bodies = deliveries(account, args.items, args.deliveries, next(revs))
            counter.reset()
            elapsed, latencies = run(url, bodies, concurrency)
            latencies.sort()
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(f"{concurrency:>11} {len(bodies) / elapsed:>8.1f} {statistics.median(latencies) * 1000:>8.1f} "
                  f"{p99 * 1000:>8.1f} {counter.storage / len(bodies):>17.2f} {counter.other:>10}")
    finally:
        host.stop()
        storage.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
