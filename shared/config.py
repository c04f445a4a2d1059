"""Application settings: the only module that reads the environment.

Settings are read on first use (never at import, so `function_app.py` always indexes) and cached;
`reset()` drops the cache (tests and the devhost use it after changing the environment).
A missing required setting raises `ConfigError` naming it.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.core.errors import ConfigError

DEFAULT_TOKEN_URL = "https://login.microsoftonline.com/common/oauth2/v2.0/token"
DEFAULT_ACCOUNT_LOOKUP_URL = (
    "https://app.vssps.visualstudio.com/_apis/resourceareas/79134C72-4A58-4B42-976C-04E7115F32BF"
    "?hostId={account_id}&api-preview=5.0-preview.1"
)
DEFAULT_SEARCH_URL = "https://almsearch.dev.azure.com/{account_name}/_apis/search/workitemsearchresults"
DEFAULT_GRAPH_USERS_URL = "https://vssps.dev.azure.com/{account_name}/_apis/graph/users"
DEFAULT_SUBSCRIPTION_SCHEDULE = "0 0 */6 * * *"

STORAGE_SETTING = "AzureWebJobsStorage"


@dataclass(frozen=True)
class Settings:
    """Every app setting the bundle reads (README "Settings"). Secrets are kept out of `repr`."""

    storage_connection: str | None
    storage_table_uri: str | None
    storage_queue_uri: str | None
    storage_client_id: str | None
    manage_api_key: str | None
    webhook_url: str | None
    ado_client_id: str | None
    ado_client_secret: str | None
    ado_token_url: str
    ado_account_lookup_url: str
    ado_search_url: str
    ado_graph_users_url: str
    subscription_schedule: str
    token_encryption_key: str | None = None
    ado_server_hosts: str | None = None
    tracker_webhook_url: str | None = None
    tracker_webhook_secret: str | None = None

    def __repr__(self) -> str:
        return "Settings(<redacted>)"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        def get(name: str) -> str | None:
            value = environ.get(name, "").strip()
            return value or None

        prefix = STORAGE_SETTING + "__"
        settings = cls(
            storage_connection=get(STORAGE_SETTING),
            storage_table_uri=get(prefix + "tableServiceUri"),
            storage_queue_uri=get(prefix + "queueServiceUri"),
            storage_client_id=get(prefix + "clientId"),
            manage_api_key=get("MANAGE_API_KEY"),
            webhook_url=get("WEBHOOK_URL"),
            ado_client_id=get("ADO_CLIENT_ID"),
            ado_client_secret=get("ADO_CLIENT_SECRET"),
            ado_token_url=get("ADO_TOKEN_URL") or DEFAULT_TOKEN_URL,
            ado_account_lookup_url=get("ADO_ACCOUNT_LOOKUP_URL") or DEFAULT_ACCOUNT_LOOKUP_URL,
            ado_search_url=get("ADO_SEARCH_URL") or DEFAULT_SEARCH_URL,
            ado_graph_users_url=get("ADO_GRAPH_USERS_URL") or DEFAULT_GRAPH_USERS_URL,
            subscription_schedule=get("SUBSCRIPTION_SCHEDULE") or DEFAULT_SUBSCRIPTION_SCHEDULE,
            token_encryption_key=get("TOKEN_ENCRYPTION_KEY"),
            ado_server_hosts=get("ADO_SERVER_HOSTS"),
            tracker_webhook_url=get("TRACKER_WEBHOOK_URL"),
            tracker_webhook_secret=get("TRACKER_WEBHOOK_SECRET"),
        )
        if settings.storage_connection is None and settings.storage_table_uri is None:
            raise ConfigError(
                f"Setting {STORAGE_SETTING} is required (a connection string, or the identity-based "
                f"{prefix}tableServiceUri and {prefix}queueServiceUri)."
            )
        return settings

    @property
    def local_storage(self) -> bool:
        """Whether storage is the local emulator (Azurite), where local-only defaults apply."""
        text = (self.storage_connection or "").lower()
        return "usedevelopmentstorage=true" in text or "devstoreaccount1" in text

    def require(self, attribute: str, setting_name: str) -> str:
        """The value of an optional setting a flow cannot do without."""
        value = getattr(self, attribute)
        if not value:
            raise ConfigError(f"Setting {setting_name} is required for this operation.")
        return str(value)


@functools.cache
def settings() -> Settings:
    """The process-wide settings, read from the environment on first call."""
    return Settings.from_env(os.environ)


def reset() -> None:
    """Forget cached settings (after the environment changed)."""
    settings.cache_clear()
