"""Identity of an organization and of the caller: `connectionData` (and, below, Entra token endpoints)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.devhost.sandbox_client import ACCOUNT_ID, ORG, Ado, Receiver, basic, running_ado, running_receiver, subscribe


@pytest.fixture
def ado() -> Iterator[Ado]:
    yield from running_ado()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from running_receiver()


def test_connection_data_names_the_collection_and_the_caller(ado: Ado, receiver: Receiver) -> None:
    resp = ado.session.get(ado.url("_apis/connectionData"), timeout=5)  # the location service needs no version
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["instanceId"] == ACCOUNT_ID
    assert data["authenticatedUser"]["providerDisplayName"] == "fabrikam Integration"
    assert data["authenticatedUser"]["properties"]["Account"]["$value"] == "integration@fabrikam.sandbox.example"
    assert data["authorizedUser"]["id"] == data["authenticatedUser"]["id"]
    assert data["locationServiceData"]["accessMappings"][0]["accessPoint"] == ado.url("")
    assert data["deploymentType"] == "hosted"

    # the same id the service hooks carry as resourceContainers.collection.id
    subscribe(ado, receiver.url)
    ado.sandbox.create_work_item(ORG, "Fabrikam", title="x")
    wid = ado.sandbox.create_work_item(ORG, "Fabrikam", title="y")["id"]
    ado.sandbox.update_work_item(ORG, wid, state="Active")
    assert ado.sandbox.wait_idle(5)
    event = receiver.requests[-1]["json"]
    assert event["resourceContainers"]["collection"]["id"] == data["instanceId"]
    assert ado.get("_apis/connectionData").json()["instanceId"] == ACCOUNT_ID  # with a version too


def test_connection_data_requires_this_orgs_credential(ado: Ado) -> None:
    url = ado.url("_apis/connectionData")
    anonymous = requests.get(url, headers={"X-TFS-FedAuthRedirect": "Suppress"}, verify=ado.sandbox.ca_pem_path)
    assert anonymous.status_code == 401
    ado.sandbox.add_organization("contoso")
    foreign = ado.sandbox.add_pat("contoso")
    wrong = requests.get(
        url,
        headers={"Authorization": basic(foreign), "X-TFS-FedAuthRedirect": "Suppress"},
        verify=ado.sandbox.ca_pem_path,
        timeout=5,
    )
    assert wrong.status_code == 401
    sign_in = requests.get(url, headers={"Authorization": basic("nope")}, verify=ado.sandbox.ca_pem_path, timeout=5)
    assert sign_in.status_code == 203 and "text/html" in sign_in.headers["Content-Type"]
