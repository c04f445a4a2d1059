"""The one factory of Azure DevOps clients: an integration's identity, its verified organization URL and endpoints.

No credential is ever sent to a host that is not Azure DevOps Services or listed in
`ADO_SERVER_HOSTS` (`shared.core.hosts`). A stored organization URL that is not usable (older installs
kept bare host names) is replaced by the account lookup's answer, checked the same way, and saved;
an Azure DevOps Server collection has no account lookup, so its URL must stay allowed. Search and
user calls go where the integration's deployment serves them (`shared.adapters.ado_endpoints`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import requests

from shared.adapters.ado_auth import IdentityRepo, auth_for
from shared.adapters.ado_client import AdoClient
from shared.adapters.ado_endpoints import SERVER, deployment_of, endpoints_for
from shared.adapters.ado_http import Auth
from shared.adapters.ado_lookup import lookup_base_url
from shared.adapters.entra import CredentialFactory, TokenCache
from shared.adapters.integrations import IntegrationStore
from shared.config import settings
from shared.core.errors import AdoError, InvalidInput
from shared.core.hosts import organization_url, parse_server_hosts
from shared.core.models import Integration

log = logging.getLogger(__name__)

AUTH_TTL = 300.0  # seconds a worker keeps an integration's credential
MAX_KEPT = 1000


def allowed_url(value: str | None) -> str | None:
    """The canonical organization URL, or None when `value` is not one the bundle may send credentials to."""
    if not value:
        return None
    try:
        return organization_url(value, server_hosts=parse_server_hosts(settings().ado_server_hosts))
    except InvalidInput:
        return None


class AdoConnector:
    """`connector(integration)` → an authenticated `AdoClient` for the integration's organization.

    The credential of each integration is kept for `AUTH_TTL` seconds, so a warm worker does not read
    the identity row per call; a refused credential is read again on the 401 (see `shared.adapters.ado_auth`).
    `entra_credentials` and `entra_cache` replace the azure-identity credentials and the process-wide
    token cache of managed identities and service principals (tests).
    """

    def __init__(self, integrations: IntegrationStore, session: requests.Session, *,
                 clock: Callable[[], float] = time.monotonic, entra_credentials: CredentialFactory | None = None,
                 entra_cache: TokenCache | None = None) -> None:
        self._integrations = integrations
        self._session = session
        self._clock = clock
        self._auths: dict[str, tuple[Auth, float]] = {}
        self._lock = threading.Lock()
        self._entra_credentials = entra_credentials
        self._entra_cache = entra_cache

    def __call__(self, integration: Integration) -> AdoClient:
        account_id = integration.account_id
        with self._lock:
            kept = self._auths.get(account_id)
        if kept is None or kept[1] <= self._clock():
            kept = (self._auth(account_id, self._integrations), self._clock() + AUTH_TTL)
            with self._lock:
                if len(self._auths) >= MAX_KEPT:
                    self._auths.clear()
                self._auths[account_id] = kept
        return self._client(integration, kept[0])

    def forget(self, account_id: str) -> None:
        """Drop the kept credential of an integration (its identity was just replaced)."""
        with self._lock:
            self._auths.pop(account_id, None)

    def connect(self, integration: Integration, identities: IdentityRepo) -> AdoClient:
        """A client using the identity kept by `identities` (install holds a new one in memory)."""
        return self._client(integration, self._auth(integration.account_id, identities))

    def _auth(self, account_id: str, identities: IdentityRepo) -> Auth:
        return auth_for(account_id, identities, session=self._session,
                        entra_credentials=self._entra_credentials, entra_cache=self._entra_cache)

    def _client(self, integration: Integration, auth: Auth) -> AdoClient:
        domain = allowed_url(integration.domain_name)
        if domain is None and integration.deployment == SERVER:
            raise AdoError(f"The collection URL of integration {integration.account_id} is not allowed; "
                           "is its host still listed in ADO_SERVER_HOSTS?")
        if domain is None:
            domain = allowed_url(lookup_base_url(integration.account_id, session=self._session, auth=auth))
            if domain is None:
                raise AdoError("The account lookup answered with an organization URL the bundle does not trust")

            def repaired(current: Integration) -> Integration | None:
                return replace(current, domain_name=domain) if current.domain_name != domain else None

            self._integrations.update(integration.account_id, repaired)
            log.info("integration.domain_repaired", extra={"account_id": integration.account_id})
        deployment = deployment_of(integration.deployment, domain)
        endpoints = endpoints_for(deployment, domain, integration.account_name, settings())
        return AdoClient(base_url=domain, auth=auth, account_name=integration.account_name, session=self._session,
                         endpoints=endpoints)
