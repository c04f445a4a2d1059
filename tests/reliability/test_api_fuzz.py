"""A fuzz pass of the management API and the webhook, driven by the served OpenAPI document (schemathesis).

Against a bundle of its own (devhost, private Azurite, sandbox Azure DevOps) with one installed
organization, a user, a linked group and a repository, every operation gets valid and invalid
requests, half of them aimed at those records. For every request:
- no answer is a 500;
- no answer (body or headers) holds a secret: the management key, the PAT, the service hook's
  secret or its stored hash, the OAuth client secret;
- a valid request with a wrong management key is a 401 and changes nothing;
- a rejected request (4xx) changes nothing: every stored row (but the ADO lookup cache) and every
  queue's length are the same after it as before.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from conftest import MANAGE_KEY, Bundle
from fuzz_support import Run, fuzz, load
from reliability_support import private_bundle
from schemathesis import Case, GenerationMode

from shared.adapters import groups, integrations, repositories, storage, users
from shared.core.secrets import hash_secret

MAX_EXAMPLES = 5
TABLES = (integrations.TABLE, groups.TABLE, users.TABLE, repositories.TABLE)
# `tracker-events` is left out, and so are the event outbox rows below: the relay drains them in the
# background whatever a request does (an event is only ever written together with a change, which
# the group rows show).
QUEUES = ("subscription-check", "migrate-repo", "sync-outbound")
WRONG_KEY = "not-" + MANAGE_KEY
POOL = ThreadPoolExecutor(len(TABLES) + len(QUEUES))  # a snapshot reads every table and queue at once


def _rows(name: str) -> dict[tuple[str, str, str], Any]:
    return {(name, e["PartitionKey"], e["RowKey"]): (dict(e), e.metadata["etag"])
            for e in storage.table(name).list_entities()
            if not (name == groups.TABLE and e["RowKey"].startswith("event|"))}


def _length(queue: str) -> int:
    try:
        return int(storage.queue(queue).get_queue_properties().approximate_message_count or 0)
    except ResourceNotFoundError:  # nobody has written to it yet
        return 0


def stored_state() -> tuple[dict[tuple[str, str, str], Any], dict[str, int]]:
    """Every row (with its ETag, so a rewrite counts) of the bundle's tables, and every queue's length."""
    tables = list(POOL.map(_rows, TABLES))
    lengths = dict(zip(QUEUES, POOL.map(_length, QUEUES), strict=True))
    return {key: row for found in tables for key, row in found.items()}, lengths


def changes(before: Any, after: Any) -> list[str]:
    rows_before, queues_before = before
    rows_after, queues_after = after
    found = [f"row {key} {'added' if key not in rows_before else 'removed' if key not in rows_after else 'changed'}"
             for key in sorted(set(rows_before) | set(rows_after)) if rows_before.get(key) != rows_after.get(key)]
    found += [f"queue {q}: {queues_before[q]} → {queues_after[q]} messages" for q in QUEUES
              if queues_before[q] != queues_after[q]]
    return found


class Checks:
    """The per-case checks, with the secrets no answer may show."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = [s for s in secrets if s]

    def __call__(self, run: Run, case: Case) -> list[str]:
        problems: list[str] = []
        managed = case.operation.path.startswith("/manage/")
        before = stored_state()
        if managed and case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE:
            answer = run.send(case, WRONG_KEY)
            if answer.status_code != 401:
                problems.append(f"a wrong key was answered {answer.status_code}")
            after = stored_state()
            problems += [f"after a wrong key: {c}" for c in changes(before, after)]
            before = after
        answer = run.send(case, MANAGE_KEY if managed else None)
        if answer.status_code == 500:
            problems.append(f"500: {answer.text[:200]}")
        shown = answer.text + " ".join(f"{k}: {v}" for k, v in answer.headers.items())
        problems += [f"the answer shows a secret ({secret[:4]}…)" for secret in self.secrets if secret in shown]
        if 400 <= answer.status_code < 500:
            problems += [f"rejected with {answer.status_code}, yet {c}" for c in changes(before, stored_state())]
        return problems


def seed(bundle: Bundle, sandbox: Any, uid: str) -> tuple[dict[str, list[str]], list[str]]:
    """An installed organization (no sync configured, so nothing queues work), a user, a linked group
    and a repository: their ids per path parameter, and the secrets involved."""
    name, org = f"rf{uid}", f"trf{uid}"
    account = sandbox.add_organization(name)
    sandbox.add_project(name, "Web")
    pat = sandbox.add_pat(name)
    status, _ = bundle.api("PUT", f"manage/integrations/{account}", {
        "account_name": name, "organization_id": org, "domain_name": sandbox.instance_url(name),
        "identity": {"kind": "pat", "access_token": pat}})
    assert status == 200
    assert bundle.api("PUT", f"manage/organizations/{org}/users/ann", {"emails": ["ann@example.com"]})[0] == 200
    assert bundle.api("PUT", f"manage/organizations/{org}/groups/g1", {"project_id": "web", "title": "Boom"})[0] == 200
    key = str(sandbox.create_work_item(name, "Web", "Bug", title="Boom")["id"])
    assert bundle.api("POST", f"manage/integrations/{account}/organizations/{org}/issues/link",
                      {"group_id": "g1", "key": key})[0] == 200
    assert bundle.api("PUT", f"manage/organizations/{org}/repositories/r1", {"name": "web", "provider": "github"})[0] \
        == 200
    [hook] = sandbox.subscriptions(name)
    hook_secret = hook["consumerInputs"]["basicAuthPassword"]
    known = {"account_id": [account], "org_id": [org], "group_id": ["g1"], "user_id": ["ann"], "repo_id": ["r1"],
             "key": [key]}
    return known, [MANAGE_KEY, pat, hook_secret, hash_secret(hook_secret), "sandbox-client-secret"]


@pytest.mark.slow
def test_fuzzing_finds_no_crash_no_secret_and_no_change_from_a_rejected_request(sandbox_ado: Any, uid: str) -> None:
    with private_bundle() as (bundle, _, _):
        known, secrets = seed(bundle, sandbox_ado, uid)
        before = stored_state()  # the snapshot does see a change (the group's row and activity)
        assert bundle.api("PATCH", f"manage/organizations/{known['org_id'][0]}/groups/g1", {"status": "resolved"})[0] \
            == 200
        assert changes(before, stored_state())
        schema = load(bundle.url)
        started = time.monotonic()
        run = fuzz(schema, f"{bundle.url}/api", Checks(secrets), max_examples=MAX_EXAMPLES, path_values=known,
                   modes=(GenerationMode.POSITIVE, GenerationMode.NEGATIVE))
        print(f"\nfuzz: {run.summary()} in {time.monotonic() - started:.1f} s")
    assert run.sent > 0
    assert not run.problems, f"{len(run.problems)} problems:\n" + "\n".join(run.problems[:20])
