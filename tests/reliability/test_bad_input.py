"""10,000 malformed or hostile requests to the webhook and the management API over HTTP.

Every input is invalid by construction (or, for the webhook, authenticated but aimed at no linked
work item), so the bundle must answer each with a 4xx (or the webhook's 200 "ignored"), never a 5xx,
and storage must end exactly as seeded. Runs on its own Azurite so the whole storage account can
be compared before and after.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import requests
from azure.data.tables import TableServiceClient
from conftest import MANAGE_KEY
from reliability_support import SECRET, Seeded, private_bundle, queue_count, seed

from shared.core.errors import InvalidInput
from shared.core.models import Repository, User

TOTAL = 10_000
SEED = 20261124
WEBHOOK_OK = {200, 400, 401, 413}
MANAGE_OK = {400, 401, 404, 405, 413, 422}
FORBIDDEN = ["/", "\\", "#", "?", "|", "\x00", "\x01", "\x1f", "\x7f", "\x85", "\n", "\r", "\t"]
UNICODE = ["ü", "名前", "🦄", "\u202e", "\u200b", "\ufeff", "ǅ", "\U0001d518\U0001d52b\U0001d526", "é" * 100, "\uffff"]
WRONG_TYPES: list[Any] = [0, -1, 1.5, 10**30, True, False, [], [1, "a"], {}, {"a": 1}]
QUEUES = ("sync-outbound", "subscription-check", "migrate-repo", "tracker-events")


@dataclass
class Probe:
    kind: str
    method: str
    path: str
    body: bytes | None
    headers: dict[str, str]


def deep(levels: int, rng: random.Random) -> str:
    opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
    return opener * levels + "1" + closer * levels


def hostile_text(rng: random.Random) -> str:
    choice = rng.randrange(5)
    if choice == 0:
        return rng.choice(UNICODE) * rng.randint(1, 5)
    if choice == 1:
        return "x" * rng.choice([257, 4001, 40_000, 600_000])
    if choice == 2:
        return "".join(rng.choice(FORBIDDEN + UNICODE + ["a"]) for _ in range(rng.randint(1, 20)))
    if choice == 3:
        return "<script>alert(1)</script>' OR 1=1 --"
    return "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(1, 50)))


def hostile_value(rng: random.Random) -> Any:
    pick = rng.randrange(4)
    if pick == 0:
        return rng.choice(WRONG_TYPES)
    if pick == 1:
        return hostile_text(rng)
    if pick == 2:
        return json.loads(deep(rng.randint(10, 400), rng))
    return None


def hostile_id(rng: random.Random) -> str:
    """A path segment that must not address a stored record (a forbidden character, or too long/empty)."""
    pick = rng.randrange(4)
    if pick == 0:
        return f"id{rng.choice(FORBIDDEN)}{rng.randrange(100)}"
    if pick == 1:
        return "z" * rng.choice([257, 1000, 5000])
    if pick == 2:
        return rng.choice([" ", "\t", "%", "%2F", "..", "../.."]) + rng.choice(FORBIDDEN)
    return rng.choice(UNICODE) + rng.choice(FORBIDDEN)


def header_safe(value: str) -> str:
    """UTF-8 bytes as latin-1 text, minus what HTTP clients refuse to send (CR, LF, NUL, leading space)."""
    text = value.encode("utf-8").decode("latin-1")
    return "".join(c for c in text if c not in "\r\n\x00").lstrip()


def enc(segment: str) -> str:
    return quote(segment, safe="")


class Generator:
    """Builds probe `i` deterministically (seeded per index, so any failure can be replayed)."""

    def __init__(self, world: Seeded, ghosts: list[str]) -> None:
        self.world = world
        self.ghosts = ghosts  # valid ids that must never be created

    def probe(self, index: int) -> Probe:
        rng = random.Random(SEED * 100_003 + index)
        makers: list[Callable[[random.Random], Probe]] = [self.webhook, self.manage_body, self.manage_path,
                                                          self.manage_auth]
        return makers[index % len(makers)](rng)

    # -- webhook ---------------------------------------------------------------------------------

    def envelope(self, rng: random.Random) -> dict[str, Any]:
        return self.world.payload("999999", rng.randint(1, 50), "Active", "Resolved", event_id=f"evt-{rng.random()}")

    def webhook(self, rng: random.Random) -> Probe:
        pick = rng.randrange(10)
        headers = {"Content-Type": "application/json"}
        payload: Any = self.envelope(rng)
        secret: str | None = rng.choice([None, "", "wrong", SECRET + "x", SECRET[:-1], hostile_text(rng)[:200]])
        body: bytes | None = None
        if pick == 0:  # broken JSON
            text = json.dumps(payload)
            body = text[: rng.randrange(len(text))].encode() + rng.choice([b"", b"\xff", b"}", b"]]]"])
        elif pick == 1:  # not an object
            body = json.dumps(rng.choice([[], [payload], 1, "x", None, True])).encode()
        elif pick == 2:  # deep nesting, at the top or inside the envelope
            levels = rng.choice([100_000, 5_000, 990])
            body = deep(levels, rng).encode() if rng.random() < 0.5 else \
                json.dumps(payload).replace('"resource":', f'"resource": {deep(levels, rng)}, "x":', 1).encode()
        elif pick == 3:  # wrong types in the envelope, right secret, never the linked work item
            secret = SECRET
            slot = rng.choice(["eventType", "collection", "resource", "fields", "workItemId", "rev", "state",
                               "assigned"])
            value = hostile_value(rng)
            if slot == "eventType":
                payload["eventType"] = value
            elif slot == "collection":
                payload["resourceContainers"]["collection"] = rng.choice([value, {"id": value}])
            elif slot == "resource":
                payload["resource"] = value
                payload["resource"] = value if not isinstance(value, dict) else {**value, "workItemId": "x"}
            elif slot == "fields":
                payload["resource"]["fields"] = value
            elif slot == "workItemId":
                payload["resource"]["workItemId"] = rng.choice(
                    [-1, 0, 1.5, "1000a", "", None, [1000], {"id": 1000}, True, "1e3", "0x3e8", 2**64,
                     "9" * 25, "\uff11\uff10\uff10\uff10", "\uff11\uff10\uff10\uff10\u0660"])
            elif slot == "rev":
                payload["resource"]["rev"] = value
                payload["resource"]["revision"]["rev"] = hostile_value(rng)
            elif slot == "state":
                payload["resource"]["fields"]["System.State"] = rng.choice([value, {"oldValue": value,
                                                                                    "newValue": value}])
            else:
                payload["resource"]["fields"]["System.AssignedTo"] = {"newValue": rng.choice(
                    [value, f"Name <{hostile_text(rng)[:300]}>", {"uniqueName": value}])}
        elif pick == 4:  # forbidden characters or unicode in the collection id
            payload["resourceContainers"]["collection"]["id"] = rng.choice(
                [self.world.account + rng.choice(FORBIDDEN), hostile_id(rng), rng.choice(UNICODE)])
            secret = rng.choice([SECRET, None])
        elif pick == 5:  # huge strings (under the 2 MiB limit)
            payload["resource"]["fields"]["System.Title"] = {"newValue": "x" * rng.choice([100_000, 1_500_000])}
        elif pick == 6:  # oversized
            body = b'{"eventType": "workitem.updated", "pad": "' + b"x" * (2 * 1024 * 1024 + 10) + b'"}'
            if rng.random() < 0.9:
                body = b'{"a": 1}'  # the oversized ones are expensive: only a tenth of this bucket
                body += b" " * rng.randint(0, 10)
        elif pick == 7:  # garbled credentials
            headers["Authorization"] = rng.choice(["Basic !!!", "Basic " + "A" * 5000, "Basic w6k=",
                                                   "Bearer " + SECRET, "Basic", "basic Og=="])
        elif pick == 8:  # invalid UTF-8 and control bytes
            body = bytes(rng.randrange(256) for _ in range(rng.randint(1, 2000)))
        else:  # unicode everywhere, right secret, unknown work item
            secret = SECRET
            payload["resource"]["fields"]["System.State"] = {"oldValue": rng.choice(UNICODE),
                                                             "newValue": rng.choice(UNICODE)}
            payload["resource"]["fields"][rng.choice(UNICODE)] = rng.choice(UNICODE)
        if secret is not None:
            headers["shared-secret"] = header_safe(secret)
        if body is None:
            body = json.dumps(payload).encode()
        return Probe("webhook", "POST", "/api/vsts/issue-updated", body, headers)

    # -- management API ----------------------------------------------------------------------------

    def routes(self, rng: random.Random, ids: Callable[[], str]) -> tuple[str, str, dict[str, Any] | None]:
        """(method, path, a body certainly rejected by the route's validation, or None for GET)."""
        account, org = ids(), ids()
        pick = rng.randrange(12)
        noise = {hostile_text(rng)[:50]: hostile_value(rng) for _ in range(rng.randint(0, 3))}
        bad = rng.choice([v for v in WRONG_TYPES if v is not None])
        if pick == 0:
            return "PUT", f"manage/integrations/{account}", {**noise, "account_name": bad, "organization_id": org,
                                                             "identity": {"kind": "pat", "access_token": "x"}}
        if pick == 1:
            return "GET", f"manage/integrations/{account}", None
        if pick == 2:
            return "PUT", f"manage/integrations/{account}/organizations/{org}/config", {
                **noise, "not-a-setting": hostile_value(rng), "sync_status_reverse": True}
        if pick == 3:
            return "POST", f"manage/integrations/{account}/organizations/{org}/issues", {
                **noise, "group_id": bad, "project": "p", "work_item_type": "Bug", "title": "t"}
        if pick == 4:
            return "POST", f"manage/integrations/{account}/organizations/{org}/issues/link", {
                **noise, "group_id": bad, "key": rng.choice(["1000", 1000, hostile_value(rng)])}
        if pick == 5:
            field = rng.choice(["", "externalissue", hostile_text(rng)[:100], "external Issue", "externalIssue\x00"])
            return "GET", f"manage/integrations/{account}/search?field={quote(field)}&query=x", None
        if pick == 6:
            return "PUT", f"manage/organizations/{org}/users/{ids()}", {
                **noise, "emails": rng.choice([0, 1.5, True, {}, "a@b.c", [bad], ["no-at-sign"], [""],
                                               ["a@b"] * 201])}
        if pick == 7:
            return "GET", f"manage/organizations/{org}/users/{ids()}", None
        if pick == 8:
            return "PUT", f"manage/organizations/{org}/groups/{ids()}", {
                **noise, "project_id": rng.choice([bad, "a/b", "", "x" * 300]), "title": "t"}
        if pick == 9:
            return "PATCH", f"manage/organizations/{org}/groups/{ids()}", rng.choice([
                {**noise, "status": rng.choice([bad, "closed", "RESOLVED", hostile_text(rng)[:100]])},
                {k: v for k, v in noise.items() if k not in ("status", "assignee")}])
        if pick == 10:
            return "GET", f"manage/organizations/{org}/groups/{ids()}", None
        return "PUT", f"manage/organizations/{org}/repositories/{ids()}", {
            **noise, "name": bad, "provider": "integrations:vsts"}

    def seeded_or_ghost(self, rng: random.Random) -> Callable[[], str]:
        """Ids of the seeded records, or valid ids that exist nowhere (they must stay that way)."""
        pool = [self.world.account, self.world.org, "g0", "u1", "r1", *self.ghosts]
        return lambda: enc(rng.choice(pool))

    def manage_body(self, rng: random.Random) -> Probe:
        method, path, body = self.routes(rng, self.seeded_or_ghost(rng))
        raw: bytes | None = None if body is None else json.dumps(body).encode()
        if method != "GET":
            pick = rng.randrange(6)
            if pick == 0:
                raw = (raw or b"{}")[: rng.randrange(max(1, len(raw or b"{}")))] + b"\xff"
            elif pick == 1:
                raw = deep(rng.choice([100_000, 3_000]), rng).encode()
            elif pick == 2:
                raw = json.dumps(rng.choice([[], "x", 1, None, [body]])).encode()
            elif pick == 3 and rng.random() < 0.2:
                raw = b'{"name": "' + b"x" * (1024 * 1024 + 1) + b'"}'
        return Probe("manage", method, f"/api/{path}", raw, self.auth())

    def manage_path(self, rng: random.Random) -> Probe:
        method, path, body = self.routes(rng, lambda: enc(hostile_id(rng)))
        if method != "GET" and rng.random() < 0.5:
            body = {"project_id": "p", "title": "t", "emails": ["a@b.c"], "name": "n", "provider": "p",
                    "status": "resolved", "account_name": "a", "organization_id": "o",
                    "identity": {"kind": "pat", "access_token": "x"}}  # a valid body: the ids alone must fail
        if rng.random() < 0.1:
            method = rng.choice(["DELETE", "POST", "PATCH"]) if method != "POST" else "DELETE"
        raw = None if body is None else json.dumps(body).encode()
        return Probe("manage", method, f"/api/{path}", raw, self.auth())

    def manage_auth(self, rng: random.Random) -> Probe:
        method, path, body = self.routes(rng, self.seeded_or_ghost(rng))
        valid = {"project_id": "p1", "title": "t", "status": "resolved", "emails": ["a@b.c"], "name": "n",
                 "provider": "p"}
        header = rng.choice([None, "", "Bearer", "Bearer ", f"Bearer {MANAGE_KEY}x", f"Bearer {MANAGE_KEY[:-1]}",
                             f"Basic {MANAGE_KEY}", f"bearer  {MANAGE_KEY} extra", "Bearer " + "k" * 10_000,
                             f"Bearer {MANAGE_KEY}\u00e9"])
        headers = {} if header is None else {"Authorization": header_safe(header)}
        raw = None if method == "GET" else json.dumps(rng.choice([valid, body])).encode()
        return Probe("manage", method, f"/api/{path}", raw, headers)

    @staticmethod
    def auth() -> dict[str, str]:
        return {"Authorization": f"Bearer {MANAGE_KEY}", "Content-Type": "application/json"}


def absent(read: Callable[..., Any], *ids: str) -> bool:
    """No record under these ids (an id the store refuses cannot have one)."""
    try:
        return read(*ids) is None
    except InvalidInput:
        return True


def allowed(kind: str, method: str) -> set[int]:
    if kind == "webhook":
        return WEBHOOK_OK
    return MANAGE_OK | {200} if method == "GET" else MANAGE_OK  # reading a seeded record is fine


def snapshot(connection: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (last_delivery aside: an authenticated delivery may record it)."""
    service = TableServiceClient.from_connection_string(connection)
    rows: dict[str, list[tuple[Any, ...]]] = {}
    for table in service.list_tables():
        client = service.get_table_client(table.name)
        rows[table.name] = sorted(
            tuple(sorted((k, repr(v)) for k, v in entity.items() if k != "last_delivery"))
            for entity in client.list_entities())
    return rows


@pytest.mark.slow
def test_ten_thousand_hostile_requests_change_nothing_and_never_fail(uid: str) -> None:
    with private_bundle() as (bundle, own, svc):
        world = seed(svc, uid, 1)
        svc.store.users.put(User(org_id=world.org, user_id="u1", emails=["ann@example.com"], projects=["p1"]))
        svc.store.repositories.put(Repository(org_id=world.org, repo_id="r1", name="web", provider="integrations:vsts",
                                        external_id="x", integration_id=world.account))
        ghosts = [f"ghost-{uid}", "ü", "名前", "🦄", "a b", "x" * 256, "'; DROP TABLE Groups; --", "1000"]
        before = snapshot(own.connection_string)
        generator = Generator(world, ghosts)
        local = threading.local()

        def send(index: int) -> tuple[int, str, int]:
            http = getattr(local, "http", None)
            if http is None:
                http = local.http = requests.Session()
                http.trust_env = False
            probe = generator.probe(index)
            try:
                response = http.request(probe.method, bundle.url + probe.path, data=probe.body,
                                        headers=probe.headers, timeout=60)
            except requests.ConnectionError:
                # The server may close the connection of a request it refused before reading the body.
                local.http = None
                return index, probe.kind, -1
            return index, probe.kind, response.status_code

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(send, range(TOTAL)))

        statuses = Counter((kind, status) for _, kind, status in results)
        unexpected = [(i, kind, status) for i, kind, status in results
                      if status not in allowed(kind, generator.probe(i).method)]
        assert not unexpected, (f"{len(unexpected)} unexpected answers, e.g. "
                                f"{[(i, k, s, generator.probe(i).path[:120]) for i, k, s in unexpected[:8]]}; "
                                f"all: {statuses}")
        assert sum(n for (kind, status), n in statuses.items() if status in (401, 400, 413, 422)) > TOTAL // 2
        assert statuses[("manage", 413)] > 0 and statuses[("webhook", 413)] > 0

        assert snapshot(own.connection_string) == before, "hostile input changed storage"
        assert all(queue_count(name) == 0 for name in QUEUES), "hostile input queued work"
        for ghost in ghosts:
            assert absent(svc.store.users.get, world.org, ghost) and absent(svc.store.groups.get, world.org, ghost)
            assert absent(svc.store.integrations.get, ghost) and absent(svc.store.repositories.get, world.org, ghost)
        assert bundle.http.get(f"{bundle.url}/api/health", timeout=30).status_code == 200
