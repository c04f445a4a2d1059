"""Azure DevOps Server collections: install, per-integration endpoints, and domain-account assignees.

Against the sandbox's Server-shaped collection (`/tfs/{collection}/`, PATs only, REST api-version 7.0
at most, no graph, identities API, `Name <DOMAIN\\user>` identities and Server-shaped service hooks).
Service hooks go to a local receiver and are handed to the inbound flow as the webhook route would.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from shared.adapters import integrations, storage
from shared.compose import Services
from shared.core.errors import Unprocessable
from shared.core.models import Group, User
from shared.flows import inbound, install, server_users, workitems
from tests.devhost.sandbox_client import Receiver, running_receiver

pytestmark = pytest.mark.usefixtures("azurite")


@dataclass
class Collection:
    sandbox: Any
    receiver: Receiver
    name: str
    account_id: str
    project_id: str
    pat: str
    tracker_org: str
    email: str

    @property
    def url(self) -> str:
        return str(self.sandbox.instance_url(self.name))

    def body(self, **changes: Any) -> dict[str, Any]:
        body = {"account_name": self.name, "organization_id": self.tracker_org, "domain_name": self.url,
                "identity": {"kind": "pat", "access_token": self.pat},
                "config": {"sync_reverse_assignment": True, "sync_forward_assignment": True}}
        return {**body, **changes}

    def calls(self) -> list[dict[str, Any]]:
        return [c for c in self.sandbox.calls if f"/tfs/{self.name}/" in c["path"]]

    def deliver_last_hook(self, svc: Services) -> None:
        """Hand the newest service hook the collection sent to the inbound flow."""
        assert self.sandbox.wait_idle(10)
        last = self.receiver.requests[-1]
        headers = {name.lower(): value for name, value in last["headers"].items()}
        assert inbound.handle(svc, json.dumps(last["json"]).encode(), headers).status == 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running_receiver()


@pytest.fixture
def collection(sandbox_ado: Any, receiver: Receiver, env: pytest.MonkeyPatch, uid: str) -> Collection:
    env.setenv("WEBHOOK_URL", receiver.url)
    name = f"Coll{uid}"
    account_id = sandbox_ado.add_server_collection(name, domain="FABRIKAM")
    project_id = sandbox_ado.add_project(name, "Fabrikam")
    email = f"jamal-{uid}@fabrikam.example"
    sandbox_ado.add_user(name, "Jamal Hartnett", email)
    return Collection(sandbox_ado, receiver, name, account_id, project_id, sandbox_ado.add_pat(name),
                      f"tracker-{uid}", email)


def test_install_records_a_server_collection_and_speaks_its_api_version(svc: Services,
                                                                         collection: Collection) -> None:
    reply = install.install(svc, collection.account_id, collection.body())

    assert reply.status == 200
    assert (reply.body["deployment"], reply.body["domain_name"]) == ("server", collection.url)
    [hook] = collection.sandbox.subscriptions(collection.name)
    assert reply.body["subscription"]["id"] == hook["id"]
    versions = {c["query"].get("api-version") for c in collection.calls() if "connectiondata" not in c["path"].lower()}
    assert versions == {"7.0"}  # Azure DevOps Server 2022 refuses 7.1
    integration = svc.store.integrations.get(collection.account_id)
    assert integration is not None and integration.deployment == "server"


def test_a_server_install_needs_its_collection_url(svc: Services, collection: Collection) -> None:
    body = collection.body()
    del body["domain_name"]
    with pytest.raises(Unprocessable) as refused:
        install.install(svc, collection.account_id, body)
    assert refused.value.field == "domain_name"
    assert "Azure DevOps Server" in refused.value.message
    assert collection.sandbox.subscriptions(collection.name) == []
    assert not list(storage.table(integrations.TABLE).query_entities(
        "PartitionKey eq @pk", parameters={"pk": collection.account_id}))


def test_search_goes_to_the_collection(svc: Services, collection: Collection) -> None:
    install.install(svc, collection.account_id, collection.body())
    item = collection.sandbox.create_work_item(collection.name, "Fabrikam", title="Needle in the haystack")
    reply = workitems.search(svc, collection.account_id, {"field": "externalIssue", "query": "needle"})
    assert reply.body == [{"label": f"({item['id']}) Needle in the haystack", "value": str(item["id"])}]
    [search] = [c for c in collection.calls() if c["path"].lower().endswith("/_apis/search/workitemsearchresults")]
    assert search["method"] == "POST" and search["path"].startswith(f"/tfs/{collection.name}/")


def linked_group(svc: Services, collection: Collection) -> int:
    """Install, a tracker user with the collection user's e-mail, and a group linked to a new work item."""
    install.install(svc, collection.account_id, collection.body())
    svc.store.users.put(User(org_id=collection.tracker_org, user_id="jamal", emails=[collection.email],
                             projects=["web"]))
    svc.store.groups.put(Group(org_id=collection.tracker_org, group_id="g1", project_id="web", title="TypeError"))
    wid = int(collection.sandbox.create_work_item(collection.name, "Fabrikam", title="TypeError")["id"])
    workitems.link_issue(svc, collection.account_id, collection.tracker_org, {"group_id": "g1", "key": str(wid)})
    return wid


