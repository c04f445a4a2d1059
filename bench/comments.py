"""Benchmark comment sync: ADO calls per comment push, storage round trips per inbound comment.

Starts its own Azurite and HTTPS sandbox ADO. Outbound: a tracker comment is written (`PUT`), and
each queued `sync-outbound` message is handled; per scenario the Azure DevOps calls, storage round
trips (HTTP requests to Azurite, queue sends included) and latency of the push are printed. Inbound:
`workitem.commented` deliveries go through the webhook handler; per scenario the storage round trips
and ADO calls of one delivery are printed. Run: `.venv/bin/python bench/comments.py [--rounds 20]`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import copy
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devhost import azurite
from devhost.sandbox_ado import SandboxAdo
from shared import compose, config
from shared.adapters import ado_comments, storage
from shared.core.errors import AdoTimeout, TransientError
from shared.core.models import Group, Identity, Integration, Link, OrgLink
from shared.core.secrets import hash_secret
from shared.flows import comments, inbound, outbound

SECRET = "bench-comment-secret-" + "0" * 43
FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "ado-webhooks" / "workitem-commented.json"
Sample = tuple[int, int, float]  # ADO calls, storage round trips, seconds


class StorageCounter:
    """Counts HTTP requests to the Azurite ports (the storage round trips)."""

    def __init__(self, ports: set[int]) -> None:
        self.count = 0
        self.lock = threading.Lock()
        original = requests.Session.send
        counter = self

        def send(session: requests.Session, request: requests.PreparedRequest, **kwargs: Any) -> Any:
            if urlsplit(request.url or "").port in ports:
                with counter.lock:
                    counter.count += 1
            return original(session, request, **kwargs)

        requests.Session.send = send  # type: ignore[method-assign]


class Bench:
    def __init__(self, sandbox: SandboxAdo, counter: StorageCounter) -> None:
        self.sandbox, self.counter = sandbox, counter
        self.sent: list[tuple[str, dict[str, Any]]] = []

        def send(queue: str, message: dict[str, Any], /, *, delay: float | None = None) -> None:
            self.sent.append((queue, message))
            storage.send(queue, message, delay=delay)

        self.svc = compose.build(send=send)
        self.org = "benchcomments"
        self.account_id = sandbox.add_organization(self.org)
        self.project_id = sandbox.add_project(self.org, "Bench")
        sandbox.add_user(self.org, "Bob Builder", "bob@example.com")
        token = sandbox.issue_token(self.org, expires_in=24 * 3600)
        stores = self.svc.store.integrations
        stores.save(Integration(account_id=self.account_id, account_name=self.org,
                                domain_name=sandbox.instance_url(self.org), comment_secret_hash=hash_secret(SECRET)))
        stores.save_identity(self.account_id, Identity(kind="oauth", access_token=token["access_token"],
                                                       refresh_token=token["refresh_token"],
                                                       expires_at=token["expires_at"]))
        self.org_id = "tracker-bench"
        stores.save_org_link(OrgLink(account_id=self.account_id, org_id=self.org_id, config={"sync_comments": True}))
        self.groups = 0

    def new_item(self, groups: int = 1, *, project: bool = True) -> tuple[str, list[str]]:
        key = str(self.sandbox.create_work_item(self.org, "Bench", title="Bench")["id"])
        made = []
        for _ in range(groups):
            self.groups += 1
            group = f"g{self.groups}"
            self.svc.store.groups.put(Group(org_id=self.org_id, group_id=group, project_id="p", title="Bench"))
            self.svc.store.groups.add_link(Link(org_id=self.org_id, group_id=group, account_id=self.account_id,
                                                key=key, project_id=self.project_id if project else None))
            made.append(group)
        return key, made

    def _measure(self, action: Callable[[], None]) -> Sample:
        self.sandbox.reset_calls()
        before = self.counter.count
        started = time.perf_counter()
        action()
        elapsed = time.perf_counter() - started
        ado = len([c for c in self.sandbox.calls if c["path"].startswith(f"/{self.org}/")])
        return ado, self.counter.count - before, elapsed

    # -- outbound ---------------------------------------------------------------------------------

    def write(self, group: str, comment_id: str, body: str, *, delete: bool = False) -> list[dict[str, Any]]:
        self.sent.clear()
        if delete:
            comments.delete_comment(self.svc, self.org_id, group, comment_id)
        else:
            comments.put_comment(self.svc, self.org_id, group, comment_id,
                                 {"author": {"name": "Ann"}, "body": body})
        return [m for q, m in self.sent if q == comments.QUEUE]

    def push(self, messages: list[dict[str, Any]]) -> Sample:
        def run() -> None:
            for message in messages:
                with contextlib.suppress(TransientError):  # the lost-answer scenario's first attempt
                    outbound.handle(self.svc, message)

        return self._measure(run)

    # -- inbound ----------------------------------------------------------------------------------

    def delivery(self, key: str, comment: dict[str, Any]) -> bytes:
        payload = copy.deepcopy(json.loads(FIXTURE.read_text()))
        payload["resourceContainers"]["collection"]["id"] = self.account_id
        payload["resourceContainers"]["project"]["id"] = self.project_id
        resource = payload["resource"]
        resource.update(id=int(key), rev=self.sandbox.work_item(self.org, int(key))["rev"])
        resource["fields"].update({"System.History": comment["text"], "System.ChangedBy": "Bob <bob@example.com>"})
        resource["commentVersionRef"].update(commentId=comment["id"], version=comment["version"])
        return json.dumps(payload).encode()

    def deliver(self, body: bytes) -> Sample:
        auth = base64.b64encode(f":{SECRET}".encode()).decode()

        def run() -> None:
            assert inbound.handle(self.svc, body, {"authorization": f"Basic {auth}"}).status == 200

        return self._measure(run)


def scenarios(bench: Bench, results: dict[str, list[Sample]], n: int) -> None:
    def add(name: str, sample: Sample) -> None:
        results.setdefault(name, []).append(sample)

    key, (group,) = bench.new_item()
    cid = f"c{n}"
    first = bench.write(group, cid, "**Fixed** in build 42")
    add("push: create", bench.push(first))
    add("push: duplicate message (already posted)", bench.push(first))
    add("push: edit", bench.push(bench.write(group, cid, "Fixed in build 43")))
    add("push: delete", bench.push(bench.write(group, cid, "", delete=True)))

    _, (old_link,) = bench.new_item(project=False)
    add("push: create, link without project", bench.push(bench.write(old_link, cid, "hello")))

    lost_key, (lost,) = bench.new_item()
    real = ado_comments.add

    def posted_then_timed_out(*args: Any, **kwargs: Any) -> dict[str, Any]:
        real(*args, **kwargs)
        raise AdoTimeout("read timed out")

    message = bench.write(lost, cid, "answer lost")
    ado_comments.add = posted_then_timed_out  # type: ignore[assignment]
    bench.push(message)
    ado_comments.add = real  # type: ignore[assignment]
    add("push: retry after a lost answer (recovered)", bench.push(message))

    comment = bench.sandbox.add_comment(bench.org, int(key), "<p>from ADO</p>", author="bob@example.com")
    body = bench.delivery(key, comment)
    add("inbound: new comment, 1 linked group", bench.deliver(body))
    add("inbound: same delivery again", bench.deliver(body))
    edited = bench.sandbox.edit_comment(bench.org, int(key), comment["id"], "<p>edited</p>", author="bob@example.com")
    add("inbound: edit (version 2)", bench.deliver(bench.delivery(key, edited)))
    two_key, _ = bench.new_item(groups=2)
    other = bench.sandbox.add_comment(bench.org, int(two_key), "<p>for both</p>", author="bob@example.com")
    add("inbound: new comment, 2 linked groups", bench.deliver(bench.delivery(two_key, other)))
    ours = bench.sandbox.state  # the comment the bundle posted for `lost` comes back through its hook
    with ours.lock:
        posted = ours.item(ours.org(bench.org), int(lost_key)).comments[-1]
    own = {"id": posted.id, "version": posted.current.version, "text": posted.current.text}
    add("inbound: own comment (echo)", bench.deliver(bench.delivery(lost_key, own)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    process = azurite.start()
    sandbox = SandboxAdo()
    sandbox.start()
    os.environ.update({"AzureWebJobsStorage": process.connection_string, **sandbox.environment(),
                       "ADO_CLIENT_ID": "bench-client", "ADO_CLIENT_SECRET": "bench-secret"})
    config.reset()
    storage.reset()
    try:
        bench = Bench(sandbox, StorageCounter(set(process.ports.values())))
        results: dict[str, list[Sample]] = {}
        scenarios(bench, results, 0)  # warm-up (first calls, last-delivery stamp), not reported
        results.clear()
        for n in range(1, args.rounds + 1):
            scenarios(bench, results, n)
        print(f"comment sync benchmark: {args.rounds} rounds (per message or delivery; medians)")
        print(f"{'scenario':<46} {'ADO calls':>9} {'storage':>8} {'p50 ms':>8} {'max ms':>8}")
        for name, samples in results.items():
            ado = statistics.median(s[0] for s in samples)
            trips = statistics.median(s[1] for s in samples)
            times = sorted(s[2] * 1000 for s in samples)
            print(f"{name:<46} {ado:>9g} {trips:>8g} {statistics.median(times):>8.1f} {times[-1]:>8.1f}")
    finally:
        sandbox.stop()
        process.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
