"""Azure SDK credentials for app-only Entra identities, and the Key Vault reads they need.

`AzureCredentials` builds a new azure-identity credential per token request (a managed identity,
or a service principal whose client secret or certificate `KeyVaultReader` reads from Key Vault
with the function app's own identity). `classify` turns Azure SDK failures into the bundle's errors
without their text. Network I/O: the managed identity endpoint, Microsoft Entra ID and Key Vault.
Secrets never reach logs, messages or reprs.
https://learn.microsoft.com/azure/devops/integrate/get-started/authentication/service-principal-managed-identity
"""

from __future__ import annotations

import base64
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.core.errors import BundleError, IdentityInvalid, TransientError
from shared.core.identities import EntraIdentity

# Setting with the client id of the function app's user-assigned identity (set by infra/main.bicep).
APP_CLIENT_ID_SETTING = "AZURE_CLIENT_ID"


# --- Key Vault -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VaultSecret:
    """A Key Vault secret's value and content type (for a certificate: PKCS#12 or PEM)."""

    value: str = field(repr=False)
    content_type: str | None = None


SecretReader = Callable[[str], VaultSecret]


def secret_location(ref: str) -> tuple[str, str, str | None]:
    """(vault URL, secret name, version) of a Key Vault reference; a certificate is read as its secret.

    A Key Vault certificate's private key is the secret of the same name.
    https://learn.microsoft.com/azure/key-vault/certificates/about-certificates#composition-of-a-certificate
    """
    parts = urlsplit(ref)
    segments = [segment for segment in parts.path.split("/") if segment]
    if len(segments) not in (2, 3) or segments[0] not in ("secrets", "certificates"):
        raise IdentityInvalid("The identity's Key Vault reference is not a secret or certificate URI.")
    return f"{parts.scheme}://{parts.netloc}", segments[1], segments[2] if len(segments) == 3 else None


class KeyVaultReader:
    """Reads Key Vault secrets with the function app's own managed identity; one client per vault.

    `credential` replaces that identity; `credential_options` go to the default identity's
    credential and `client_options` to each `SecretClient` (e.g. `retry_total`, `connection_verify`).
    """

    def __init__(self, credential: TokenCredential | None = None, *,
                 credential_options: Mapping[str, Any] | None = None, **client_options: Any) -> None:
        self._credential = credential
        self._credential_options = dict(credential_options or {})
        self._options = client_options
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, ref: str) -> VaultSecret:
        vault_url, name, version = secret_location(ref)
        where = f"Key Vault secret {name} in {urlsplit(vault_url).hostname}"
        reset_status()
        try:
            secret = self._client(vault_url).get_secret(name, version)
        except ResourceNotFoundError:
            raise IdentityInvalid(f"The {where} does not exist.") from None
        except Exception as exc:  # every Azure SDK failure is classified below
            status = getattr(exc, "status_code", None) or last_status()
            if status in (401, 403):
                raise IdentityInvalid(
                    f"The function app's identity may not read the {where} (HTTP {status}); "
                    "grant it the Key Vault Secrets User role on the vault."
                ) from None
            raise classify(exc, status, f"the read of the {where}") from None
        if not secret.value:
            raise IdentityInvalid(f"The {where} is empty.")
        return VaultSecret(value=secret.value, content_type=secret.properties.content_type)

    def _client(self, vault_url: str) -> Any:
        from azure.identity import ManagedIdentityCredential
        from azure.keyvault.secrets import SecretClient

        with self._lock:
            client = self._clients.get(vault_url)
            if client is None:
                if self._credential is None:
                    app_client_id = os.environ.get(APP_CLIENT_ID_SETTING) or None
                    self._credential = ManagedIdentityCredential(
                        client_id=app_client_id, **{"raw_response_hook": _record_status, **self._credential_options})
                options = {"raw_response_hook": _record_status, **self._options}
                client = self._clients[vault_url] = SecretClient(vault_url, self._credential, **options)
            return client


_reader: KeyVaultReader | None = None
_reader_lock = threading.Lock()


def _default_reader() -> KeyVaultReader:
    """One process-wide reader, so Key Vault clients and the app identity's vault token are reused."""
    global _reader
    with _reader_lock:
        if _reader is None:
            _reader = KeyVaultReader()
        return _reader


