"""Stored credentials at rest, and rotating the key that seals them, through the integration store on
Azurite: seal under key A, configure "B,A", re-seal, drop A, and everything still opens.

Each test uses a table of its own, so re-sealing never touches rows of other tests.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest

from shared import compose
from shared.adapters import integrations, storage
from shared.adapters.cipher import Cipher, cipher_from_setting, envelope_key_id
from shared.adapters.integrations import IntegrationStore
from shared.adapters.keks import local_key_id
from shared.adapters.store import table_store
from shared.core.errors import ConfigError
from shared.core.models import Identity
from shared.flows import rotation

pytestmark = pytest.mark.usefixtures("azurite")

KEY_A = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
KEY_B = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="
ID_A, ID_B = (local_key_id(base64.b64decode(k)) for k in (KEY_A, KEY_B))


class Keys:
    """The `TOKEN_ENCRYPTION_KEY` in force: tests change it as an operator would, between steps."""

    def __init__(self, value: str) -> None:
        self.cipher = cipher_from_setting(value)

    def set(self, value: str) -> None:
        self.cipher = cipher_from_setting(value)

    def __call__(self) -> Cipher:
        return self.cipher


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch, uid: str) -> Iterator[str]:
    name = f"IntegrationsKeys{uid}"
    monkeypatch.setattr(integrations, "TABLE", name)
    yield name
    storage.table(name).delete_table()


def identity(n: int) -> Identity:
    return Identity(kind="oauth", access_token=f"eyJ0eXAiOiJKV1QiLCJhbGciOi.access-{n}.sig",
                    refresh_token=f"M.C5_BAY.refresh-{n}-0AAAAAAAAAAAAA", expires_at=1_900_000_000.0)


def raw_rows(table: str) -> list[dict[str, Any]]:
    return [dict(e) for e in storage.table(table).query_entities("RowKey eq 'identity'")]


def test_stored_identity_rows_hold_no_token_in_plaintext(table: str) -> None:
    store = IntegrationStore(Keys(KEY_A))
    store.save_identity("acct-1", identity(1))
    store.save_identity("acct-2", Identity(kind="pat", access_token="k5r7z3q2w6x4m8n1p0o9i8u7y6t5r4e3w2q1a2s3d4"))

    rows = raw_rows(table)
    text = json.dumps(rows, default=str)
    for secret in ("access-1", "refresh-1", "k5r7z3q2w6x4m8n1p0o9i8u7y6t5r4e3w2q1a2s3d4"):
        assert secret not in text
    assert {envelope_key_id(row["sealed"]) for row in rows} == {ID_A}
    assert not any("access_token" in row or "refresh_token" in row for row in rows)
    loaded = store.load_identity("acct-1")
    assert loaded is not None and loaded[0].refresh_token == identity(1).refresh_token


def test_key_rotation_loses_no_integration(table: str) -> None:
    keys = Keys(KEY_A)
    store = IntegrationStore(keys)
    for n in range(3):
        store.save_identity(f"acct-{n}", identity(n))
    # A row from before encryption: tokens in plaintext columns.
    storage.table(table).upsert_entity({"PartitionKey": "acct-legacy", "RowKey": "identity", "kind": "pat",
                                        "access_token": "legacy-pat-0123456789", "status": "valid"})

    keys.set(f"{KEY_B},{KEY_A}")  # 1. the new key first, the old one kept
    store.save_identity("acct-new", identity(9))  # written meanwhile: sealed with B at once
    report = store.rewrap_identities()  # 2. re-seal
    assert (report.resealed, report.current, report.unreadable) == (4, 1, [])
    assert store.rewrap_identities().resealed == 0  # a second run finds nothing left to do

    keys.set(KEY_B)  # 3. the old key removed
    for n in range(3):
        loaded = store.load_identity(f"acct-{n}")
        assert loaded is not None and loaded[0].access_token == identity(n).access_token
    legacy = store.load_identity("acct-legacy")
    assert legacy is not None and legacy[0].access_token == "legacy-pat-0123456789"
    rows = raw_rows(table)
    assert {envelope_key_id(row["sealed"]) for row in rows} == {ID_B}
    assert "legacy-pat-0123456789" not in json.dumps(rows, default=str)


def test_dropping_the_old_key_before_resealing_is_reported_and_undone_by_putting_it_back(table: str) -> None:
    keys = Keys(KEY_A)
    store = IntegrationStore(keys)
    store.save_identity("acct-1", identity(1))

    keys.set(KEY_B)
    with pytest.raises(ConfigError, match=ID_A) as caught:
        store.load_identity("acct-1")
    assert KEY_A not in caught.value.message
    assert store.rewrap_identities().unreadable == ["acct-1"]

    keys.set(f"{KEY_B},{KEY_A}")
    assert store.rewrap_identities().resealed == 1
    keys.set(KEY_B)
    loaded = store.load_identity("acct-1")
    assert loaded is not None and loaded[0].access_token == identity(1).access_token


def test_the_reseal_command(table: str, capsys: pytest.CaptureFixture[str]) -> None:
    keys = Keys(KEY_A)
    svc = dataclasses.replace(compose.build(), store=table_store(keys))
    svc.store.integrations.save_identity("acct-1", identity(1))

    keys.set(KEY_B)  # the old key dropped too early: the command says which integration cannot be opened
    assert rotation.main(["reseal"], svc=svc) == 1
    assert json.loads(capsys.readouterr().out) == {"resealed": 0, "current": 0, "unreadable": ["acct-1"]}

    keys.set(f"{KEY_B},{KEY_A}")
    assert rotation.main(["reseal"], svc=svc) == 0
    assert json.loads(capsys.readouterr().out) == {"resealed": 1, "current": 0, "unreadable": []}
    assert rotation.main(["reseal"], svc=svc) == 0
    assert json.loads(capsys.readouterr().out) == {"resealed": 0, "current": 1, "unreadable": []}
