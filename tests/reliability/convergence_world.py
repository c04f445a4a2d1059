"""The world a convergence interleaving runs in: the bundle's flows on Azurite and the HTTPS sandbox ADO,
with a queue that behaves like the Functions host's and a clock the test moves.

- `HostQueue`: messages with visibility times; a handler that raises makes its message visible again
  after host.json's `visibilityTimeout` (nothing the handler says changes that) and `maxDequeueCount`
  failures poison it, as on the real host. Time is virtual (`Clock`), so a 10 s retry or a
  three-minute lease costs nothing.
- `Faulty`: an ADO connector whose clients fail chosen calls (before the call: nothing happened; after
  it: the outcome is unknown, like a timeout) or run other actions in the middle of a call (a slow
  call overtaken by an edit, a hook, another push), and whose retry sleeps move the virtual clock.
- `FailingGroups`: the group store, failing one chosen write (before it or after it was stored).
- Hook deliveries are held by the sandbox and delivered by the test: dropped, twice, out of order.
"""

from __future__ import annotations

import json
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shared import compose
from shared.compose import Services
from shared.core import outbound as plan
from shared.core.errors import AdoServerError, AdoTimeout, StorageUnavailable, TransientError
from shared.core.models import Group, Identity, Integration, OrgLink, User
from shared.core.secrets import hash_secret
from shared.core.workitems import marker
from shared.flows import inbound, jobs, lifecycle, outbound, workitems

ROOT = Path(__file__).resolve().parents[2]
SECRET = "convergence-" + "d" * 52
DONE = ("Resolved", "Closed")
USERS = {"ann": "ann@example.com", "bob": "bob@example.com"}
WEBHOOK = "https://sync.example.test/api/vsts/issue-updated"
# One tracker organization (and its users) for every interleaving of a test session: each interleaving
# has its own integration, organization link and groups.
TRACKER_ORG = f"cvorg{uuid.uuid4().hex[:10]}"
_users_put: list[bool] = []
_users_lock = threading.Lock()


def host_queue_options() -> tuple[float, int]:
    """host.json's `visibilityTimeout` (seconds) and `maxDequeueCount`: the real host's retry timing."""
    queues = json.loads((ROOT / "host.json").read_text())["extensions"]["queues"]
    hours, minutes, seconds = (float(part) for part in queues["visibilityTimeout"].split(":"))
    return hours * 3600 + minutes * 60 + seconds, int(queues["maxDequeueCount"])


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


@dataclass
class Message:
    queue: str
    body: dict[str, Any]
    visible_at: float
    dequeue_count: int = 0


@dataclass
class HostQueue:
    """Storage queues as the Functions host consumes them (see the module docstring)."""

    clock: Clock
    visibility_timeout: float
    max_dequeue_count: int
    handlers: dict[str, Callable[[dict[str, Any]], None]] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    poisoned: list[Message] = field(default_factory=list)

    def send(self, queue: str, message: dict[str, Any], /, *, delay: float | None = None) -> None:
        self.messages.append(Message(queue, json.loads(json.dumps(message)), self.clock() + (delay or 0.0)))

    def visible(self) -> list[Message]:
        return [m for m in self.messages if m.visible_at <= self.clock() and m.queue in self.handlers]

    def run(self, message: Message, handler: Callable[[dict[str, Any]], None] | None = None) -> None:
        """One delivery of `message` to its trigger (or `handler`), with the host's policy on failure."""
        self.messages.remove(message)
        message.dequeue_count += 1
        handler = handler or self.handlers[message.queue]
        try:
            jobs.run(message.queue, json.dumps(message.body).encode(), handler, send=self.send,
                     dequeue_count=message.dequeue_count)
        except Exception:
            if message.dequeue_count >= self.max_dequeue_count:
                self.poisoned.append(message)
            else:
                message.visible_at = self.clock() + self.visibility_timeout
                self.messages.append(message)

    def drain(self, rng: random.Random | None = None, *, limit: int = 500) -> None:
        """Run messages until none is left, moving the clock to the next visible one (any order with `rng`)."""
        for _ in range(limit):
            pending = [m for m in self.messages if m.queue in self.handlers]
            if not pending:
                return
            ready = self.visible()
            if not ready:
                self.clock.advance(min(m.visible_at for m in pending) - self.clock())
                continue
            self.run(rng.choice(ready) if rng else min(ready, key=lambda m: m.visible_at))
        raise AssertionError("the queues never went quiet")


