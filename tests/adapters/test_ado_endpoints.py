"""Per-integration endpoints: Azure DevOps Services from the settings, Server under the collection URL."""

from __future__ import annotations

from typing import Any

import pytest
import responses

from shared.adapters.ado_auth import PatAuth
from shared.adapters.ado_client import AdoClient
from shared.adapters.ado_endpoints import (
    deployment_of,
    endpoints_for,
    reported_deployment,
    server_endpoints,
    services_endpoints,
)
from shared.config import Settings
from shared.core.errors import AdoNotFound

SETTINGS = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
COLLECTION = "https://tfs.fabrikam.example/tfs/DefaultCollection/"


@pytest.mark.parametrize(
    ("recorded", "url", "expected"),
    [
        pytest.param("server", "https://dev.azure.com/acme/", "server", id="recorded-wins"),
        pytest.param("services", COLLECTION, "services", id="recorded-services"),
        pytest.param("", "https://dev.azure.com/acme/", "services", id="services-url"),
        pytest.param("", "https://acme.visualstudio.com/", "services", id="legacy-services-url"),
        pytest.param("", COLLECTION, "server", id="tfs-path"),
        pytest.param("", "https://ado.fabrikam.example/DefaultCollection/", "services", id="unrecorded-ambiguous"),
    ],
)
def test_deployment_of(recorded: str, url: str, expected: str) -> None:
    assert deployment_of(recorded, url) == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param({"deploymentType": "onPremises"}, "server", id="on-premises"),
        pytest.param({"deploymentType": "hosted"}, "services", id="hosted"),
        pytest.param({}, "server", id="unknown-falls-back-to-the-url"),
    ],
)
def test_reported_deployment(data: dict[str, Any], expected: str) -> None:
    assert reported_deployment(data, COLLECTION) == expected


def test_services_endpoints_fill_the_setting_templates() -> None:
    found = services_endpoints("fabrikam fiber", SETTINGS)
    assert (found.deployment, found.api_version, found.server) == ("services", "7.1", False)
    assert found.search_url == "https://almsearch.dev.azure.com/fabrikam%20fiber/_apis/search/workitemsearchresults"
    assert found.graph_users_url == "https://vssps.dev.azure.com/fabrikam%20fiber/_apis/graph/users"
    assert found.identities_url == "https://vssps.dev.azure.com/fabrikam%20fiber/_apis/identities"
    assert services_endpoints("", SETTINGS).search_url is None


def test_server_endpoints_live_under_the_collection() -> None:
    found = endpoints_for("server", COLLECTION.rstrip("/"), "DefaultCollection", SETTINGS)
    assert found == server_endpoints(COLLECTION)
    assert (found.deployment, found.api_version, found.server) == ("server", "7.0", True)
    assert found.search_url == COLLECTION + "_apis/search/workitemsearchresults"
    assert found.identities_url == COLLECTION + "_apis/identities"
    assert found.graph_users_url is None


@responses.activate
def test_a_server_client_sends_api_version_7_0_and_searches_the_collection() -> None:
    responses.add(responses.GET, COLLECTION + "_apis/projects", json={"value": [{"id": "p"}]})
    responses.add(responses.POST, COLLECTION + "_apis/search/workitemsearchresults", json={"results": [{"x": 1}]})
    responses.add(responses.GET, COLLECTION + "_apis/identities", json={"count": 1, "value": [{"id": "i"}]})
    client = AdoClient(base_url=COLLECTION, auth=PatAuth("pat"), account_name="DefaultCollection",
                       settings=SETTINGS, endpoints=server_endpoints(COLLECTION))
    assert client.list_projects() == [{"id": "p"}]
    assert client.search_work_items("needle") == [{"x": 1}]
    assert client.find_identities("AccountName", "FABRIKAM\\jamal") == [{"id": "i"}]
    versions = [call.request.url.split("api-version=")[1].split("&")[0] for call in responses.calls]
    assert versions == ["7.0", "7.0", "7.0"]
    identities_url = responses.calls[2].request.url
    assert "searchFilter=AccountName" in identities_url and "filterValue=FABRIKAM%5Cjamal" in identities_url
    with pytest.raises(AdoNotFound, match="no graph users API"):
        list(client.iter_graph_users())
