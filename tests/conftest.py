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
