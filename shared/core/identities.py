"""The description of an app-only Microsoft Entra identity: a managed identity or a service principal.

Pure: validation of an install request's (or a stored) `identity` object for the kinds
`managed_identity` and `service_principal`. The description holds no secret: a service principal's
client secret or certificate stays in Key Vault and only its URI is kept. The adapters that get
tokens for it live in `shared.adapters.entra` and `shared.adapters.entra_credentials`.
https://learn.microsoft.com/azure/devops/integrate/get-started/authentication/service-principal-managed-identity
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from shared.core.errors import InvalidInput

EntraKind = Literal["managed_identity", "service_principal"]
KINDS: tuple[EntraKind, ...] = ("managed_identity", "service_principal")

_GUID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# Key Vault DNS suffixes of the public and sovereign clouds.
# https://learn.microsoft.com/azure/key-vault/general/about-keys-secrets-certificates#object-identifiers
VAULT_SUFFIXES = (".vault.azure.net", ".vault.azure.cn", ".vault.usgovcloudapi.net")
# Vault names: 3-24 letters, digits and hyphens, starting with a letter, no trailing or double hyphen.
# Object names: 1-127 letters, digits and hyphens. Versions: 32 hex digits.
# https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules#microsoftkeyvault
_VAULT_NAME = re.compile(r"^[a-z](?!.*--)[a-z0-9-]{1,22}[a-z0-9]$")
_OBJECT_PATH = re.compile(r"^/(secrets|certificates)/([0-9A-Za-z-]{1,127})(?:/([0-9a-fA-F]{32}))?/?$")
# Fields that would carry a secret: refused, so they are never stored by mistake.
_SECRET_FIELDS = ("client_secret", "secret", "certificate", "password", "access_token", "refresh_token")
_FIELDS = {
    "managed_identity": ("kind", "client_id"),
    "service_principal": ("kind", "client_id", "tenant_id", "secret_ref", "certificate_ref"),
}


@dataclass(frozen=True)
class EntraIdentity:
    """Who an integration calls Azure DevOps as; no secrets, safe to store and log.

    `client_id`: the user-assigned managed identity's or the app registration's client id (None for
    a managed identity means the function app's own identity, `AZURE_CLIENT_ID`). `tenant_id`: the
    service principal's tenant. `secret_ref` / `certificate_ref`: the Key Vault URI of its client
    secret or certificate (exactly one, service principals only).
    """

    kind: EntraKind
    client_id: str | None = None
    tenant_id: str | None = None
    secret_ref: str | None = None
    certificate_ref: str | None = None

    @property
    def cache_key(self) -> tuple[str, str, str, str]:
        """Tokens are shared by identities with the same kind, tenant, client and Key Vault reference."""
        ref = self.secret_ref or self.certificate_ref or ""
        return (self.kind, self.tenant_id or "", self.client_id or "", ref)

    def describe(self) -> str:
        """A short label for messages and logs."""
        if self.kind == "managed_identity":
            return f"managed identity {self.client_id or '(app default)'}"
        return f"service principal {self.client_id} in tenant {self.tenant_id}"

    def to_dict(self) -> dict[str, str]:
        """The fields to store (those that are set); `parse_entra_identity` reads them back."""
        values = {"kind": self.kind, "client_id": self.client_id, "tenant_id": self.tenant_id,
                  "secret_ref": self.secret_ref, "certificate_ref": self.certificate_ref}
        return {name: value for name, value in values.items() if value is not None}


def parse_entra_identity(body: Mapping[str, Any]) -> EntraIdentity:
    """Validate an install request's `identity` object (or a stored one) for an app-only identity.

    Raises:
        InvalidInput: (422) naming `identity.<field>`.
    """
    if not isinstance(body, Mapping):
        raise _invalid("identity", "must be an object")
    kind = body.get("kind")
    if kind not in KINDS:
        raise _invalid("identity.kind", f"must be one of {', '.join(KINDS)}")
    for name in _SECRET_FIELDS:
        if name in body:
            raise _invalid(f"identity.{name}", "is not accepted: keep the secret in Key Vault and pass its "
                                               "URI as identity.secret_ref or identity.certificate_ref")
    for name in body:
        if name not in _FIELDS[kind]:
            raise _invalid(f"identity.{name}", f"is not a field of a {kind} identity")
    client_id = _guid(body, "client_id", required=kind == "service_principal")
    if kind == "managed_identity":
        return EntraIdentity(kind="managed_identity", client_id=client_id)
    tenant_id = _guid(body, "tenant_id", required=True)
    secret_ref = _vault_ref(body, "secret_ref", ("secrets",))
    certificate_ref = _vault_ref(body, "certificate_ref", ("certificates", "secrets"))
    if (secret_ref is None) == (certificate_ref is None):
        raise _invalid("identity.secret_ref", "give exactly one of identity.secret_ref and identity.certificate_ref")
    return EntraIdentity(kind="service_principal", client_id=client_id, tenant_id=tenant_id,
                         secret_ref=secret_ref, certificate_ref=certificate_ref)


def _invalid(name: str, message: str) -> InvalidInput:
    return InvalidInput(f"{name}: {message}", field=name, status=422)


def _text(body: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise _invalid(f"identity.{name}", "is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"identity.{name}", "must be a non-empty string")
    return value.strip()


def _guid(body: Mapping[str, Any], name: str, *, required: bool) -> str | None:
    value = _text(body, name, required=required)
    if value is not None and not _GUID.match(value):
        raise _invalid(f"identity.{name}", "must be a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")
    return value.lower() if value is not None else None


def _vault_ref(body: Mapping[str, Any], name: str, collections: tuple[str, ...]) -> str | None:
    value = _text(body, name, required=False)
    if value is None:
        return None
    shape = f"https://<vault>.vault.azure.net/{collections[0]}/<name>[/<version>]"
    if len(value) > 512:
        raise _invalid(f"identity.{name}", f"must be a Key Vault URI like {shape}")
    parts = urlsplit(value)
    host = (parts.hostname or "").lower()
    vault, _, suffix = host.partition(".")
    matched = _OBJECT_PATH.match(parts.path)
    if (parts.scheme != "https" or parts.port is not None or parts.username or parts.password or parts.query
            or parts.fragment or not _VAULT_NAME.match(vault) or "." + suffix not in VAULT_SUFFIXES
            or not matched or matched.group(1) not in collections):
        raise _invalid(f"identity.{name}", f"must be a Key Vault URI like {shape}")
    version = f"/{matched.group(3).lower()}" if matched.group(3) else ""
    return f"https://{host}/{matched.group(1)}/{matched.group(2)}{version}"
