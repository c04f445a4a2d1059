"""Organization URL discovery: the instance URL of an Azure DevOps account, from the account lookup.

https://learn.microsoft.com/rest/api/azure/devops/core/resource-areas/get
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import requests

from shared import config
from shared.adapters.ado_client import LOOKUP_API_VERSION, AdoClient
from shared.adapters.ado_http import Auth, NoAuth
from shared.config import Settings
from shared.core.errors import AdoNotFound


def lookup_base_url(
    account_id: str,
    *,
    session: requests.Session | None = None,
    settings: Settings | None = None,
    auth: Auth | None = None,
) -> str:
    """The instance URL (`locationUrl`, ending in `/`) of the ADO account `account_id`.

    Raises:
        AdoNotFound: the answer has no usable `locationUrl`.
        AdoError: the lookup failed.
    """
    settings = settings or config.settings()
    url = settings.ado_account_lookup_url.replace("{account_id}", quote(account_id, safe=""))
    parts = urlsplit(url)
    client = AdoClient(
        base_url=f"{parts.scheme}://{parts.netloc}/",
        auth=auth or NoAuth(),
        settings=settings,
        session=session,
    )
    body = client.request("GET", url, api_version=LOOKUP_API_VERSION)
    location = body.get("locationUrl") if isinstance(body, dict) else None
    if not isinstance(location, str) or not location.startswith("https://"):
        raise AdoNotFound(f"Azure DevOps account lookup for {account_id} returned no usable locationUrl")
    return location if location.endswith("/") else location + "/"
