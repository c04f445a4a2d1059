"""Credentials for Azure DevOps calls: personal access tokens and refreshing OAuth tokens.

`auth_for` picks the right `Auth` for an integration's stored identity. `OAuthAuth` refreshes a
token shortly before it expires and saves the new token set with the identity's ETag, so two
workers refreshing at once end with one stored token set. Does network I/O (the token URL) and
storage I/O through the injected `IdentityRepo`. Tokens never reach logs, messages or reprs.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import requests

from shared import config
from shared.adapters.ado_http import TIMEOUT, Auth, decode_response, transport_error
from shared.config import Settings
from shared.core.errors import AdoServerError, IdentityInvalid
from shared.core.models import Identity

log = logging.getLogger(__name__)

SAVE_ATTEMPTS = 3
# After a refused refresh, how long (seconds, cumulative waits) to look for the token set of a
# concurrent worker that used the same refresh token first and has not stored its result yet.
REFUSAL_GRACE = (0.05, 0.1, 0.2, 0.4)


class IdentityRepo(Protocol):
    """Where identities live, with optimistic concurrency by ETag."""

    def load_identity(self, account_id: str) -> tuple[Identity, str] | None: ...

    def save_identity(self, account_id: str, identity: Identity, etag: str) -> bool:
        """Store `identity` if the stored ETag is still `etag`; False when another writer won."""
        ...


def header_value(identity: Identity) -> str:
    """The Authorization header for an identity (Basic for a PAT, Bearer for OAuth)."""
    if identity.kind == "pat":
        return "Basic " + base64.b64encode(f":{identity.access_token}".encode()).decode("ascii")
    return f"Bearer {identity.access_token}"


class PatAuth:
    """Basic auth with a personal access token. On a 401 the stored token is read again (`reload`),
    so a token replaced by a re-install is picked up by a long-lived client."""

    def __init__(self, pat: str, reload: Callable[[], str | None] | None = None) -> None:
        self._header = header_value(Identity(kind="pat", access_token=pat))
        self._reload = reload

    def __repr__(self) -> str:
        return "PatAuth(<redacted>)"

    def header(self) -> str:
        return self._header

    def on_unauthorized(self) -> bool:
        fresh = self._reload() if self._reload else None
        if not fresh:
            return False
        header = header_value(Identity(kind="pat", access_token=fresh))
        changed, self._header = header != self._header, header
        return changed


class OAuthAuth:
    """Bearer auth for one account's OAuth identity, refreshed `margin` seconds before expiry."""

    def __init__(
        self,
        account_id: str,
        repo: IdentityRepo,
        *,
        settings: Settings | None = None,
        session: requests.Session | None = None,
        margin: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account_id = account_id
        self._repo = repo
        self._settings = settings
        self._session = session
        self._margin = margin
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[Identity, str | None] | None = None  # etag None: reload before writing

    def __repr__(self) -> str:
        return f"OAuthAuth(account_id={self.account_id!r})"

    def header(self) -> str:
        with self._lock:
            if self._cached is None:
                self._cached = self._load()
            identity = self._cached[0]
            _check_valid(identity, self.account_id)
            if self._expiring(identity):
                # Another worker may have refreshed already: look before refreshing.
                identity, etag = self._cached = self._load()
                _check_valid(identity, self.account_id)
                if self._expiring(identity):
                    identity = self._refresh(identity, etag)
            return header_value(identity)

    def on_unauthorized(self) -> bool:
        with self._lock:
            used = self._cached[0] if self._cached else None
            identity, etag = self._cached = self._load()
            _check_valid(identity, self.account_id)
            changed = used is not None and identity.access_token != used.access_token
            if changed and not self._expiring(identity):
                return True  # another worker refreshed meanwhile
            if identity.kind != "oauth" or not identity.refresh_token:
                return False
            return self._refresh(identity, etag).access_token != identity.access_token

    # -- internals --------------------------------------------------------------------------

    def _expiring(self, identity: Identity) -> bool:
        return identity.expires_within(self._margin, now=self._clock())

    def _load(self) -> tuple[Identity, str | None]:
        loaded = self._repo.load_identity(self.account_id)
        if loaded is None:
            raise IdentityInvalid(f"No identity is stored for Azure DevOps account {self.account_id}.")
        return loaded

    def _refresh(self, identity: Identity, etag: str | None) -> Identity:
        """Exchange the refresh token, store the new token set, and return the identity to use."""
        if not identity.refresh_token:
            return self._refused(identity, etag, "The identity has no refresh token; reconnect it.")
        answer = self._post_refresh(identity.refresh_token)
        if isinstance(answer, str):
            rotated = self._rotated_meanwhile(identity)
            if rotated is not None:
                return rotated
            return self._refused(identity, etag, answer)
        expires_in = answer.get("expires_in")
        fresh = Identity(
            kind="oauth",
            access_token=str(answer["access_token"]),
            refresh_token=str(answer.get("refresh_token") or identity.refresh_token),
            expires_at=self._clock() + float(expires_in) if expires_in is not None else None,
        )
        for _ in range(SAVE_ATTEMPTS):
            if etag is not None and self._repo.save_identity(self.account_id, fresh, etag):
                log.info("ado.auth.refreshed", extra={"account_id": self.account_id})
                self._cached = (fresh, None)
                return fresh
            stored, etag = self._cached = self._load()
            if stored.status == "valid" and not self._expiring(stored):
                # A concurrent refresh won; its token set is the one kept.
                log.info("ado.auth.refresh_lost_race", extra={"account_id": self.account_id})
                return stored
        log.warning("ado.auth.refresh_not_saved", extra={"account_id": self.account_id})
        self._cached = (fresh, None)
        return fresh

    def _post_refresh(self, refresh_token: str) -> dict[str, Any] | str:
        """The token endpoint's JSON answer, or the problem text when it refused the refresh."""
        settings = self._settings or config.settings()
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": settings.require("ado_client_id", "ADO_CLIENT_ID"),
            "client_secret": settings.require("ado_client_secret", "ADO_CLIENT_SECRET"),
        }
        if self._session is None:
            self._session = requests.Session()
        try:
            resp = self._session.post(
                settings.ado_token_url, data=form, headers={"Accept": "application/json"}, timeout=TIMEOUT
            )
        except requests.RequestException as exc:
            raise transport_error(exc, "POST token URL") from None
        if resp.status_code in (400, 401):
            code = _error_code(resp)
            why = f"HTTP {resp.status_code}, {code}" if code else f"HTTP {resp.status_code}"
            return f"Token refresh was refused ({why}); reconnect the integration."
        body = decode_response(resp)
        if not isinstance(body, dict) or not body.get("access_token"):
            raise AdoServerError("The token endpoint answered without an access_token", http_status=resp.status_code)
        return body

    def _rotated_meanwhile(self, identity: Identity) -> Identity | None:
        """The good token set a concurrent worker stored after using our refresh token, if it shows up.

        With refresh-token rotation the loser of a refresh race is refused before the winner has
        stored the new set; marking the identity invalid then would fail every other worker.
        """
        for delay in REFUSAL_GRACE:
            time.sleep(delay)
            stored, etag = self._load()
            if stored.refresh_token != identity.refresh_token:
                if stored.status == "valid" and not self._expiring(stored):
                    log.info("ado.auth.refresh_lost_race", extra={"account_id": self.account_id})
                    self._cached = (stored, etag)
                    return stored
                return None
        return None

    def _refused(self, identity: Identity, etag: str | None, problem: str) -> Identity:
        """Mark the identity invalid, unless a concurrent refresh stored a good one meanwhile."""
        invalid = dataclasses.replace(identity, status="invalid", problem=problem)
        for _ in range(SAVE_ATTEMPTS):
            if etag is not None and self._repo.save_identity(self.account_id, invalid, etag):
                log.warning("ado.auth.identity_invalid", extra={"account_id": self.account_id})
                self._cached = (invalid, None)
                raise IdentityInvalid(f"Azure DevOps account {self.account_id}: {problem}")
            stored, etag = self._cached = self._load()
            if stored.status == "valid" and not self._expiring(stored):
                return stored  # another worker refreshed with the rotated refresh token
            if stored.status == "invalid":
                break
        raise IdentityInvalid(f"Azure DevOps account {self.account_id}: {problem}")


def _check_valid(identity: Identity, account_id: str) -> None:
    if identity.status == "invalid":
        why = identity.problem or "its token refresh was refused"
        raise IdentityInvalid(f"The identity of Azure DevOps account {account_id} is invalid: {why}")


def _error_code(resp: requests.Response) -> str:
    """The OAuth `error` code (e.g. invalid_grant) of a refused refresh; never the description."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) and code.replace("_", "").isalnum() else ""


def auth_for(
    account_id: str,
    repo: IdentityRepo,
    *,
    settings: Settings | None = None,
    session: requests.Session | None = None,
) -> Auth:
    """The `Auth` for the identity stored for `account_id`.

    Raises:
        IdentityInvalid: no identity is stored.
    """
    loaded = repo.load_identity(account_id)
    if loaded is None:
        raise IdentityInvalid(f"No identity is stored for Azure DevOps account {account_id}.")
    identity = loaded[0]
    if identity.kind == "pat":

        def reload() -> str | None:
            current = repo.load_identity(account_id)
            return current[0].access_token if current and current[0].kind == "pat" else None

        return PatAuth(identity.access_token, reload)
    auth = OAuthAuth(account_id, repo, settings=settings, session=session)
    auth._cached = loaded
    return auth
