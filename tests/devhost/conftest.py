"""Fixtures of the devhost tests: a seeded sandbox Azure DevOps with a client, and a webhook receiver."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devhost.sandbox_ado import SandboxAdo
from tests.devhost.sandbox_client import Ado, Receiver


@pytest.fixture
def ado() -> Iterator[Ado]:
    with SandboxAdo(delivery_timeout=1.0, probation_failures=3, graph_page_size=2) as sandbox:
        client = Ado(sandbox)
        yield client
        client.session.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    yield rec
    rec.close()
