"""Test fixtures shared by the whole suite: one Azurite per test session, settings, unique ids."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devhost import azurite as azurite_process
from shared import config, storage

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures" / "ado-webhooks"


@pytest.fixture(scope="session")
def azurite() -> Iterator[azurite_process.Azurite]:
    """A real Azurite on free ports, in memory, for the whole test session."""
    process = azurite_process.start()
    previous = os.environ.get("AzureWebJobsStorage")
    os.environ["AzureWebJobsStorage"] = process.connection_string
    config.reset()
    storage.reset()
    yield process
    process.stop()
    if previous is None:
        os.environ.pop("AzureWebJobsStorage", None)
    else:
        os.environ["AzureWebJobsStorage"] = previous
    config.reset()
    storage.reset()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set environment variables for one test; settings are re-read before and after."""
    config.reset()
    yield monkeypatch
    monkeypatch.undo()
    config.reset()


@pytest.fixture
def uid() -> str:
    """A fresh id, so tests sharing one Azurite never see each other's rows."""
    return uuid.uuid4().hex[:12]


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(scope="session")
def sandbox_ado() -> Iterator[object]:
    """The HTTPS sandbox Azure DevOps, trusted through REQUESTS_CA_BUNDLE, with the bundle pointed at it."""
    from devhost.sandbox_ado import SandboxAdo

    server = SandboxAdo(delivery_timeout=5.0)
    server.start()
    saved = {name: os.environ.get(name) for name in _SANDBOX_SETTINGS}
    os.environ.update({
        "REQUESTS_CA_BUNDLE": server.ca_pem_path,
        "ADO_TOKEN_URL": server.token_url,
        "ADO_ACCOUNT_LOOKUP_URL": server.lookup_url_template,
        "ADO_SEARCH_URL": server.search_url_template,
        "ADO_GRAPH_USERS_URL": server.graph_users_url_template,
        "ADO_CLIENT_ID": "sandbox-client",
        "ADO_CLIENT_SECRET": "sandbox-client-secret",
    })
    config.reset()
    yield server
    server.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    config.reset()


_SANDBOX_SETTINGS = ("REQUESTS_CA_BUNDLE", "ADO_TOKEN_URL", "ADO_ACCOUNT_LOOKUP_URL", "ADO_SEARCH_URL",
                     "ADO_GRAPH_USERS_URL", "ADO_CLIENT_ID", "ADO_CLIENT_SECRET")
