"""App-only Microsoft Entra credentials for Azure DevOps: managed identities and service principals.

`parse_entra_identity` validates an install request's `identity` object (pure). `EntraAuth` is the
`Auth` of an integration that calls Azure DevOps as a managed identity or a service principal: bearer
tokens for the Azure DevOps resource, from azure-identity credentials built by an injectable
factory. A service principal's client secret or certificate stays in Key Vault; only its reference
is stored, and it is read with the function app's own managed identity when a token is needed.

Tokens live in a process-wide `TokenCache` (one request per identity and expiry window, however many
threads ask); nothing is written to storage. Network I/O: the managed identity endpoint, Microsoft
Entra ID and Key Vault. Tokens and secrets never reach logs, messages or reprs.

https://learn.microsoft.com/azure/devops/integrate/get-started/authentication/service-principal-managed-identity
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from azure.core.credentials import AccessToken, AccessTokenInfo, TokenCredential
from azure.core.exceptions import (
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.core.errors import BundleError, IdentityInvalid, InvalidInput, TransientError

log = logging.getLogger(__name__)

EntraKind = Literal["managed_identity", "service_principal"]
Token = AccessToken | AccessTokenInfo  # what credentials answer: `.token`, `.expires_on` (unix seconds)
KINDS: tuple[EntraKind, ...] = ("managed_identity", "service_principal")

# The Azure DevOps application id; `/.default` asks for the permissions the identity has in ADO.
# https://learn.microsoft.com/azure/devops/integrate/get-started/authentication/entra-oauth
ADO_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"
# Setting with the client id of the function app's user-assigned identity (set by infra/main.bicep).
APP_CLIENT_ID_SETTING = "AZURE_CLIENT_ID"

REFRESH_MARGIN = 300.0  # renew a token this many seconds before it expires
FORCED_RENEWAL_INTERVAL = 60.0  # after a 401, fetch a new token at most this often per identity
FAILED_RENEWAL_PAUSE = 30.0  # after a failed early renewal, keep the old token this long before trying again
MIN_USABLE = 30.0  # a token with less life than this is not handed out
FLIGHT_WAIT = 180.0  # longest wait for another thread's token request

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


# --- the stored description (pure) ---------------------------------------------------------------


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
        _observed.status = None
        try:
            secret = self._client(vault_url).get_secret(name, version)
        except ResourceNotFoundError:
            raise IdentityInvalid(f"The {where} does not exist.") from None
        except Exception as exc:  # every Azure SDK failure is classified below
            status = getattr(exc, "status_code", None) or getattr(_observed, "status", None)
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


# --- the token cache -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedToken:
    """An access token with its expiry (`expires_on`, unix seconds) and when to renew it."""

    token: str = field(repr=False)
    expires_on: float
    renew_after: float


class _Flight:
    """One token request that other threads wait for instead of sending their own."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.token: CachedToken | None = None
        self.error: BaseException | None = None


