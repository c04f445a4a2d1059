"""resolution_strategy: refused unless one of the three, and carried to the tracker in the
`group.status_changed` event of a group Azure DevOps resolved (never stored for nothing)."""

from __future__ import annotations

import copy
import json
from typing import Any

import azure.functions as func
import pytest
from conftest import StubContext, load_fixture

from shared.compose import services
from shared.core.errors import InvalidInput
from shared.core.models import Group, Integration, Link, OrgLink
from shared.core.orgconfig import RESOLUTION_STRATEGIES
from shared.core.secrets import hash_secret
from shared.flows import install, states
from webhook_http import webhook_http

pytestmark = pytest.mark.usefixtures("azurite")

SECRET = "strategy-" + "b" * 55
PROJECT = "c0bf429a-c03c-4a99-9336-d45be74db5a6"  # the fixtures' project


def linked(uid: str, config: dict[str, Any]) -> tuple[str, str]:
    account, org = f"acc-{uid}", f"org-{uid}"
    store = services().store
    store.integrations.save(Integration(account_id=account, account_name="acme", domain_name="https://acme.example/",
                                        secret_hash=hash_secret(SECRET)))
    store.integrations.save_org_link(OrgLink(account_id=account, org_id=org, config=config))
    store.groups.put(Group(org_id=org, group_id="g1", project_id="p1", title="Boom"))
    store.groups.add_link(Link(org_id=org, group_id="g1", account_id=account, key="33", project_id=PROJECT,
                               work_item_type="Bug"))
    store.cache.put(account, f"states|{PROJECT}|Bug", ["Closed", "Resolved"], ttl=3600)
    states.forget()
    return account, org


def deliver(account: str, fixture: str, rev: int) -> None:
    payload = copy.deepcopy(load_fixture(fixture))
    payload["resourceContainers"]["collection"]["id"] = account
    payload["resource"]["rev"] = rev
    req = func.HttpRequest("POST", "http://localhost/api/vsts/issue-updated", headers={"shared-secret": SECRET},
                           body=json.dumps(payload).encode())
    assert webhook_http(req, StubContext()).status_code == 200


def status_events(org: str) -> list[dict[str, Any]]:
    return [e.data for e, _ in services().store.groups.outbox(org, "g1") if e.type == "group.status_changed"]


@pytest.mark.parametrize("strategy", RESOLUTION_STRATEGIES)
def test_the_strategy_rides_on_the_resolve_event_only(uid: str, strategy: str) -> None:
    account, org = linked(uid, {"sync_status_reverse": True, "resolution_strategy": strategy})

    deliver(account, "workitem-updated-state-active-to-resolved.json", rev=5)
    deliver(account, "workitem-updated-state-resolved-to-active.json", rev=6)

    found = status_events(org)
    assert [(e["new"], e["resolution_strategy"]) for e in found] == [("resolved", strategy), ("unresolved", None)]
    assert found[0]["source"] == "azure_devops" and found[0]["work_item"] == "33"


def test_without_a_strategy_the_event_says_null(uid: str) -> None:
    account, org = linked(uid, {"sync_status_reverse": True})
    deliver(account, "workitem-updated-state-active-to-resolved.json", rev=5)
    assert [e["resolution_strategy"] for e in status_events(org)] == [None]


@pytest.mark.parametrize("value", ["resolve_in_next_release", "Resolve", "close", ""])
def test_any_other_strategy_is_refused_and_nothing_is_stored(uid: str, value: str) -> None:
    account, org = linked(uid, {"sync_status_reverse": True})
    with pytest.raises(InvalidInput) as caught:
        install.put_org_config(services(), account, org, {"resolution_strategy": value})
    assert (caught.value.status, caught.value.field) == (422, "resolution_strategy")
    link = services().store.integrations.get_org_link(account, org)
    assert link is not None and link.config == {"sync_status_reverse": True}


def test_a_strategy_set_through_the_config_route_reaches_the_event(uid: str) -> None:
    account, org = linked(uid, {})
    install.put_org_config(services(), account, org, {"sync_status_reverse": True,
                                                      "resolution_strategy": "resolve_current_release"})
    deliver(account, "workitem-updated-state-active-to-resolved.json", rev=5)
    assert [e["resolution_strategy"] for e in status_events(org)] == ["resolve_current_release"]
