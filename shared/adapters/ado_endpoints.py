"""Where one integration's Azure DevOps calls go, besides its organization (collection) URL.

Azure DevOps Services spreads an organization over several hosts: work item search on
`almsearch.dev.azure.com/{org}`, users on `vssps.dev.azure.com/{org}`, and the account lookup on
`app.vssps.visualstudio.com`; their URL templates are the settings `ADO_SEARCH_URL`,
`ADO_GRAPH_USERS_URL` and `ADO_ACCOUNT_LOOKUP_URL`. An Azure DevOps Server collection serves
everything under its own URL (`{collection}/_apis/...`), has no graph users API and no account
lookup, and answers REST api-version 7.0 at most (Server 2022). So one bundle serves both: the
endpoints are chosen per integration.

https://learn.microsoft.com/azure/devops/integrate/concepts/rest-api-versioning#supported-versions
https://learn.microsoft.com/rest/api/azure/devops/graph/users/list?view=azure-devops-rest-7.1
https://learn.microsoft.com/rest/api/azure/devops/core/resource-areas/get?view=azure-devops-rest-7.1
https://learn.microsoft.com/rest/api/azure/devops/search/work-item-search-results/fetch-work-item-search-results?view=azure-devops-server-rest-7.0
https://learn.microsoft.com/rest/api/azure/devops/ims/identities/read-identities?view=azure-devops-server-rest-7.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from shared.config import Settings
from shared.core.errors import AdoNotFound, BundleError, InvalidInput
from shared.core.hosts import is_services_url
from shared.core.models import Integration

SERVICES = "services"
SERVER = "server"
API_VERSION = "7.1"
SERVER_API_VERSION = "7.0"  # Azure DevOps Server 2022 refuses 7.1 ("out of range for this server")
SEARCH_PATH = "_apis/search/workitemsearchresults"
IDENTITIES_PATH = "_apis/identities"


@dataclass(frozen=True)
class Endpoints:
    """The deployment of an integration and the URLs of its calls outside the collection URL.

    `graph_users_url` is None on Server (no graph users API); `identities_url` is the identities
    (IMS) API, used on Server to find users by e-mail or account name. A None URL on Services means
    the integration has no account name to fill the setting's template with.
    """

    deployment: str
    api_version: str
    search_url: str | None
    graph_users_url: str | None
    identities_url: str | None

    @property
    def server(self) -> bool:
        return self.deployment == SERVER


def deployment_of(recorded: str, organization_url: str) -> str:
    """"services" or "server": what install recorded (from connectionData), else what the URL says.

    Only `https://host/tfs/{collection}/` is unmistakably Server. An unrecorded integration at
    `https://host/{collection}/` keeps the Services endpoints it used before deployments were
    recorded; installing it again records what it is.
    """
    if recorded in (SERVICES, SERVER):
        return recorded
    if is_services_url(organization_url):
        return SERVICES
    path = urlsplit(organization_url).path.lower()
    return SERVER if path.startswith("/tfs/") else SERVICES


def is_server(integration: Integration) -> bool:
    """Whether the integration is an Azure DevOps Server collection."""
    return deployment_of(integration.deployment, integration.domain_name) == SERVER


def reported_deployment(connection_data: dict[str, Any], organization_url: str) -> str:
    """The deployment a collection's connectionData reports (`deploymentType`: hosted | onPremises)."""
    kind = str(connection_data.get("deploymentType") or "").lower()
    if kind == "onpremises":
        return SERVER
    if kind == "hosted":
        return SERVICES
    return deployment_of("", organization_url)


def services_endpoints(account_name: str, settings: Settings) -> Endpoints:
    """Azure DevOps Services: search and users from the setting templates, filled with the org name."""

    def fill(template: str) -> str | None:
        # An empty name, `.` or `..` would change the URL's path: no such endpoint.
        usable = account_name.strip(".")
        return template.replace("{account_name}", quote(account_name, safe="")) if usable else None

    graph = fill(settings.ado_graph_users_url)
    # The identities API lives on the same (vssps) host as the graph.
    identities = graph.split("/_apis/", 1)[0] + "/" + IDENTITIES_PATH if graph else None
    return Endpoints(SERVICES, API_VERSION, fill(settings.ado_search_url), graph, identities)


def server_endpoints(collection_url: str) -> Endpoints:
    """An Azure DevOps Server collection: everything under the collection URL, api-version 7.0."""
    base = collection_url if collection_url.endswith("/") else collection_url + "/"
    return Endpoints(SERVER, SERVER_API_VERSION, base + SEARCH_PATH, None, base + IDENTITIES_PATH)


def unavailable(endpoints: Endpoints) -> BundleError:
    """The error of a call whose endpoint the integration does not have."""
    if endpoints.server:
        return AdoNotFound("Azure DevOps Server has no graph users API (its identities API serves users)")
    return InvalidInput("account_name is required for this Azure DevOps call", field="account_name")


def endpoints_for(deployment: str, collection_url: str, account_name: str, settings: Settings) -> Endpoints:
    if deployment == SERVER:
        return server_endpoints(collection_url)
    return services_endpoints(account_name, settings)
