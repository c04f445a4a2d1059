"""The ADO client against the HTTPS sandbox: real TLS, real paging, real token refresh with storage."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import requests

from shared import config
from shared.adapters.ado_auth import PatAuth, auth_for
from shared.adapters.ado_client import AdoClient
from shared.adapters.ado_lookup import lookup_base_url
from shared.adapters.integrations import IntegrationStore
from shared.compose import services
from shared.core.errors import AdoAuthError, AdoBadRequest, AdoNotFound, IdentityInvalid
from shared.core.models import Identity

pytestmark = pytest.mark.usefixtures("azurite")


def identities() -> IntegrationStore:
    return services().store.integrations


@pytest.fixture
def org(sandbox_ado: Any, uid: str) -> dict[str, Any]:
    name = f"client{uid}"
    account = sandbox_ado.add_organization(name)
    project = sandbox_ado.add_project(name, "Web App")
    for n in range(5):
        sandbox_ado.add_user(name, f"User {n}", f"user{n}-{uid}@example.com")
    return {"name": name, "account": account, "project": project, "pat": sandbox_ado.add_pat(name),
            "url": sandbox_ado.instance_url(name)}


def pat_client(org: dict[str, Any]) -> AdoClient:
    return AdoClient(base_url=org["url"], auth=PatAuth(org["pat"]), account_name=org["name"])


def test_work_item_round_trip_over_https(org: dict[str, Any]) -> None:
    client = pat_client(org)
    created = client.create_work_item("Web App", "Bug", [
        {"op": "add", "path": "/fields/System.Title", "value": "Boom"}])
    key = created["id"]
    client.update_work_item(key, [{"op": "replace", "path": "/fields/System.State", "value": "Resolved"}])
    fetched = client.get_work_item(key)
    assert fetched["fields"]["System.State"] == "Resolved"
    assert fetched["rev"] == 2
    states = client.get_work_item_type_states(org["project"], "Bug")
    assert {"name": "Resolved", "category": "Resolved"}.items() <= next(
        s for s in states if s["name"] == "Resolved").items()


def test_paging_is_invisible_to_callers(org: dict[str, Any], sandbox_ado: Any) -> None:
    client = pat_client(org)
    for n in range(3):
        sandbox_ado.add_project(org["name"], f"Extra {n}")
    assert len(client.list_projects()) == 4
    emails = [u["mailAddress"] for u in client.iter_graph_users()]
    assert len(emails) == 5, "graph users span several pages in the sandbox"


def test_errors_map_to_the_hierarchy(org: dict[str, Any]) -> None:
    client = pat_client(org)
    with pytest.raises(AdoNotFound):
        client.get_work_item(999999)
    with pytest.raises(AdoBadRequest) as caught:
        client.create_work_item("Web App", "Bug", [])
    assert "TF401320" in caught.value.message
    bad = AdoClient(base_url=org["url"], auth=PatAuth("not-a-pat"), account_name=org["name"])
    with pytest.raises(AdoAuthError) as denied:
        bad.list_projects()
    assert "not-a-pat" not in str(denied.value)


def test_base_url_lookup(org: dict[str, Any]) -> None:
    assert lookup_base_url(org["account"]) == org["url"]


def test_subscription_crud(org: dict[str, Any]) -> None:
    client = pat_client(org)
    created = client.create_subscription({
        "publisherId": "tfs", "eventType": "workitem.updated", "resourceVersion": "1.0",
        "consumerId": "webHooks", "consumerActionId": "httpRequest",
        "consumerInputs": {"url": "https://example.test/hook", "basicAuthPassword": "pw"}, "publisherInputs": {}})
    assert client.get_subscription(created["id"])["status"] == "enabled"
    client.delete_subscription(created["id"])
    with pytest.raises(AdoNotFound):
        client.get_subscription(created["id"])


def test_two_workers_refreshing_at_once_keep_one_valid_token_set(org: dict[str, Any], sandbox_ado: Any) -> None:
    tokens = sandbox_ado.issue_token(org["name"], expires_in=3600)
    account = org["account"]
    # Stored as already expired: both workers must refresh before calling.
    identities().save_identity(account, Identity(kind="oauth", access_token=tokens["access_token"],
                                          refresh_token=tokens["refresh_token"], expires_at=time.time() - 10))
    config.reset()
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def worker() -> None:
        session = requests.Session()
        auth = auth_for(account, identities(), session=session)
        client = AdoClient(base_url=org["url"], auth=auth, account_name=org["name"], session=session)
        barrier.wait()
        try:
            results.append(len(client.list_projects()))
        except Exception as error:  # collected and asserted below
            results.append(error)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [1, 1]
    loaded = identities().load_identity(account)
    assert loaded is not None
    stored = loaded[0]
    assert stored.status == "valid" and stored.expires_at and stored.expires_at > time.time()
    # The stored set is the one that works: its access token is accepted, its refresh token refreshes.
    works = AdoClient(base_url=org["url"], auth=auth_for(account, identities()), account_name=org["name"])
    assert len(works.list_projects()) == 1
    identities().save_identity(account, Identity(kind="oauth", access_token=stored.access_token,
                                          refresh_token=stored.refresh_token, expires_at=time.time() - 10))
    again = AdoClient(base_url=org["url"], auth=auth_for(account, identities()), account_name=org["name"])
    assert len(again.list_projects()) == 1, "the stored refresh token was not lost"


def test_refused_refresh_marks_the_identity_invalid(org: dict[str, Any]) -> None:
    account = org["account"]
    identities().save_identity(account, Identity(kind="oauth", access_token="stale", refresh_token="unknown",
                                          expires_at=time.time() - 10))
    client = AdoClient(base_url=org["url"], auth=auth_for(account, identities()), account_name=org["name"])
    with pytest.raises(IdentityInvalid):
        client.list_projects()
    loaded = identities().load_identity(account)
    assert loaded is not None and loaded[0].status == "invalid"
