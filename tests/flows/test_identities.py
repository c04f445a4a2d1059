"""Installs with a managed identity or a service principal, against the sandbox's Entra endpoints.

The managed identity path runs azure-identity's `ManagedIdentityCredential` against the sandbox's App
Service token endpoint (`IDENTITY_ENDPOINT`/`IDENTITY_HEADER`); the service principal path runs
`ClientSecretCredential` against the sandbox tenant, with the Key Vault read replaced by a lookup
table (the real Key Vault read is covered in tests/adapters/test_entra.py). Bearer tokens the
sandbox issues for the Azure DevOps resource are accepted by its Services organizations.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from shared.adapters import integrations, storage
from shared.adapters.ado_connect import AdoConnector
from shared.adapters.entra import AzureCredentials, TokenCache, VaultSecret, default_cache
from shared.compose import Services
from shared.core.errors import IdentityInvalid, Unprocessable
from shared.flows import install

pytestmark = pytest.mark.usefixtures("azurite")

WEBHOOK = "https://sync.example.test/api/vsts/issue-updated"
TENANT = "7a1c2e3d-4b5f-4a6b-8c7d-9e0f1a2b3c4d"
SP_CLIENT = "3f2e1d0c-9b8a-4765-8432-10fedcba9876"
SP_SECRET = "sp-secret-value-S3CRET"
SECRET_REF = "https://kv-sync.vault.azure.net/secrets/ado-sp-secret"


class Clock:
    """Real time plus an offset, to move a token cache past its renewal time."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclass
class Org:
    sandbox: Any
    name: str
    account_id: str
    project_id: str
    tracker_org: str

    def body(self, identity: dict[str, Any], **changes: Any) -> dict[str, Any]:
        return {"account_name": self.name, "organization_id": self.tracker_org,
                "domain_name": self.sandbox.instance_url(self.name), "identity": identity, **changes}

    def rows(self) -> list[dict[str, Any]]:
        return [dict(e) for e in storage.table(integrations.TABLE).query_entities(
            "PartitionKey eq @pk", parameters={"pk": self.account_id})]

    def token_requests(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.sandbox.token_requests if r["kind"] == kind]

    def entra_tokens(self) -> list[str]:
        """Every token the sandbox tenant issued (they are accepted by any Services organization)."""
        with self.sandbox.state.lock:
            return [token for token, issued in self.sandbox.state.tokens.items() if issued.org == "*"]


