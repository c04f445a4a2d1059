"""Repository migration (`migrate-repo`) against Azurite and the sandbox ADO."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from azure.functions.queue import QueueMessage
from conftest import RecordingSend, StubContext

from migrate_queue import migrate_repo
from shared.compose import Services
from shared.core.errors import AdoThrottled
from shared.core.models import Repository
from shared.flows import install, jobs, migration

pytestmark = pytest.mark.usefixtures("azurite")

WEBHOOK = "https://sync.example.test/api/vsts/issue-updated"


@pytest.fixture
def org(svc: Services, sandbox_ado: Any, env: pytest.MonkeyPatch, uid: str) -> dict[str, str]:
    """An installed integration (account `acct-<uid>`) for tracker organization `tracker-<uid>`."""
    env.setenv("WEBHOOK_URL", WEBHOOK)
    name = f"org{uid}"
    account_id = sandbox_ado.add_organization(name, f"acct-{uid}")
    sandbox_ado.add_project(name, "ProjectA")
    pat = sandbox_ado.add_pat(name)
    install.install(svc, account_id, {"account_name": name, "organization_id": f"tracker-{uid}",
                                      "identity": {"kind": "pat", "access_token": pat}})
    return {"name": name, "account_id": account_id, "org_id": f"tracker-{uid}"}


def legacy(svc: Services, org: dict[str, str], repo_id: str, name: str, **changes: Any) -> Repository:
    repo = Repository(org_id=org["org_id"], repo_id=repo_id, name=f"ProjectA/{name}",
                      provider=changes.pop("provider", "visualstudio"),
                      external_id=changes.pop("external_id", "ext-" + repo_id),
                      config=changes.pop("config", {"project": "ProjectA", "name": name}), **changes)
    svc.store.repositories.put(repo)
    return repo


def message(org: dict[str, str], repo_id: str) -> dict[str, str]:
    return {"repo_id": repo_id, "integration_id": org["account_id"], "organization_id": org["org_id"]}


def current(svc: Services, org: dict[str, str], repo_id: str) -> Repository:
    repo = svc.store.repositories.get(org["org_id"], repo_id)
    assert repo is not None
    return repo


def test_reachable_repository_is_migrated_and_unreachable_one_is_not(
    svc: Services, sandbox_ado: Any, org: dict[str, str]
) -> None:
    sandbox_ado.add_repository(org["name"], "ProjectA", "cool-service")
    sandbox_ado.add_repository(org["name"], "ProjectA", "secret-service", accessible=False)
    legacy(svc, org, "r1", "cool-service", status="disabled")
    legacy(svc, org, "r2", "secret-service")

    migration.migrate_repository(svc, message(org, "r1"))
    migration.migrate_repository(svc, message(org, "r2"))

    moved = current(svc, org, "r1")
    assert (moved.integration_id, moved.provider, moved.status) == (org["account_id"], "integrations:vsts", "active")
    kept = current(svc, org, "r2")
    assert (kept.integration_id, kept.provider) == (None, "visualstudio")


def test_migration_is_idempotent_and_skips_ado_the_second_time(
    svc: Services, sandbox_ado: Any, org: dict[str, str]
) -> None:
    sandbox_ado.add_repository(org["name"], "ProjectA", "cool-service")
    legacy(svc, org, "r1", "cool-service")
    migration.migrate_repository(svc, message(org, "r1"))
    first = current(svc, org, "r1")
    sandbox_ado.reset_calls()

    migration.migrate_repository(svc, message(org, "r1"))

    assert current(svc, org, "r1") == first
    assert not [c for c in sandbox_ado.calls if org["name"] in c["path"]]


def test_repository_of_another_integration_is_reassigned(
    svc: Services, sandbox_ado: Any, org: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    sandbox_ado.add_repository(org["name"], "ProjectA", "cool-service")
    legacy(svc, org, "r1", "cool-service", integration_id="someone-else", provider="integrations:vsts")

    with caplog.at_level(logging.INFO, logger="shared.flows.migration"):
        migration.migrate_repository(svc, message(org, "r1"))

    assert current(svc, org, "r1").integration_id == org["account_id"]
    assert "migrate.repository.reassigned" in [r.message for r in caplog.records]


def test_repository_without_project_and_name_is_found_by_listing(
    svc: Services, sandbox_ado: Any, org: dict[str, str]
) -> None:
    repo_id = sandbox_ado.add_repository(org["name"], "ProjectA", "listed")
    legacy(svc, org, "r1", "listed", external_id=repo_id, config={})
    legacy(svc, org, "r2", "absent", config={})

    migration.migrate_repository(svc, message(org, "r1"))
    migration.migrate_repository(svc, message(org, "r2"))

    assert current(svc, org, "r1").integration_id == org["account_id"]
    assert current(svc, org, "r2").integration_id is None


def test_unknown_repository_or_integration_completes_without_change(svc: Services, org: dict[str, str]) -> None:
    legacy(svc, org, "r1", "cool-service")

    migration.migrate_repository(svc, message(org, "missing"))
    migration.migrate_repository(svc, {**message(org, "r1"), "integration_id": "acct-unknown"})

    assert current(svc, org, "r1").integration_id is None


def test_throttling_is_retried_by_the_queue_and_other_messages_complete(
    svc: Services, sandbox_ado: Any, org: dict[str, str]
) -> None:
    sandbox_ado.add_repository(org["name"], "ProjectA", "cool-service")
    legacy(svc, org, "r1", "cool-service")
    sandbox_ado.inject_fault("429", times=100, path_contains=f"/{org['name']}/", retry_after=0)
    body = json.dumps(message(org, "r1")).encode()
    try:
        for attempt in range(1, 4):  # each dequeue fails; the host moves it to migrate-repo-poison at the limit
            with pytest.raises(AdoThrottled):
                migrate_repo(QueueMessage(body=body, dequeue_count=attempt), StubContext())
    finally:
        sandbox_ado.clear_faults()
    assert current(svc, org, "r1").integration_id is None

    migrate_repo(QueueMessage(body=body, dequeue_count=4), StubContext())
    assert current(svc, org, "r1").integration_id == org["account_id"]


def test_malformed_messages_complete(svc: Services, org: dict[str, str]) -> None:
    requeued = RecordingSend()

    def run(body: bytes) -> None:
        jobs.run(migration.QUEUE, body, lambda message: migration.migrate_repository(svc, message), send=requeued)

    run(b"not json")
    run(json.dumps({"repo_id": "a/b", "integration_id": "x", "organization_id": "y"}).encode())
    run(json.dumps({"items": [{"repo_id": 5}]}).encode())

    assert requeued.sent == []  # completed: nothing goes back on the queue
