"""Queue semantics end to end: a message that keeps failing is poisoned, one that can never succeed is not."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import wait_for
from reliability_support import private_bundle, queue_count, queue_host_json
from test_e2e import Org

from shared.adapters import storage

pytestmark = pytest.mark.slow


def test_throttled_migration_lands_in_poison_after_max_dequeue_and_garbage_is_dropped(
        sandbox_ado: Any, uid: str) -> None:
    # Three tries, retried at once: the real host.json (5 tries, 10 s apart) would take a minute.
    host_json = queue_host_json(maxDequeueCount=3, visibilityTimeout="00:00:00")
    with private_bundle(host_json=host_json) as (bundle, _, svc):
        org = Org(bundle, sandbox_ado, uid)
        sandbox_ado.add_repository(org.name, "Web", "app")
        status, _ = bundle.api("PUT", f"manage/organizations/{org.tracker_org}/repositories/r1", {
            "name": "Web/app", "provider": "visualstudio", "external_id": "e1",
            "config": {"project": "Web", "name": "app"}})
        assert status == 200
        sandbox_ado.inject_fault("503", rate=1.0, path_contains="/git/repositories")
        try:
            svc.send("migrate-repo", {"repo_id": "r1", "integration_id": org.account,
                                          "organization_id": org.tracker_org})
            wait_for(lambda: queue_count("migrate-repo-poison") == 1, timeout=120, what="the poison queue")
        finally:
            sandbox_ado.clear_faults()
        repo = svc.store.repositories.get(org.tracker_org, "r1")
        assert repo is not None and repo.integration_id is None, "a failed migration changes nothing"

        # A message that is not JSON can never succeed: logged and completed, not retried or poisoned.
        storage.queue("migrate-repo").send_message("not json")  # the client base64-encodes, as the host expects
        wait_for(lambda: queue_count("migrate-repo") == 0, timeout=30, what="the garbage to be consumed")
        assert queue_count("migrate-repo-poison") == 1
