"""The one factory of Azure DevOps clients: an integration's identity and its verified organization URL.

No credential is ever sent to a host that is not Azure DevOps Services or listed in
`ADO_SERVER_HOSTS` (`shared.core.hosts`). A stored organization URL that is not usable (older installs
kept bare host names) is replaced by the account lookup's answer, checked the same way, and saved.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import requests

from shared.adapters.ado_auth import IdentityRepo, auth_for
from shared.adapters.ado_client import AdoClient, lookup_base_url
from shared.adapters.integrations import IntegrationStore
from shared.config import settings
from shared.core.errors import AdoError, InvalidInput
from shared.core.hosts import organization_url, parse_server_hosts
from shared.core.models import Integration

log = logging.getLogger(__name__)


def allowed_url(value: str | None) -> str | None:
    """The canonical organization URL, or None when `value` is not one the bundle may send credentials to."""
    if not value:
        return None
    try:
        return organization_url(value, server_hosts=parse_server_hosts(settings().ado_server_hosts))
    except InvalidInput:
        return None


class AdoConnector:
    """`connector(integration)` → an authenticated `AdoClient` for the integration's organization."""

    def __init__(self, integrations: IntegrationStore, session: requests.Session) -> None:
        self._integrations = integrations
        self._session = session

    def __call__(self, integration: Integration) -> AdoClient:
        return self.connect(integration, self._integrations)

    def connect(self, integration: Integration, identities: IdentityRepo) -> AdoClient:
        """A client using the identity kept by `identities` (install holds a new one in memory)."""
        auth = auth_for(integration.account_id, identities, session=self._session)
        domain = allowed_url(integration.domain_name)
        if domain is None:
            domain = allowed_url(lookup_base_url(integration.account_id, session=self._session, auth=auth))
            if domain is None:
                raise AdoError("The account lookup answered with an organization URL the bundle does not trust")

            def repaired(current: Integration) -> Integration | None:
                return replace(current, domain_name=domain) if current.domain_name != domain else None

            self._integrations.update(integration.account_id, repaired)
            log.info("integration.domain_repaired", extra={"account_id": integration.account_id})
        return AdoClient(base_url=domain, auth=auth, account_name=integration.account_name, session=self._session)
