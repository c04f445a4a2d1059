"""Composition root: the objects the flows share, built on first use and reused per process."""

from __future__ import annotations

import functools

import requests

from shared.ado_auth import auth_for
from shared.ado_client import AdoClient
from shared.models import Integration
from shared.store import IdentityStore


@functools.cache
def http_session() -> requests.Session:
    """One connection pool for every Azure DevOps call of this process."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=16, pool_maxsize=32)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def ado_client(integration: Integration) -> AdoClient:
    """A client for the integration's organization, authenticated with its stored identity."""
    auth = auth_for(integration.account_id, IdentityStore(), session=http_session())
    return AdoClient(
        base_url=integration.domain_name,
        auth=auth,
        account_name=integration.account_name,
        session=http_session(),
    )
