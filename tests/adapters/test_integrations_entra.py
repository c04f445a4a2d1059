"""App-only identities in the integration partition: stored without tokens, read back, turned into `EntraAuth`."""

from __future__ import annotations

import json

import pytest

from shared.adapters import integrations, storage, tables
from shared.adapters.ado_auth import auth_for
from shared.adapters.entra import EntraAuth, TokenCache
from shared.compose import Services
from shared.core.errors import IdentityInvalid
from shared.core.identities import EntraIdentity
from shared.core.models import Identity, Integration

SP = EntraIdentity("service_principal", client_id="3f2e1d0c-9b8a-4765-8432-10fedcba9876",
                   tenant_id="7a1c2e3d-4b5f-4a6b-8c7d-9e0f1a2b3c4d",
                   certificate_ref="https://kv-sync.vault.azure.net/certificates/ado-sp")


def identity_row(account_id: str) -> dict[str, object]:
    return dict(storage.table(integrations.TABLE).get_entity(account_id, integrations.RK_IDENTITY))


def test_a_service_principal_is_stored_as_its_description_only(svc: Services, uid: str) -> None:
    store = svc.store.integrations
    store.save_identity(uid, Identity(kind="oauth", access_token="old-TOKEN", refresh_token="old-REFRESH"))
    store.save_identity(uid, Identity(kind="service_principal", access_token="", entra=SP))  # replaces the row

    row = identity_row(uid)
    assert row["kind"] == "service_principal"
    assert json.loads(str(row["entra"])) == SP.to_dict()
    assert not {"sealed", "access_token", "refresh_token", "expires_at"} & set(row)
    assert "TOKEN" not in json.dumps(row, default=str) and "REFRESH" not in json.dumps(row, default=str)

    loaded = store.load_identity(uid)
    assert loaded is not None
    identity, _ = loaded
    assert (identity.kind, identity.entra, identity.access_token, identity.status) == (
        "service_principal", SP, "", "valid")
    report = store.rewrap_identities()
    assert uid not in report.unreadable and identity_row(uid)["entra"] == row["entra"]  # nothing to re-seal


def test_auth_for_an_app_only_identity_is_entra_auth(svc: Services, uid: str) -> None:
    store = svc.store.integrations
    store.save_identity(uid, Identity(kind="managed_identity", access_token="",
                                      entra=EntraIdentity("managed_identity")))
    cache = TokenCache()
    auth = auth_for(uid, store, entra_cache=cache)
    assert isinstance(auth, EntraAuth) and auth.identity == EntraIdentity("managed_identity")
    assert "managed identity" in repr(auth)


def test_an_unreadable_description_makes_the_identity_invalid(svc: Services, uid: str) -> None:
    tables.upsert(integrations.TABLE, {"PartitionKey": uid, "RowKey": integrations.RK_IDENTITY,
                                       "kind": "service_principal", "entra": '{"client_id": "not-a-guid"}'})
    loaded = svc.store.integrations.load_identity(uid)
    assert loaded is not None and loaded[0].status == "invalid"
    with pytest.raises(IdentityInvalid, match="install the integration again"):
        auth_for(uid, svc.store.integrations)


def test_the_deployment_is_stored_with_the_integration(svc: Services, uid: str) -> None:
    store = svc.store.integrations
    store.save(Integration(account_id=uid, account_name="Coll", domain_name="https://tfs.example/tfs/Coll/",
                           deployment="server"))
    found = store.get(uid)
    assert found is not None and found.deployment == "server"
    assert store.read(uid).integration == found
