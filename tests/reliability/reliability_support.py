"""Helpers shared by the reliability tests: private bundles, seeding, payloads, waiting.

Not a conftest: a second `conftest` module without a package would replace the top-level one in
`sys.modules` and break `from conftest import Bundle` in the other test files.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from conftest import Bundle, bundle_host, load_fixture

from devhost import azurite as azurite_process
from shared import compose, config
from shared.adapters import storage
from shared.compose import Services
from shared.core.models import Group, Integration, Link, OrgLink
from shared.core.secrets import hash_secret
from shared.flows import states

ROOT = Path(__file__).resolve().parents[2]
SECRET = "reliability-" + "b" * 52
PROJECT = "c0bf429a-c03c-4a99-9336-d45be74db5a6"
DONE = ["Closed", "Resolved"]
FIXTURE = "workitem-updated-state-active-to-resolved.json"


def queue_host_json(**queues: Any) -> dict[str, Any]:
    """The app's host.json with some `extensions.queues` options replaced."""
    document: dict[str, Any] = json.loads((ROOT / "host.json").read_text())
    document["extensions"]["queues"].update(queues)
    return document


@contextlib.contextmanager
def private_bundle(*, host_json: dict[str, Any] | None = None, persistent_dir: str | None = None
                   ) -> Iterator[tuple[Bundle, azurite_process.Azurite, Services]]:
    """The function app on its own devhost and its own Azurite (other tests' data is never touched),
    with services (real queues) for the test to seed and inspect that Azurite.

    The app code reads storage settings from the process environment, so while this runs the
    process points at the private Azurite; everything is restored (and client caches dropped) after.
    """
    own = azurite_process.start(location=persistent_dir)
    saved = os.environ.get("AzureWebJobsStorage")
    host = bundle_host(own.connection_string, host_json=host_json)
    config.reset()
    storage.reset()
    try:
        host.start()
        storage.reset()
        yield Bundle(host.url), own, compose.build()
    finally:
        host.stop()
        own.stop()
        if saved is None:
            os.environ.pop("AzureWebJobsStorage", None)
        else:
            os.environ["AzureWebJobsStorage"] = saved
        config.reset()
        storage.reset()
        states.forget()


def queue_count(name: str) -> int:
    """Approximate number of messages in a queue (visible or not); 0 when it does not exist."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        props = storage.queue(name).get_queue_properties()
    except ResourceNotFoundError:
        return 0
    return int(props.approximate_message_count or 0)


@dataclass
class Seeded:
    """One integration and organization with `len(keys)` groups, group `g<i>` linked to work item `keys[i]`."""

    account: str
    org: str
    keys: list[str]
    secret: str = SECRET
    groups: list[str] = field(default_factory=list)

    def payload(self, key: str, rev: int, old: str | None, new: str, *, event_id: str,
                assigned_to: str | None = None) -> dict[str, Any]:
        data = copy.deepcopy(load_fixture(FIXTURE))
        data["id"] = event_id
        data["resourceContainers"]["collection"]["id"] = self.account
        resource = data["resource"]
        resource["workItemId"] = int(key)
        resource["rev"] = rev
        resource["id"] = rev
        resource["revision"]["rev"] = rev
        resource["revision"]["id"] = int(key)
        fields = resource["fields"]
        fields["System.Rev"] = {"oldValue": rev - 1, "newValue": rev}
        if new:
            fields["System.State"] = {"oldValue": old, "newValue": new}
        else:
            fields.pop("System.State")
        if assigned_to is not None:
            fields["System.AssignedTo"] = {"newValue": assigned_to}
        return data


def seed(svc: Services, uid: str, count: int, *, group_for: Callable[[int], str] = lambda i: f"g{i}",
         config_: dict[str, Any] | None = None, parallel: int = 8) -> Seeded:
    """An integration with a known secret, an org link syncing inbound, and linked groups (direct to storage)."""
    world = Seeded(account=f"acc-{uid}", org=f"org-{uid}", keys=[str(1000 + i) for i in range(count)])
    integrations = svc.store.integrations
    integrations.save(Integration(account_id=world.account, account_name="acme",
                                  domain_name="https://acme.example/", secret_hash=hash_secret(SECRET)))
    integrations.save_org_link(OrgLink(account_id=world.account, org_id=world.org, config=config_ or {
        "sync_status_reverse": True, "sync_reverse_assignment": True}))
    keys_of: dict[str, list[str]] = {}
    for index, key in enumerate(world.keys):
        keys_of.setdefault(group_for(index), []).append(key)
    world.groups = list(keys_of)

    def make(group: str) -> None:
        svc.store.groups.put(Group(org_id=world.org, group_id=group, project_id="p1", title=f"Boom {group}"))
        for key in keys_of[group]:
            svc.store.groups.add_link(Link(org_id=world.org, group_id=group, account_id=world.account, key=key,
                                           project_id=PROJECT, work_item_type="Bug"))

    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(make, world.groups))
    svc.store.cache.put(world.account, f"states|{PROJECT}|Bug", DONE, ttl=3600)
    states.forget()
    return world


class Sender:
    """Posts webhooks from many threads, one keep-alive session per thread."""

    def __init__(self, url: str) -> None:
        self.url = f"{url}/api/vsts/issue-updated"
        self._local = threading.local()

    def session(self) -> requests.Session:
        http = getattr(self._local, "http", None)
        if http is None:
            http = self._local.http = requests.Session()
            http.trust_env = False
        return http

    def post(self, payload: Any, *, secret: str | None = SECRET, raw: bytes | None = None,
             timeout: float = 60) -> requests.Response:
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers["shared-secret"] = secret
        body = raw if raw is not None else json.dumps(payload).encode()
        return self.session().post(self.url, data=body, headers=headers, timeout=timeout)