def certificate_bytes(secret: VaultSecret) -> bytes:
    """The certificate with its private key, as CertificateCredential takes it (PEM or PKCS#12 bytes)."""
    text = secret.value.strip()
    if (secret.content_type or "").lower() == "application/x-pem-file" or text.startswith("-----BEGIN"):
        return text.encode("ascii", errors="strict")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise IdentityInvalid("The identity's Key Vault certificate is neither PEM nor base64 PKCS#12.") from None


# --- credentials ---------------------------------------------------------------------------------


CredentialFactory = Callable[[EntraIdentity], TokenCredential]


class AzureCredentials:
    """The default `CredentialFactory`: a new azure-identity credential for each token request.

    A fresh credential has an empty MSAL cache, so a forced renewal really asks the token endpoint.
    `credential_options` go to every credential (e.g. `authority`, `disable_instance_discovery`,
    `connection_verify`, `retry_total`); `read_secret` reads the service principal's Key Vault secret
    (default: a process-wide `KeyVaultReader`).
    """

    def __init__(self, *, read_secret: SecretReader | None = None, app_client_id: str | None = None,
                 **credential_options: Any) -> None:
        self._read_secret = read_secret
        self._app_client_id = app_client_id
        self._options = credential_options

    def __call__(self, identity: EntraIdentity) -> TokenCredential:
        from azure.identity import CertificateCredential, ClientSecretCredential, ManagedIdentityCredential

        options = {"raw_response_hook": _record_status, **self._options}
        if identity.kind == "managed_identity":
            client_id = identity.client_id or self._app_client_id or os.environ.get(APP_CLIENT_ID_SETTING) or None
            return ManagedIdentityCredential(client_id=client_id, **options)
        ref = identity.secret_ref or identity.certificate_ref
        if not (identity.tenant_id and identity.client_id and ref):
            raise IdentityInvalid(f"The {identity.describe()} lacks a tenant, client id or Key Vault reference.")
        read_secret = self._read_secret or _default_reader()
        if identity.secret_ref:
            secret = read_secret(identity.secret_ref)
            return ClientSecretCredential(identity.tenant_id, identity.client_id, secret.value, **options)
        data = certificate_bytes(read_secret(ref))
        try:
            return CertificateCredential(identity.tenant_id, identity.client_id, certificate_data=data, **options)
        except ValueError:
            raise IdentityInvalid(f"The Key Vault certificate of {identity.describe()} cannot be loaded "
                                  "(it needs its private key, without a password).") from None


# The HTTP status of the last response the current thread's token request got, when the credential
# came from `AzureCredentials` (its pipeline calls `_record_status`). Managed identity failures carry
# no status of their own, and the status tells an outage (5xx, 429) from a refusal (4xx).
_observed = threading.local()


def _record_status(response: Any) -> None:
    http_response = getattr(response, "http_response", None)
    _observed.status = getattr(http_response, "status_code", None)


def reset_status() -> None:
    """Forget the status this thread observed (call before a token request or a Key Vault read)."""
    _observed.status = None


def last_status() -> int | None:
    """The HTTP status of the last response this thread's credential or Key Vault client got."""
    status: int | None = getattr(_observed, "status", None)
    return status


def classify(exc: BaseException, status: int | None, what: str) -> BundleError:
    """The bundle error for an Azure SDK failure of `what` (a noun phrase, e.g. "the token request for ...").

    No answer, 408, 429 and 5xx are transient; other refusals make the identity invalid. The message
    keeps only the status and an AADSTS code, never the SDK's text (it may carry URLs or payloads).
    """
    if isinstance(exc, BundleError):
        return exc
    kind = type(exc).__name__
    subject = what[:1].upper() + what[1:]
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TransientError(f"{subject} got no answer ({kind}).")
    if status is not None and (status in (408, 429) or status >= 500):
        return TransientError(f"{subject} failed with HTTP {status}.")
    if isinstance(exc, HttpResponseError):
        code = re.search(r"\bAADSTS\d{5,7}\b", str(getattr(exc, "message", "") or ""))
        detail = ", ".join(part for part in (f"HTTP {status}" if status else "", code.group(0) if code else "") if part)
        return IdentityInvalid(f"{subject} was refused" + (f" ({detail})." if detail else "."))
    if isinstance(exc, ValueError | TypeError):
        return IdentityInvalid(f"{subject} failed: the configuration is unusable ({kind}).")
    return TransientError(f"{subject} failed ({kind}).")