class Faulty:
    """An ADO connector whose clients obey `plan[(method)]`: a list of `(when, action)` consumed one per call;
    `when` is "before" or "after" the real call, `action` a callable (it may raise)."""

    def __init__(self, connector: Callable[[Integration], Any], clock: Clock) -> None:
        self._connector = connector
        self._clock = clock
        self._client: Any = None
        self.plan: dict[str, list[tuple[str, Callable[[], None]]]] = {}

    def __call__(self, integration: Integration) -> Any:
        if self._client is None:  # one client (a PAT never needs refreshing): no identity read per call
            self._client = self._connector(integration)
            self._client._sleep = self._clock.advance  # a retry's wait passes in virtual time
        return _FaultyClient(self._client, self)


class _FaultyClient:
    def __init__(self, real: Any, owner: Faulty) -> None:
        self._real, self._owner = real, owner

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._real, name)
        if not self._owner.plan.get(name):
            return method

        def call(*args: Any, **kwargs: Any) -> Any:
            steps = self._owner.plan.get(name) or []
            when, action = steps.pop(0) if steps else ("", lambda: None)
            if when == "before":
                action()
            result = method(*args, **kwargs)
            if when == "after":
                action()
            return result

        return call


def unavailable() -> None:
    raise AdoServerError("Azure DevOps failed (HTTP 500, injected)", http_status=500)


def timed_out() -> None:
    raise AdoTimeout("Azure DevOps did not answer in time (injected)")


