"""Identity of an organization and of the caller: `connectionData` (and, below, Entra token endpoints)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests

from tests.devhost.sandbox_client import (
    ACCOUNT_ID,
    FIXTURES,
    ORG,
    Ado,
    Receiver,
    basic,
    running_ado,
    running_receiver,
    subscribe,
)


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


# -- Entra ID: managed identity and service principals ------------------------------------------

ADO_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"
TENANT = "11111111-2222-4333-8444-555555555555"


def _projects_with(ado: Ado, token: str) -> requests.Response:
    return requests.get(
        ado.url("_apis/projects"),
        params={"api-version": "7.1"},
        headers={"Authorization": f"Bearer {token}", "X-TFS-FedAuthRedirect": "Suppress"},
        verify=ado.sandbox.ca_pem_path,
        timeout=5,
    )


def test_managed_identity_credential_gets_a_token_ado_accepts(ado: Ado, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.identity import ManagedIdentityCredential

    for key, value in ado.sandbox.managed_identity_environment().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ado.sandbox.ca_pem_path)
    for key in ("MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "AZURE_CLIENT_ID"):
        monkeypatch.delenv(key, raising=False)
    credential = ManagedIdentityCredential()
    first = credential.get_token(ADO_SCOPE)
    second = credential.get_token(ADO_SCOPE)
    assert first.token == second.token and first.expires_on > time.time() + 3000
    assert ado.sandbox.token_requests == [
        {"kind": "managed_identity", "resource": "499b84ac-1321-427f-aa17-267ca6975798",
         "client_id": ado.sandbox.managed_identity_client_id}
    ]  # one request per expiry window: the credential caches
    assert _projects_with(ado, first.token).status_code == 200

    storage = ManagedIdentityCredential().get_token("https://storage.azure.com/.default")
    assert _projects_with(ado, storage.token).status_code == 401  # a token for another resource

    user_assigned = ManagedIdentityCredential(client_id=ado.sandbox.managed_identity_client_id)
    assert user_assigned.get_token(ADO_SCOPE).token


def test_managed_identity_endpoint_protocol(ado: Ado) -> None:
    env = ado.sandbox.managed_identity_environment()
    url, secret = env["IDENTITY_ENDPOINT"], env["IDENTITY_HEADER"]
    params = {"resource": "499b84ac-1321-427f-aa17-267ca6975798", "api-version": "2019-08-01"}
    ok = requests.get(url, params=params, headers={"X-IDENTITY-HEADER": secret}, verify=ado.sandbox.ca_pem_path)
    body = ok.json()
    assert ok.status_code == 200 and set(body) >= {"access_token", "expires_on", "resource", "token_type"}
    assert body["token_type"] == "Bearer" and int(body["expires_on"]) > time.time()
    wrong = requests.get(url, params=params, headers={"X-IDENTITY-HEADER": "nope"}, verify=ado.sandbox.ca_pem_path)
    assert wrong.status_code == 401
    old = requests.get(url, params={**params, "api-version": "2017-09-01"}, headers={"X-IDENTITY-HEADER": secret},
                       verify=ado.sandbox.ca_pem_path)
    assert old.status_code == 400


def test_client_secret_credential_against_the_sandbox_authority(ado: Ado, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity import ClientSecretCredential

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ado.sandbox.ca_pem_path)
    ado.sandbox.add_service_principal(TENANT, "app-1", "s3cret")
    credential = ClientSecretCredential(
        TENANT, "app-1", "s3cret", authority=ado.sandbox.entra_authority, disable_instance_discovery=True
    )
    token = credential.get_token(ADO_SCOPE)
    assert credential.get_token(ADO_SCOPE).token == token.token
    assert [r["kind"] for r in ado.sandbox.token_requests] == ["client_credentials"]
    assert _projects_with(ado, token.token).status_code == 200

    wrong = ClientSecretCredential(
        TENANT, "app-1", "wrong", authority=ado.sandbox.entra_authority, disable_instance_discovery=True
    )
    with pytest.raises(ClientAuthenticationError, match="AADSTS7000215"):
        wrong.get_token(ADO_SCOPE)
    discovery = requests.get(
        f"{ado.sandbox.url}{TENANT}/v2.0/.well-known/openid-configuration", verify=ado.sandbox.ca_pem_path
    ).json()
    assert discovery["token_endpoint"] == f"{ado.sandbox.url}{TENANT}/oauth2/v2.0/token"


# -- Azure DevOps Server ---------------------------------------------------------------------------


def test_server_collection_lives_under_tfs_with_pat_auth_only(ado: Ado, receiver: Receiver) -> None:
    sandbox = ado.sandbox
    collection_id = sandbox.add_server_collection("DefaultCollection", domain="FABRIKAM")
    project_id = sandbox.add_project("DefaultCollection", "Fabrikam")
    sandbox.add_user("DefaultCollection", "Jamal Hartnett", "jamal@fabrikam.example")
    pat = sandbox.add_pat("DefaultCollection")
    base = sandbox.instance_url("DefaultCollection")
    assert base == f"{sandbox.url}tfs/DefaultCollection/"
    session = requests.Session()
    session.trust_env = False
    session.verify = sandbox.ca_pem_path
    session.headers.update({"Authorization": basic(pat), "X-TFS-FedAuthRedirect": "Suppress"})

    assert session.get(base + "_apis/projects", params={"api-version": "7.0"}).status_code == 200
    newer = session.get(base + "_apis/projects", params={"api-version": "7.1"})  # Server 2022 stops at 7.0
    assert newer.status_code == 400 and newer.json()["typeKey"] == "VssVersionOutOfRangeException"
    services_path = f"{sandbox.url}DefaultCollection/_apis/projects"
    assert session.get(services_path, params={"api-version": "7.0"}).status_code == 404
    assert session.get(base + "_apis/graph/users", params={"api-version": "7.0-preview.1"}).status_code == 404
    token = sandbox.issue_token(ORG)["access_token"]  # a Services token means nothing here
    bearer = requests.get(base + "_apis/projects", params={"api-version": "7.0"}, verify=sandbox.ca_pem_path,
                          headers={"Authorization": f"Bearer {token}", "X-TFS-FedAuthRedirect": "Suppress"})
    assert bearer.status_code == 401
    data = session.get(base + "_apis/connectionData").json()
    assert data["instanceId"] == collection_id and data["deploymentType"] == "onPremises"

    hook = {
        "publisherId": "tfs", "eventType": "workitem.updated", "resourceVersion": "1.0",
        "consumerId": "webHooks", "consumerActionId": "httpRequest",
        "consumerInputs": {"url": receiver.url, "resourceDetailsToSend": "all"},
    }
    assert session.post(base + "_apis/hooks/subscriptions", params={"api-version": "7.0"}, json=hook).ok
    wid = sandbox.create_work_item("DefaultCollection", "Fabrikam", title="On prem")["id"]
    sandbox.update_work_item("DefaultCollection", wid, assigned_to="jamal@fabrikam.example")
    assert sandbox.wait_idle(5)
    event = receiver.requests[-1]["json"]
    containers = event["resourceContainers"]
    assert set(containers) == {"collection", "server", "project"}
    assert containers["collection"] == {"id": collection_id, "baseUrl": base}
    assert containers["server"]["baseUrl"] == f"{sandbox.url}tfs/"
    assert containers["project"]["id"] == project_id
    assigned = event["resource"]["fields"]["System.AssignedTo"]["newValue"]
    assert assigned == "Jamal Hartnett <FABRIKAM\\jamal>"
    assert event["resource"]["revisedBy"]["uniqueName"] == "FABRIKAM\\jamal"
    assert event["resource"]["url"].startswith(base)
    fixture = json.loads((FIXTURES / "workitem-updated-server.json").read_text())
    assert set(fixture["resourceContainers"]) == set(containers)
    assert set(fixture["resource"]) == set(event["resource"])


def test_server_identities_api_finds_domain_accounts_by_account_or_mail(ado: Ado) -> None:
    sandbox = ado.sandbox
    sandbox.add_server_collection("IdentityCollection", domain="FABRIKAM")
    sandbox.add_user("IdentityCollection", "Jamal Hartnett", "jamal@fabrikam.example")
    session = requests.Session()
    session.trust_env = False
    session.verify = sandbox.ca_pem_path
    session.headers.update({"Authorization": basic(sandbox.add_pat("IdentityCollection")),
                            "X-TFS-FedAuthRedirect": "Suppress"})
    url = sandbox.instance_url("IdentityCollection") + "_apis/identities"

    def search(kind: str, value: str) -> list[dict]:
        resp = session.get(url, params={"searchFilter": kind, "filterValue": value, "queryMembership": "None",
                                        "api-version": "7.0"})
        assert resp.status_code == 200, resp.text
        return list(resp.json()["value"])

    (by_account,) = search("AccountName", "fabrikam\\JAMAL")
    properties = by_account["properties"]
    assert (properties["Domain"]["$value"], properties["Account"]["$value"]) == ("FABRIKAM", "jamal")
    assert properties["Mail"]["$value"] == "jamal@fabrikam.example"
    assert by_account["providerDisplayName"] == "Jamal Hartnett"
    assert search("MailAddress", "Jamal@Fabrikam.example")[0]["id"] == by_account["id"]
    assert search("General", "jamal hartnett")[0]["id"] == by_account["id"]
    assert search("MailAddress", "nobody@fabrikam.example") == []
    missing = session.get(url, params={"searchFilter": "AccountName", "api-version": "7.0"})
    assert missing.status_code == 400