def test_a_domain_account_assignee_is_matched_by_its_email(svc: Services, collection: Collection) -> None:
    wid = linked_group(svc, collection)
    collection.sandbox.update_work_item(collection.name, wid, assigned_to=collection.email)
    collection.deliver_last_hook(svc)

    sent = collection.receiver.requests[-1]["json"]
    account = "FABRIKAM\\" + collection.email.split("@")[0]
    assert sent["resource"]["fields"]["System.AssignedTo"]["newValue"] == f"Jamal Hartnett <{account}>"
    assert "account" not in sent["resourceContainers"]
    group = svc.store.groups.get(collection.tracker_org, "g1")
    assert group is not None and group.assignee == "jamal"
    lookups = [c for c in collection.calls() if c["path"].lower().endswith("/_apis/identities")]
    assert [c["query"]["searchFilter"] for c in lookups] == ["AccountName"]

    # The answer is cached: the same account again needs no lookup.
    collection.sandbox.update_work_item(collection.name, wid, assigned_to=None)
    collection.deliver_last_hook(svc)
    collection.sandbox.update_work_item(collection.name, wid, assigned_to=collection.email)
    collection.deliver_last_hook(svc)
    assert len([c for c in collection.calls() if c["path"].lower().endswith("/_apis/identities")]) == 1


def test_an_account_the_collection_cannot_resolve_is_recorded_as_not_synced(svc: Services,
                                                                            collection: Collection) -> None:
    wid = linked_group(svc, collection)
    collection.sandbox.add_user(collection.name, "Ghost Writer", "ghost@fabrikam.example")
    collection.sandbox.update_work_item(collection.name, wid, assigned_to="ghost@fabrikam.example")
    assert collection.sandbox.wait_idle(10)
    with collection.sandbox.state.lock:  # the account leaves the directory before the delivery is handled
        org = collection.sandbox.state.org(collection.name)
        org.users = [u for u in org.users if u.email != "ghost@fabrikam.example"]
    collection.deliver_last_hook(svc)

    group = svc.store.groups.get(collection.tracker_org, "g1")
    assert group is not None and group.assignee is None
    [note] = [a for a in svc.store.groups.activity(collection.tracker_org, "g1") if a.kind == "assignee_not_synced"]
    assert "FABRIKAM\\ghost".lower() in note.data["reason"].lower()
    assert "e-mail" in note.data["reason"]


def _identity(**properties: str) -> dict[str, Any]:
    return {"properties": {name: {"$type": "System.String", "$value": value} for name, value in properties.items()}}


@pytest.mark.parametrize(
    ("identity", "account", "mail"),
    [
        pytest.param(_identity(Domain="FABRIKAM", Account="jamal", Mail="Jamal@Fabrikam.example"),
                     "FABRIKAM\\jamal", "jamal@fabrikam.example", id="server-split"),
        pytest.param(_identity(Account="FABRIKAM\\jamal"), "FABRIKAM\\jamal", None, id="server-joined-no-mail"),
        pytest.param(_identity(Domain="Windows Live ID", Account="ann@example.com", Mail="ann@example.com"),
                     None, "ann@example.com", id="services-shaped"),
        pytest.param({"properties": []}, None, None, id="malformed"),
    ],
)
def test_accounts_and_mail_of_identities(identity: dict[str, Any], account: str | None, mail: str | None) -> None:
    assert server_users.account_name(identity) == account
    assert server_users.mail_of(identity) == mail
