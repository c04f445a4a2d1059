"""Schemathesis against the running bundle (devhost, Azurite, sandbox Azure DevOps), driven by the
document the bundle serves: no answer is a 500, and every answer is one the document describes.

Half the cases of an operation use the ids of records set up here (an installed sandbox organization,
a user, a linked group, a repository), so they reach real records and Azure DevOps, not only 404s.
"""

from __future__ import annotations

import time
from typing import Any

from conftest import MANAGE_KEY, Bundle
from fuzz_support import conformance, fuzz, load, with_key

MAX_EXAMPLES = 12


def records(bundle: Bundle, sandbox: Any, uid: str) -> dict[str, list[str]]:
    """An installed organization with a user, a group linked to a work item, and a repository."""
    name, org = f"fz{uid}", f"tfz{uid}"
    account = sandbox.add_organization(name)
    project = sandbox.add_project(name, "Web")
    status, _ = bundle.api("PUT", f"manage/integrations/{account}", {
        "account_name": name, "organization_id": org, "domain_name": sandbox.instance_url(name),
        "identity": {"kind": "pat", "access_token": sandbox.add_pat(name)}})
    assert status == 200
    assert bundle.api("PUT", f"manage/organizations/{org}/users/ann", {"emails": ["ann@example.com"]})[0] == 200
    assert bundle.api("PUT", f"manage/organizations/{org}/groups/g1", {"project_id": "web", "title": "Boom"})[0] == 200
    key = str(sandbox.create_work_item(name, "Web", "Bug", title="Boom")["id"])
    status, _ = bundle.api("POST", f"manage/integrations/{account}/organizations/{org}/issues/link",
                           {"group_id": "g1", "key": key})
    assert status == 200
    assert bundle.api("PUT", f"manage/organizations/{org}/repositories/r1",
                      {"name": "web", "provider": "github", "config": {"project": project}})[0] == 200
    return {"account_id": [account], "org_id": [org], "group_id": ["g1"], "user_id": ["ann"], "repo_id": ["r1"],
            "key": [key]}


def test_every_answer_matches_the_document(bundle: Bundle, sandbox_ado: Any, uid: str) -> None:
    schema = load(bundle.url)
    known = records(bundle, sandbox_ado, uid)
    started = time.monotonic()
    run = fuzz(schema, f"{bundle.url}/api", with_key(MANAGE_KEY, conformance), max_examples=MAX_EXAMPLES,
               path_values=known)
    print(f"\nschemathesis: {run.summary()} in {time.monotonic() - started:.1f} s")
    assert run.sent > 0
    assert not run.problems, (f"{len(run.problems)} answers the document does not allow:\n"
                              + "\n".join(run.problems[:20]))
