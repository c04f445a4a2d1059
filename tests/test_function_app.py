"""The function index: what the Functions host sees when it imports function_app.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HTTP = {
    "webhook_http": ("vsts/issue-updated", ["POST"]),
    "health": ("health", ["GET"]),
    "manage_integration_put": ("manage/integrations/{account_id}", ["PUT"]),
    "manage_integration_get": ("manage/integrations/{account_id}", ["GET"]),
    "manage_org_config_put": ("manage/integrations/{account_id}/organizations/{org_id}/config", ["PUT"]),
    "manage_ado_repositories": ("manage/integrations/{account_id}/repositories", ["GET"]),
    "manage_issue_create": ("manage/integrations/{account_id}/organizations/{org_id}/issues", ["POST"]),
    "manage_issue_link": ("manage/integrations/{account_id}/organizations/{org_id}/issues/link", ["POST"]),
    "manage_search": ("manage/integrations/{account_id}/search", ["GET"]),
    "manage_rotate_secret": ("manage/integrations/{account_id}/rotate-secret", ["POST"]),
    "manage_ado_projects": ("manage/integrations/{account_id}/projects", ["GET"]),
    "manage_ado_work_item_types": ("manage/integrations/{account_id}/projects/{project}/work-item-types", ["GET"]),
    "manage_ado_states": ("manage/integrations/{account_id}/projects/{project}/work-item-types/{type}/states",
                          ["GET"]),
    "manage_ado_areas": ("manage/integrations/{account_id}/projects/{project}/areas", ["GET"]),
    "manage_ado_iterations": ("manage/integrations/{account_id}/projects/{project}/iterations", ["GET"]),
    "manage_ado_users": ("manage/integrations/{account_id}/users", ["GET"]),
    "manage_integration_reconcile": ("manage/integrations/{account_id}/reconcile", ["POST"]),
    "manage_user_put": ("manage/organizations/{org_id}/users/{user_id}", ["PUT"]),
    "manage_user_get": ("manage/organizations/{org_id}/users/{user_id}", ["GET"]),
    "manage_group_put": ("manage/organizations/{org_id}/groups/{group_id}", ["PUT"]),
    "manage_group_patch": ("manage/organizations/{org_id}/groups/{group_id}", ["PATCH"]),
    "manage_group_get": ("manage/organizations/{org_id}/groups/{group_id}", ["GET"]),
    "manage_repository_put": ("manage/organizations/{org_id}/repositories/{repo_id}", ["PUT"]),
    "manage_repository_get": ("manage/organizations/{org_id}/repositories/{repo_id}", ["GET"]),
    "manage_integration_delete": ("manage/integrations/{account_id}", ["DELETE"]),
    "manage_org_unlink": ("manage/integrations/{account_id}/organizations/{org_id}", ["DELETE"]),
    "manage_link_delete": ("manage/organizations/{org_id}/groups/{group_id}/links/{account_id}/{key}", ["DELETE"]),
    "openapi_document": ("openapi.json", ["GET"]),
    "manage_comment_put": ("manage/organizations/{org_id}/groups/{group_id}/comments/{comment_id}", ["PUT"]),
    "manage_comment_delete": ("manage/organizations/{org_id}/groups/{group_id}/comments/{comment_id}", ["DELETE"]),
    "manage_comment_get": ("manage/organizations/{org_id}/groups/{group_id}/comments/{comment_id}", ["GET"]),
    "manage_events_get": ("manage/organizations/{org_id}/events", ["GET"]),
    "manage_deliveries_get": ("manage/organizations/{org_id}/deliveries", ["GET"]),
    "manage_delivery_replay": ("manage/organizations/{org_id}/deliveries/{delivery_id}/replay", ["POST"]),
    "manage_tracker_config_put": ("manage/organizations/{org_id}/config", ["PUT"]),
    "manage_tracker_config_get": ("manage/organizations/{org_id}/config", ["GET"]),
}
QUEUES = {"subscription_check": "subscription-check", "migrate_repo": "migrate-repo",
          "sync_outbound": "sync-outbound", "tracker_events": "tracker-events"}
TIMERS = {"subscription_timer": "%SUBSCRIPTION_SCHEDULE%", "tracker_events_sweep": "0 */10 * * * *"}

INDEX_SCRIPT = """
import json, sys, typing
import azure.functions as func
import function_app
apps = [v for v in vars(function_app).values() if isinstance(v, func.FunctionRegister)]
assert len(apps) == 1, apps
functions = apps[0].get_functions()
# The Python worker loads a function only if a `context` parameter is annotated exactly as
# azure.functions.Context (it resolves the hints; `Context | None` makes it refuse the function).
hints = {f.get_function_name(): typing.get_type_hints(f.get_user_function()) for f in functions}
bad = [name for name, h in hints.items() if "context" in h and h["context"] is not func.Context]
assert not bad, bad
print(json.dumps({f.get_function_name(): json.loads(f.get_function_json())["bindings"] for f in functions}))
"""


def index() -> dict[str, list[dict]]:
    """Index the app in a fresh interpreter with only the app root on the path and no settings."""
    env = {k: v for k, v in os.environ.items() if k not in ("AzureWebJobsStorage", "PYTHONPATH")}
    result = subprocess.run([sys.executable, "-c", INDEX_SCRIPT], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_index_has_exactly_the_expected_functions() -> None:
    functions = index()
    assert set(functions) == set(HTTP) | set(QUEUES) | set(TIMERS)

    for name, (route, methods) in HTTP.items():
        trigger = functions[name][0]
        assert trigger["type"] == "httpTrigger", name
        assert trigger["route"] == route, name
        assert sorted(trigger["methods"]) == methods, name
        assert trigger["authLevel"] == "ANONYMOUS", name
        assert functions[name][1]["type"] == "http"

    for name, queue in QUEUES.items():
        (trigger,) = functions[name]
        assert trigger["type"] == "queueTrigger"
        assert trigger["queueName"] == queue
        assert trigger["connection"] == "AzureWebJobsStorage"
        assert trigger["name"] == "msg"

    for name, schedule in TIMERS.items():
        (trigger,) = functions[name]
        assert trigger["type"] == "timerTrigger"
        assert trigger["schedule"] == schedule
        assert trigger["runOnStartup"] is False
        assert trigger["useMonitor"] is True