class TokenCache:
    """Process-wide access tokens by identity, renewed `margin` seconds before they expire.

    Single flight: while one thread requests a token for an identity, the others wait for its
    result, so any number of concurrent callers cause one request per expiry window. A failed
    request stores nothing (the next caller tries again), except that a token still valid for a
    while keeps being served for `failed_pause` seconds when its early renewal fails.
    """

    def __init__(self, *, margin: float = REFRESH_MARGIN, forced_interval: float = FORCED_RENEWAL_INTERVAL,
                 failed_pause: float = FAILED_RENEWAL_PAUSE, clock: Callable[[], float] = time.time) -> None:
        self.margin = margin
        self._forced_interval = forced_interval
        self._failed_pause = failed_pause
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[Hashable, CachedToken] = {}
        self._flights: dict[Hashable, _Flight] = {}
        self._forced: dict[Hashable, float] = {}

    def get(self, key: Hashable, fetch: Callable[[], Token]) -> CachedToken:
        """The cached token for `key`, or a new one from `fetch` when none is fresh."""
        token = self._obtain(key, fetch, rejected=None)
        assert token is not None
        return token

    def renew(self, key: Hashable, fetch: Callable[[], Token], rejected: str) -> CachedToken | None:
        """After Azure DevOps refused `rejected`: a token to retry with, or None.

        Another caller's newer token is reused; otherwise the cached token is dropped and a new one
        fetched, at most once per `forced_interval` for the key (None in between).
        """
        return self._obtain(key, fetch, rejected=rejected)

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._forced.clear()

    def _obtain(self, key: Hashable, fetch: Callable[[], Token], *, rejected: str | None) -> CachedToken | None:
        with self._lock:
            now = self._clock()
            cached = self._tokens.get(key)
            if cached is not None and cached.token != rejected and now < cached.renew_after:
                return cached
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                if rejected is not None and cached is not None and cached.token == rejected:
                    if now - self._forced.get(key, float("-inf")) < self._forced_interval:
                        return None
                    self._forced[key] = now
                    del self._tokens[key]
                    cached = None
                flight = self._flights[key] = _Flight()
        if not leader:
            return self._wait(flight)
        try:
            token = self._fetch(key, fetch, cached)
        except BaseException as exc:
            with self._lock:
                del self._flights[key]
            flight.error = exc
            flight.done.set()
            raise
        with self._lock:
            self._tokens[key] = token
            del self._flights[key]
        flight.token = token
        flight.done.set()
        return token

    def _fetch(self, key: Hashable, fetch: Callable[[], Token], cached: CachedToken | None) -> CachedToken:
        try:
            access = fetch()
        except BundleError:
            now = self._clock()
            if cached is None or cached.expires_on - now <= self._failed_pause + MIN_USABLE:
                raise
            # Early renewal failed but the token still works: keep it and try again later.
            log.warning("entra.token.renewal_failed", extra={"expires_in": int(cached.expires_on - now)})
            return CachedToken(cached.token, cached.expires_on, now + self._failed_pause)
        now = self._clock()
        expires_on = float(access.expires_on)
        if expires_on - now < MIN_USABLE:
            raise TransientError("The token endpoint answered with a token that has already expired.")
        # Renew `margin` before expiry, or half-way through a token shorter than twice the margin,
        # or at the issuer's refresh hint (Entra ID sends one for long-lived tokens).
        renew_after = expires_on - min(self.margin, (expires_on - now) / 2)
        refresh_on = getattr(access, "refresh_on", None)
        if refresh_on:
            renew_after = min(renew_after, max(float(refresh_on), now + MIN_USABLE))
        return CachedToken(access.token, expires_on, renew_after)

    def _wait(self, flight: _Flight) -> CachedToken:
        if not flight.done.wait(FLIGHT_WAIT):
            raise TransientError("A token request for this identity is still running.")
        if isinstance(flight.error, Exception):
            raise flight.error
        if flight.error is not None:
            raise TransientError("The token request for this identity was interrupted.")
        assert flight.token is not None
        return flight.token


_default_cache = TokenCache()


def default_cache() -> TokenCache:
    """The process-wide cache every `EntraAuth` uses unless given another."""
    return _default_cache


# --- the Auth --------------------------------------------------------------------------------------


class EntraAuth:
    """Bearer auth for Azure DevOps as a managed identity or service principal (the `Auth` protocol)."""

    def __init__(self, identity: EntraIdentity, *, credentials: CredentialFactory | None = None,
                 cache: TokenCache | None = None) -> None:
        self.identity = identity
        self._credentials = credentials or AzureCredentials()
        self._cache = cache or _default_cache
        self._used = threading.local()  # the token this thread last sent

    def __repr__(self) -> str:
        return f"EntraAuth({self.identity.describe()})"

    def header(self) -> str:
        """`Bearer <token>`, from the cache or a new token request.

        Raises:
            IdentityInvalid: the identity cannot get a token (refused, missing, misconfigured).
            TransientError: the token endpoint or Key Vault did not answer or failed.
        """
        token = self._cache.get(self.identity.cache_key, self._fetch)
        self._used.token = token.token
        return f"Bearer {token.token}"

    def on_unauthorized(self) -> bool:
        """Drop the refused token; True when a different token is ready for one retry."""
        used: str | None = getattr(self._used, "token", None)
        if used is None:
            return False
        token = self._cache.renew(self.identity.cache_key, self._fetch, used)
        if token is None or token.token == used:
            return False
        log.info("entra.token.renewed_after_401", extra={"identity": self.identity.describe()})
        return True

    def _fetch(self) -> Token:
        what = f"the token request for {self.identity.describe()}"
        _observed.status = None
        try:
            credential = self._credentials(self.identity)
            try:
                info = getattr(credential, "get_token_info", None)
                access = info(ADO_SCOPE) if info else credential.get_token(ADO_SCOPE)
            finally:
                close = getattr(credential, "close", None)
                if close:
                    close()
        except Exception as exc:  # classified into the bundle's errors
            status = getattr(_observed, "status", None) or getattr(exc, "status_code", None)
            raise classify(exc, status, what) from None
        log.info("entra.token.acquired", extra={"identity": self.identity.describe(), "expires_on": access.expires_on})
        return access