class FailingGroups:
    """The group store, with one write (`change` or `add_link` call number `at`) failing before or after it."""

    def __init__(self, real: Any, *, at: int, after: bool) -> None:
        self._real, self._at, self._after, self.calls = real, at, after, 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._real, name)
        if name not in ("change", "add_link"):
            return method

        def write(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            failing = self.calls == self._at
            if failing and not self._after:
                raise StorageUnavailable("Table storage answered 503 (injected)")
            result = method(*args, **kwargs)
            if failing:
                raise StorageUnavailable("Table storage answered 503 after the write (injected)")
            return result

        return write


@dataclass
class World:
    """One integration on its own sandbox organization, with groups and their work items."""

    sandbox: Any
    uid: str
    clock: Clock
    queue: HostQueue
    ado: Faulty
    svc: Services
    org: str
    account_id: str
    project_id: str
    groups: list[str]
    hooks: list[dict[str, Any]] = field(default_factory=list)  # deliveries Azure DevOps still owes
    keys: dict[str, str] = field(default_factory=dict)

    @property
    def org_id(self) -> str:
        return TRACKER_ORG

    def key(self, group_id: str) -> str | None:
        """The group's work item id once it is linked (a link never changes in these runs)."""
        if group_id not in self.keys:
            state = self.svc.store.groups.read(self.org_id, group_id)
            links = [link.key for link in state.links.values()] if state else []
            if not links:
                return None
            self.keys[group_id] = links[0]
        return self.keys[group_id]

    def collect_hooks(self) -> None:
        self.hooks += self.sandbox.take_held_deliveries(self.org)

    def deliver(self, hook: dict[str, Any], svc: Services | None = None) -> bool:
        """POST one delivery to the webhook flow; True when it was accepted (else Azure DevOps retries)."""
        headers = {name.lower(): value for name, value in hook["headers"].items()}
        try:
            return inbound.handle(svc or self.svc, json.dumps(hook["payload"]).encode(), headers).status == 200
        except TransientError:
            return False

    def create(self, group_id: str, svc: Services | None = None) -> bool:
        """Create the group's work item as the management API does; False when it failed (retry later)."""
        body = {"group_id": group_id, "project": self.project_id, "work_item_type": "Bug",
                "title": f"Boom {group_id}", "description": "It broke."}
        try:
            workitems.create_issue(svc or self.svc, self.account_id, self.org_id, body)
        except (TransientError, StorageUnavailable):
            return False
        except Exception as error:  # 409 while a failed attempt's claim is fresh
            if getattr(error, "status", None) == 409:
                return False
            raise
        return True

    def items_for(self, group_id: str) -> list[dict[str, Any]]:
        """Every work item of the organization carrying the group's creation marker."""
        tag = marker(self.account_id, self.org_id, group_id).lower()
        with self.sandbox.state.lock:
            items = list(self.sandbox.state.org(self.org).work_items.values())
            return [dict(item.fields, id=item.id) for item in items
                    if tag in str(item.fields.get("System.Tags") or "").lower()]

    def check(self) -> None:
        """A subscription check (which reconciles), through the host's queue policy."""
        self.queue.send(lifecycle.QUEUE, {"integration_id": self.account_id, "organization_id": self.org_id})


def build(sandbox: Any, uid: str, now: float, *, groups: int) -> World:
    """A fresh organization in the sandbox (hook deliveries held), an integration syncing both ways."""
    visibility, max_dequeue = host_queue_options()
    clock = Clock(now)
    queue = HostQueue(clock, visibility, max_dequeue)
    base = compose.build(clock=clock, send=queue.send)
    ado = Faulty(base.ado, clock)
    svc = replace(base, ado=ado)
    queue.handlers = {plan.QUEUE: lambda m: outbound.sync_work_item(svc, m),
                      lifecycle.QUEUE: lambda m: lifecycle.check_subscription(svc, m),
                      "tracker-events": lambda m: None}
    org = f"cv{uid}"
    account_id = sandbox.add_organization(org)
    project_id = sandbox.add_project(org, "Fabrikam")
    for user_id, email in USERS.items():
        sandbox.add_user(org, user_id.title(), email)
    pat = sandbox.add_pat(org)
    sandbox.hold_deliveries(org)
    hook = sandbox.state.add_subscription(sandbox.state.org(org), {
        "publisherId": "tfs", "eventType": "workitem.updated", "resourceVersion": "1.0", "consumerId": "webHooks",
        "consumerActionId": "httpRequest",
        "consumerInputs": {"url": WEBHOOK, "basicAuthUsername": "", "basicAuthPassword": SECRET}})
    store = svc.store
    store.integrations.save(Integration(account_id=account_id, account_name=org, domain_name=sandbox.instance_url(org),
                                        subscription_id=hook.data["id"], subscription_status="enabled",
                                        secret_hash=hash_secret(SECRET)))
    store.integrations.save_identity(account_id, Identity(kind="pat", access_token=pat))
    store.integrations.save_org_link(OrgLink(account_id=account_id, org_id=TRACKER_ORG, config={
        "sync_status_forward": {project_id: {"on_resolve": "Resolved", "on_unresolve": "Active"}},
        "sync_status_reverse": True, "sync_forward_assignment": True, "sync_reverse_assignment": True}))
    with _users_lock:
        if not _users_put:
            for user_id, email in USERS.items():
                store.users.put(User(org_id=TRACKER_ORG, user_id=user_id, emails=[email], projects=["p1"]))
            _users_put.append(True)
    names = [f"g{n}-{uid}" for n in range(1, groups + 1)]
    for name in names:
        store.groups.put(Group(org_id=TRACKER_ORG, group_id=name, project_id="p1", title=f"Boom {name}"))
    return World(sandbox, uid, clock, queue, ado, svc, org, account_id, project_id, names)


def divergence(world: World) -> list[str]:
    """What differs between each group and its work item (empty: converged), and doubled work items."""
    found: list[str] = []
    for group_id in world.groups:
        state = world.svc.store.groups.read(world.org_id, group_id)
        assert state is not None
        items = world.items_for(group_id)
        links = list(state.links.values())
        if len(items) != 1 or len(links) != 1 or str(items[0]["id"]) != links[0].key:
            found.append(f"{group_id}: {len(items)} work items, links {[link.key for link in links]}")
            continue
        item = items[0]
        status = "resolved" if item.get("System.State") in DONE else "unresolved"
        email = str(item.get("System.AssignedTo") or "").rsplit("<", 1)[-1].rstrip(">").lower()
        assignee = next((user for user, address in USERS.items() if address == email), None)
        if (state.group.status, state.group.assignee) != (status, assignee):
            found.append(f"{group_id}: group {state.group.status}/{state.group.assignee}, work item "
                         f"{item.get('System.State')}/{item.get('System.AssignedTo')}")
    return found
