"""Credentials the sandbox accepts: PATs, its own OAuth access/refresh tokens, and the token endpoint.

No I/O. `Credentials` is a mixin of `State` (it uses `State.lock`, `State.orgs`, `State.org`).
Bearer tokens: https://learn.microsoft.com/azure/devops/integrate/get-started/authentication/authentication-guidance
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

from devhost.sandbox.errors import ApiError
from devhost.sandbox.model import Org, Token

ADO_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"


def new_token(kind: str) -> str:
    return f"sbx-{kind}-{secrets.token_urlsafe(24)}"


class Credentials:
    """PATs per org, access tokens (bound to an org, or to any org for Entra tokens), refresh tokens."""

    lock: threading.RLock
    orgs: dict[str, Org]
    tokens: dict[str, Token]
    refresh_tokens: dict[str, str]
    client_id: str | None
    client_secret: str | None
    rotate_refresh_tokens: bool
    access_token_lifetime: float

    if TYPE_CHECKING:  # provided by State and its other mixins

        def org(self, name: str) -> Org:  # implemented by State
            raise NotImplementedError

    def add_pat(self, org_name: str, pat: str | None) -> str:
        with self.lock:
            value = pat or secrets.token_urlsafe(39)
            self.org(org_name).pats.add(value)
            return value

    def issue_token(self, org_name: str, expires_in: float) -> dict[str, Any]:
        with self.lock:
            org = self.org(org_name)
            access, refresh = new_token("at"), new_token("rt")
            expires_at = time.time() + expires_in
            self.tokens[access] = Token(org=org.name.lower(), expires_at=expires_at)
            self.refresh_tokens[refresh] = org.name.lower()
            return {"access_token": access, "refresh_token": refresh, "expires_at": expires_at}

    def expire_access_token(self, token: str) -> None:
        with self.lock:
            if token in self.tokens:
                self.tokens[token].expires_at = 0.0

    def authenticate(self, org: Org, authorization: str) -> bool:
        """Bearer access token of this org (unexpired) or Basic `:PAT` of this org."""
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        with self.lock:
            if scheme.lower() == "bearer":
                token = self.tokens.get(credential)
                if token is None or token.expires_at <= time.time():
                    return False
                return token.org == org.name.lower() or (token.org == "*" and not org.pat_only)
            if scheme.lower() == "basic":
                try:
                    decoded = base64.b64decode(credential, validate=True).decode()
                except (ValueError, UnicodeDecodeError):
                    return False
                return decoded.partition(":")[2] in org.pats
        return False

    def known_credential(self, authorization: str) -> bool:
        return any(self.authenticate(org, authorization) for org in list(self.orgs.values()))

    def grant(self, form: dict[str, str]) -> dict[str, Any]:
        """`POST /oauth2/token` with `grant_type=refresh_token` (Entra form, or the legacy `assertion`)."""
        with self.lock:
            client_id = form.get("client_id", "")
            secret = form.get("client_secret") or form.get("client_assertion", "")
            if (self.client_id and client_id and client_id != self.client_id) or (
                self.client_secret and not secrets.compare_digest(secret, self.client_secret)
            ):
                raise ApiError(401, "invalid client", body={"error": "invalid_client"})
            if form.get("grant_type") != "refresh_token":
                raise ApiError(400, "unsupported grant", body={"error": "unsupported_grant_type"})
            refresh = form.get("refresh_token") or form.get("assertion", "")
            org = self.refresh_tokens.get(refresh)
            if org is None:
                raise ApiError(
                    400,
                    "invalid grant",
                    body={"error": "invalid_grant", "error_description": "The refresh token is invalid or was used."},
                )
            access = new_token("at")
            self.tokens[access] = Token(org=org, expires_at=time.time() + self.access_token_lifetime)
            if self.rotate_refresh_tokens:
                del self.refresh_tokens[refresh]
                refresh = new_token("rt")
                self.refresh_tokens[refresh] = org
            return {
                "access_token": access,
                "refresh_token": refresh,
                "expires_in": int(self.access_token_lifetime),
                "token_type": "Bearer",
                "scope": f"{ADO_RESOURCE}/.default",
            }
