"""Key Vault key wrap and unwrap for the token cipher, as the function's managed identity.

The real `shared.adapters.keks.KeyWrapClient`: `CryptographyClient` with RSA-OAEP-256
(https://learn.microsoft.com/azure/key-vault/keys/about-keys-details). The identity needs only the
built-in role "Key Vault Crypto Service Encryption User" on the key (read key metadata, wrap,
unwrap). The SDK wraps locally with the public key and unwraps in Key Vault, so only `open` of an
uncached envelope costs a Key Vault call. This is the one place that maps Key Vault errors.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import CredentialUnavailableError
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm

from shared.core.errors import ConfigError, IdentityInvalid, TransientError

ALGORITHM = KeyWrapAlgorithm.rsa_oaep_256
ROLE = "Key Vault Crypto Service Encryption User"
MAX_UNWRAP_CLIENTS = 16
# Fail fast: a webhook that cannot open a credential answers 503 and ADO retries later.
CLIENT_OPTIONS: dict[str, Any] = {"retry_total": 2, "connection_timeout": 5, "read_timeout": 15}


class _Crypto(Protocol):
    def wrap_key(self, algorithm: KeyWrapAlgorithm, key: bytes) -> Any: ...

    def unwrap_key(self, algorithm: KeyWrapAlgorithm, encrypted_key: bytes) -> Any: ...


ClientFactory = Callable[[str, TokenCredential], _Crypto]


def _sdk_client(key_id: str, credential: TokenCredential) -> _Crypto:
    return CryptographyClient(key_id, credential, **CLIENT_OPTIONS)


class KeyVaultKeys:
    """Wraps data keys under a Key Vault key URL and unwraps them with the versioned key id."""

    def __init__(self, credential: TokenCredential, *, client_factory: ClientFactory = _sdk_client) -> None:
        self._credential = credential
        self._client_factory = client_factory
        self._unwrap_clients: OrderedDict[str, _Crypto] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def with_identity(cls, client_id: str | None = None) -> KeyVaultKeys:
        """As the managed identity `client_id` (the `AZURE_CLIENT_ID` setting), else the default credential."""
        from azure.identity import DefaultAzureCredential

        return cls(DefaultAzureCredential(managed_identity_client_id=client_id))

    def wrap_key(self, key_url: str, data_key: bytes) -> tuple[str, bytes]:
        # A new client per wrap reads the key's current version, so a rotated key is used at once.
        # Seals are rare (install, token refresh), so the extra metadata read is cheap.
        with _translated(key_url):
            result = self._client_factory(key_url, self._credential).wrap_key(ALGORITHM, data_key)
        if not result.key_id:
            raise ConfigError(f"Key Vault returned no key id when wrapping with {key_url}")
        return str(result.key_id), bytes(result.encrypted_key)

    def unwrap_key(self, key_id: str, wrapped: bytes) -> bytes:
        with _translated(key_id):
            result = self._unwrap_client(key_id).unwrap_key(ALGORITHM, wrapped)
        return bytes(result.key)

    def _unwrap_client(self, key_id: str) -> _Crypto:
        with self._lock:
            client = self._unwrap_clients.get(key_id)
            if client is None:
                client = self._client_factory(key_id, self._credential)
                self._unwrap_clients[key_id] = client
                while len(self._unwrap_clients) > MAX_UNWRAP_CLIENTS:
                    self._unwrap_clients.popitem(last=False)
            self._unwrap_clients.move_to_end(key_id)
            return client

    def __repr__(self) -> str:
        return "KeyVaultKeys()"


def _retry_after(error: HttpResponseError) -> float | None:
    headers = getattr(error.response, "headers", None) or {}
    try:
        return float(headers.get("Retry-After", ""))
    except ValueError:
        return None


@contextlib.contextmanager
def _translated(key: str) -> Iterator[None]:
    """Map azure-core and azure-identity failures to the bundle's errors (no response bodies)."""
    try:
        yield
    except (ServiceRequestError, ServiceResponseError) as error:
        raise TransientError(f"Key Vault did not answer for {key}: {type(error).__name__}") from None
    except CredentialUnavailableError:
        raise ConfigError(f"No Azure credential is available to use Key Vault key {key}") from None
    except ClientAuthenticationError:
        raise TransientError(f"Could not get a token for Key Vault key {key}") from None
    except HttpResponseError as error:
        status = error.status_code or 0
        if status in (408, 429) or status >= 500:
            raise TransientError(f"Key Vault answered {status} for {key}", retry_after=_retry_after(error)) from None
        if status in (401, 403):
            raise ConfigError(
                f"Key Vault refused wrap/unwrap with {key} ({status}): the function identity needs the role "
                f"{ROLE} on the key, and the key version must be enabled and not expired"
            ) from None
        if status == 404:
            raise ConfigError(f"Key Vault key {key} does not exist (deleted?)") from None
        if status == 400:
            raise IdentityInvalid(
                f"Stored credential cannot be opened: Key Vault could not unwrap with {key}"
            ) from None
        raise ConfigError(f"Key Vault answered {status} for {key}") from None
