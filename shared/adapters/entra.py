"""Bearer auth for Azure DevOps as a managed identity or a service principal, with a process-wide token cache.

`EntraAuth` is the `Auth` of an integration whose identity is app-only (`shared.core.identities`):
bearer tokens for the Azure DevOps resource from azure-identity credentials, built by an injectable
factory (`shared.adapters.entra_credentials.AzureCredentials` by default). Tokens live in a
process-wide `TokenCache` (one request per identity and expiry window, however many threads ask);
nothing is written to storage. Tokens never reach logs, messages or reprs.

https://learn.microsoft.com/azure/devops/integrate/get-started/authentication/service-principal-managed-identity
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from azure.core.credentials import AccessToken, AccessTokenInfo

from shared.adapters.entra_credentials import (
    APP_CLIENT_ID_SETTING,
    AzureCredentials,
    CredentialFactory,
    KeyVaultReader,
    SecretReader,
    VaultSecret,
    certificate_bytes,
    classify,
    last_status,
    reset_status,
    secret_location,
)
from shared.core.errors import BundleError, TransientError
from shared.core.identities import KINDS, EntraIdentity, EntraKind, parse_entra_identity

__all__ = [
    "ADO_SCOPE", "APP_CLIENT_ID_SETTING", "KINDS", "AzureCredentials", "CachedToken", "CredentialFactory",
    "EntraAuth", "EntraIdentity", "EntraKind", "KeyVaultReader", "SecretReader", "TokenCache", "VaultSecret",
    "certificate_bytes", "classify", "default_cache", "parse_entra_identity", "secret_location",
]

log = logging.getLogger(__name__)

Token = AccessToken | AccessTokenInfo  # what credentials answer: `.token`, `.expires_on` (unix seconds)

# The Azure DevOps application id; `/.default` asks for the permissions the identity has in ADO.
# https://learn.microsoft.com/azure/devops/integrate/get-started/authentication/entra-oauth
ADO_SCOPE = "499b84ac-1321-427f-aa17-267ca6975798/.default"

REFRESH_MARGIN = 300.0  # renew a token this many seconds before it expires
FORCED_RENEWAL_INTERVAL = 60.0  # after a 401, fetch a new token at most this often per identity
FAILED_RENEWAL_PAUSE = 30.0  # after a failed early renewal, keep the old token this long before trying again
MIN_USABLE = 30.0  # a token with less life than this is not handed out
FLIGHT_WAIT = 180.0  # longest wait for another thread's token request


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
        reset_status()
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
            status = last_status() or getattr(exc, "status_code", None)
            raise classify(exc, status, what) from None
        log.info("entra.token.acquired", extra={"identity": self.identity.describe(), "expires_on": access.expires_on})
        return access
