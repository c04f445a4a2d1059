"""A local Microsoft Entra ID for the sandbox: managed identity and client-credentials token endpoints.

No I/O. Implements what `azure.identity` calls:
- the App Service managed identity protocol (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, api-version
  2019-08-01): https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference
- the v2.0 client-credentials grant and the OIDC discovery document MSAL reads first:
  https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
Tokens for the Azure DevOps resource (`499b84ac-...`) are accepted as bearer tokens by every Azure
DevOps Services organization of the sandbox (not by Server collections); every token request is
counted in `requests`.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from devhost.sandbox.credentials import ADO_RESOURCE, new_token
from devhost.sandbox.errors import ApiError
from devhost.sandbox.model import Token

MI_API_VERSION = "2019-08-01"
ANY_ORG = "*"


@dataclass
class Entra:
    """The sandbox tenant(s): the managed identity's header secret and the registered service principals."""

    identity_header: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    managed_identity_client_id: str = "00000000-0000-4000-8000-00000000c0de"
    principals: dict[tuple[str, str], str] = field(default_factory=dict)  # (tenant, client id) -> secret
    token_lifetime: float = 3600.0
    requests: list[dict[str, Any]] = field(default_factory=list)


def _resource_of(scope: str) -> str:
    return scope.removesuffix("/.default").rstrip("/")


def _token(tokens: dict[str, Token], resource: str, lifetime: float) -> tuple[str, float]:
    access = new_token("entra")
    expires_at = time.time() + lifetime
    # a token for another resource is issued, but no organization accepts it
    tokens[access] = Token(org=ANY_ORG if resource == ADO_RESOURCE else "", expires_at=expires_at)
    return access, expires_at


def managed_identity(
    entra: Entra, tokens: dict[str, Token], query: dict[str, str], header: str
) -> dict[str, Any]:
    """`GET {IDENTITY_ENDPOINT}?resource=&api-version=2019-08-01[&client_id=]` with `X-IDENTITY-HEADER`."""
    if not header or not secrets.compare_digest(header, entra.identity_header):
        raise ApiError(401, "unauthorized", body={"statusCode": 401, "message": "X-IDENTITY-HEADER is invalid."})
    if query.get("api-version") != MI_API_VERSION:
        raise ApiError(400, "bad version", body={"statusCode": 400, "message": "Invalid api-version."})
    resource = _resource_of(query.get("resource", ""))
    if not resource:
        raise ApiError(400, "no resource", body={"statusCode": 400, "message": "The resource is required."})
    client_id = query.get("client_id") or entra.managed_identity_client_id
    if client_id != entra.managed_identity_client_id:
        message = f"No managed identity with client id {client_id} is assigned to this app."
        raise ApiError(400, "unknown identity", body={"statusCode": 400, "message": message})
    entra.requests.append({"kind": "managed_identity", "resource": resource, "client_id": client_id})
    access, expires_at = _token(tokens, resource, entra.token_lifetime)
    return {
        "access_token": access,
        "expires_on": str(int(expires_at)),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": client_id,
    }


def openid_configuration(base_url: str, tenant: str) -> dict[str, Any]:
    """`GET /{tenant}/v2.0/.well-known/openid-configuration` (what MSAL's tenant discovery reads)."""
    root = f"{base_url}{tenant}"
    return {
        "token_endpoint": f"{root}/oauth2/v2.0/token",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
        "issuer": f"{root}/v2.0",
        "jwks_uri": f"{root}/discovery/v2.0/keys",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "tenant_region_scope": None,
    }


def client_credentials(entra: Entra, tokens: dict[str, Token], tenant: str, form: dict[str, str]) -> dict[str, Any]:
    """`POST /{tenant}/oauth2/v2.0/token` with `grant_type=client_credentials` and a client secret."""
    if form.get("grant_type") != "client_credentials":
        raise _oauth(400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type.")
    client_id = form.get("client_id", "")
    if not any(t == tenant for t, _ in entra.principals):
        raise _oauth(400, "invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.")
    secret = entra.principals.get((tenant, client_id))
    if secret is None:
        raise _oauth(400, "unauthorized_client", f"AADSTS700016: Application with identifier '{client_id}' "
                     "was not found in the directory.")
    if not secrets.compare_digest(form.get("client_secret", ""), secret):
        raise _oauth(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
    scope = form.get("scope", "").split()
    if len(scope) != 1 or not scope[0].endswith("/.default"):
        raise _oauth(400, "invalid_scope", "AADSTS1002012: The provided value for scope is not valid. "
                     "Client credential flows must have a scope value with /.default suffixed to the resource.")
    resource = _resource_of(scope[0])
    entra.requests.append({"kind": "client_credentials", "tenant": tenant, "client_id": client_id, "scope": scope[0]})
    access, _ = _token(tokens, resource, entra.token_lifetime)
    lifetime = int(entra.token_lifetime)
    return {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": access}


def _oauth(status: int, error: str, description: str) -> ApiError:
    return ApiError(status, error, body={"error": error, "error_description": description, "error_codes": []})
