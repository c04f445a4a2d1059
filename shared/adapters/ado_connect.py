"""The one factory of Azure DevOps clients: an integration's stored identity and organization URL.

A stored organization URL that is not a usable `https://.../` URL (older installs kept bare host
names) is repaired by the account lookup and saved before the client is built.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import requests

from shared.adapters.ado_auth import IdentityRepo, auth_for
from shared.adapters.ado_client import AdoClient, checked_domain_name, lookup_base_url
from shared.adapters.integrations import IntegrationStore
from shared.core.models import Integration

log = logging.getLogger(__name__)


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
        domain, changed = checked_domain_name(
            integration.domain_name, integration.account_id,
            lambda aid: lookup_base_url(aid, session=self._session, auth=auth),
        )
        if changed:
            def repaired(current: Integration) -> Integration | None:
                return replace(current, domain_name=domain) if current.domain_name != domain else None

            self._integrations.update(integration.account_id, repaired)
            log.info("integration.domain_repaired", extra={"account_id": integration.account_id})
        return AdoClient(base_url=domain, auth=auth, account_name=integration.account_name, session=self._session)