@pytest.fixture
def org(sandbox_ado: Any, env: pytest.MonkeyPatch, uid: str) -> Org:
    env.setenv("WEBHOOK_URL", WEBHOOK)
    for name, value in sandbox_ado.managed_identity_environment().items():
        env.setenv(name, value)
    for name in ("MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "AZURE_CLIENT_ID"):
        env.delenv(name, raising=False)
    name = f"org{uid}"
    account_id = sandbox_ado.add_organization(name, f"acct-{uid}")
    project_id = sandbox_ado.add_project(name, "ProjectA")
    return Org(sandbox_ado, name, account_id, project_id, f"tracker-{uid}")


@pytest.fixture(autouse=True)
def fresh_token_cache() -> Iterator[None]:
    default_cache().clear()
    yield
    default_cache().clear()


def read_secret(ref: str) -> VaultSecret:
    if ref != SECRET_REF:
        raise IdentityInvalid("The Key Vault secret does not exist.")
    return VaultSecret(SP_SECRET)


def with_connector(svc: Services, sandbox: Any, **options: Any) -> Services:
    """`svc` whose Azure DevOps clients get service principal tokens from the sandbox tenant."""
    credentials = AzureCredentials(read_secret=read_secret, authority=sandbox.entra_authority,
                                   disable_instance_discovery=True, retry_total=0)
    return replace(svc, ado=AdoConnector(svc.store.integrations, svc.session, entra_credentials=credentials,
                                         **options))


def assert_no_token_stored(org: Org, *secrets: str) -> None:
    rows = org.rows()
    (identity,) = [row for row in rows if row["RowKey"] == "identity"]
    assert not {"sealed", "access_token", "refresh_token", "expires_at"} & set(identity)
    stored = json.dumps(rows, default=str)
    for secret in [*org.entra_tokens(), *secrets]:
        assert secret not in stored


def test_install_with_the_apps_managed_identity(svc: Services, org: Org) -> None:
    client_id = org.sandbox.managed_identity_client_id
    before = len(org.token_requests("managed_identity"))
    reply = install.install(svc, org.account_id, org.body({"kind": "managed_identity", "client_id": client_id}))

    assert reply.status == 200 and reply.body["deployment"] == "services"
    [hook] = org.sandbox.subscriptions(org.name)
    assert reply.body["subscription"] == {**reply.body["subscription"], "id": hook["id"], "status": "enabled"}
    requests_made = org.token_requests("managed_identity")[before:]
    assert requests_made == [{"kind": "managed_identity", "resource": "499b84ac-1321-427f-aa17-267ca6975798",
                              "client_id": client_id}]
    (identity,) = [row for row in org.rows() if row["RowKey"] == "identity"]
    assert identity["kind"] == "managed_identity"
    assert json.loads(identity["entra"]) == {"kind": "managed_identity", "client_id": client_id}
    assert_no_token_stored(org)

    # Later calls (here: the repository listing) reuse the process-wide cached token.
    assert install.ado_repositories(svc, org.account_id).status == 200
    assert len(org.token_requests("managed_identity")) == before + 1


def test_install_with_a_service_principal(svc: Services, org: Org) -> None:
    org.sandbox.add_service_principal(TENANT, SP_CLIENT, SP_SECRET)
    svc = with_connector(svc, org.sandbox)
    before = len(org.token_requests("client_credentials"))
    identity = {"kind": "service_principal", "tenant_id": TENANT, "client_id": SP_CLIENT, "secret_ref": SECRET_REF}
    reply = install.install(svc, org.account_id, org.body(identity))

    assert reply.status == 200 and len(org.sandbox.subscriptions(org.name)) == 1
    made = org.token_requests("client_credentials")[before:]
    assert [(r["tenant"], r["client_id"], r["scope"]) for r in made] == [
        (TENANT, SP_CLIENT, "499b84ac-1321-427f-aa17-267ca6975798/.default")]
    (row,) = [row for row in org.rows() if row["RowKey"] == "identity"]
    assert json.loads(row["entra"]) == identity
    assert_no_token_stored(org, SP_SECRET)
    assert SP_SECRET not in json.dumps(reply.body)


def test_a_refused_service_principal_is_a_422_without_its_secret(svc: Services, org: Org) -> None:
    org.sandbox.add_service_principal(TENANT, SP_CLIENT, "another-secret")
    svc = with_connector(svc, org.sandbox)
    identity = {"kind": "service_principal", "tenant_id": TENANT, "client_id": SP_CLIENT, "secret_ref": SECRET_REF}
    with pytest.raises(Unprocessable) as refused:
        install.install(svc, org.account_id, org.body(identity))
    assert refused.value.field == "identity"
    assert "AADSTS7000215" in refused.value.message and SP_SECRET not in refused.value.message
    assert org.rows() == [] and org.sandbox.subscriptions(org.name) == []


def test_twenty_concurrent_calls_make_one_token_request_per_expiry_window(svc: Services, org: Org) -> None:
    clock = Clock()
    svc = with_connector(svc, org.sandbox, entra_cache=TokenCache(clock=clock))
    client_id = org.sandbox.managed_identity_client_id
    install.install(svc, org.account_id, org.body({"kind": "managed_identity", "client_id": client_id}))
    integration = svc.store.integrations.get(org.account_id)
    assert integration is not None
    start = len(org.token_requests("managed_identity"))

    def round_of_calls() -> None:
        gate = threading.Barrier(20)
        failures: list[BaseException] = []

        def call() -> None:
            try:
                gate.wait()
                svc.ado(integration).list_projects()
            except BaseException as error:  # reported below
                failures.append(error)

        threads = [threading.Thread(target=call) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []

    round_of_calls()  # the install's token is still fresh: no request at all
    assert len(org.token_requests("managed_identity")) == start
    clock.offset = 3600 - 300 + 1  # past the renewal time (5 minutes before the one-hour expiry)
    round_of_calls()
    assert len(org.token_requests("managed_identity")) == start + 1
    round_of_calls()
    assert len(org.token_requests("managed_identity")) == start + 1


def test_managed_identity_is_refused_for_a_server_collection(svc: Services, org: Org, uid: str) -> None:
    collection = f"Coll{uid}"
    account_id = org.sandbox.add_server_collection(collection)
    body = {"account_name": collection, "organization_id": org.tracker_org,
            "domain_name": org.sandbox.instance_url(collection),
            "identity": {"kind": "managed_identity", "client_id": org.sandbox.managed_identity_client_id}}
    with pytest.raises(Unprocessable) as refused:
        install.install(svc, account_id, body)
    assert refused.value.field == "identity"
    assert "personal access token" in refused.value.message
    assert org.sandbox.subscriptions(collection) == []
    assert svc.store.integrations.get(account_id) is None


def test_a_managed_identity_not_attached_to_the_app_is_a_422(svc: Services, org: Org) -> None:
    other = "0f0e0d0c-0b0a-4908-8706-050403020100"
    svc = with_connector(svc, org.sandbox)  # retry_total=0: the refusal is final
    with pytest.raises(Unprocessable) as refused:
        install.install(svc, org.account_id, org.body({"kind": "managed_identity", "client_id": other}))
    assert refused.value.field == "identity"
    assert f"managed identity {other}" in refused.value.message and "HTTP 400" in refused.value.message
    assert org.rows() == [] and org.sandbox.subscriptions(org.name) == []
