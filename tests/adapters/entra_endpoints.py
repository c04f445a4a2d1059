"""Local stand-ins for the endpoints app-only Entra credentials talk to, each a `http.server` in a thread.

`ManagedIdentityEndpoint` speaks the App Service managed identity protocol that azure-identity's
`ManagedIdentityCredential` uses when `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` are set:
`GET <endpoint>?resource=<resource>&api-version=2019-08-01[&client_id=<id>]` with header
`X-IDENTITY-HEADER`, answered with `{"access_token", "expires_on", "resource", "token_type"}`.
https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference

`EntraAuthority` is an HTTPS Microsoft Entra tenant (OpenID discovery document and the client
credentials grant, with a client secret or a certificate-signed assertion) and a Key Vault secrets
endpoint with its bearer challenge, for `ClientSecretCredential`, `CertificateCredential` and
`SecretClient`. Its certificate comes from a trustme CA.
https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

MI_PATH = "/msi/token"


class _Server:
    """A threading HTTP(S) server on 127.0.0.1 and a free port, answering through `handle`."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner._dispatch(self, "GET")

            def do_POST(self) -> None:
                owner._dispatch(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        if ssl_context is not None:
            self._httpd.socket = ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self.scheme = "https" if ssl_context else "http"
        self.base = f"{self.scheme}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self.lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        status, payload, headers = self.handle(method, parts.path, query, dict(handler.headers.items()), body)
        data = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: str) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError


class ManagedIdentityEndpoint(_Server):
    """The App Service managed identity endpoint (plain HTTP on loopback, as on App Service).

    `lifetime`: seconds until `expires_on` of each new token. `delay`: seconds before answering (so
    concurrent callers overlap). `fail_status`: answer every request with this status instead.
    `client_ids`: the user-assigned identities attached (others get the 400 App Service answers).
    `requests` records each request's query.
    """

    def __init__(self, identity_header: str, *, client_ids: tuple[str, ...] = (), lifetime: float = 3600.0,
                 delay: float = 0.0) -> None:
        super().__init__()
        self.identity_header = identity_header
        self.client_ids = client_ids
        self.lifetime = lifetime
        self.delay = delay
        self.fail_status: int | None = None
        self.requests: list[dict[str, str]] = []
        self.tokens: list[str] = []

    @property
    def url(self) -> str:
        return self.base + MI_PATH

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: str) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.requests.append(query)
        time.sleep(self.delay)
        if method != "GET" or path != MI_PATH:
            return 404, {"statusCode": 404, "message": "Not found"}, {}
        if headers.get("X-IDENTITY-HEADER") != self.identity_header:
            return 401, {"statusCode": 401, "message": "Unauthorized"}, {}
        if self.fail_status is not None:
            return self.fail_status, {"statusCode": self.fail_status, "message": "Token service failed"}, {}
        if query.get("api-version") != "2019-08-01" or not query.get("resource"):
            return 400, {"statusCode": 400, "message": "Bad request"}, {}
        client_id = query.get("client_id")
        if client_id is not None and client_id not in self.client_ids:
            return 400, {"statusCode": 400, "message": "Unable to load the proper Managed Identity."}, {}
        with self.lock:
            token = f"mi-token-{len(self.tokens) + 1}-{(client_id or 'system')[:8]}"
            self.tokens.append(token)
        return 200, {
            "access_token": token,
            "expires_on": str(int(time.time() + self.lifetime)),
            "resource": query["resource"],
            "token_type": "Bearer",
            "client_id": client_id or "system",
        }, {}

    def requests_for(self, resource: str) -> list[dict[str, str]]:
        with self.lock:
            return [query for query in self.requests if query.get("resource") == resource]


@dataclass
class _App:
    secret: str | None = None
    certificate: x509.Certificate | None = None


class EntraAuthority(_Server):
    """An HTTPS Entra tenant and Key Vault: `authority` for the credentials, `vault_url` for SecretClient.

    `register(tenant, client, secret=... | certificate=...)` adds an app registration. The vault holds
    `secrets[name] = (value, content_type)` and accepts bearer tokens that `accept_vault_token` approves.
    """

    def __init__(self, ssl_context: ssl.SSLContext, *, accept_vault_token: Callable[[str], bool]) -> None:
        super().__init__(ssl_context)
        self.accept_vault_token = accept_vault_token
        self.apps: dict[tuple[str, str], _App] = {}
        self.secrets: dict[str, tuple[str, str | None]] = {}
        self.token_requests: list[dict[str, str]] = []
        self.vault_requests: list[str] = []
        self.fail_status: int | None = None
        self.issued = 0

    @property
    def authority(self) -> str:
        return self.base

    @property
    def vault_url(self) -> str:
        return self.base

    def register(self, tenant: str, client: str, *, secret: str | None = None,
                 certificate: x509.Certificate | None = None) -> None:
        self.apps[(tenant, client)] = _App(secret=secret, certificate=certificate)

    def handle(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
               body: str) -> tuple[int, Any, dict[str, str]]:
        segments = [segment for segment in path.split("/") if segment]
        if segments and segments[0] == "secrets":
            return self._secret(segments, headers)
        if len(segments) == 4 and segments[1:] == ["v2.0", ".well-known", "openid-configuration"]:
            tenant = segments[0]
            return 200, {
                "issuer": f"{self.base}/{tenant}/v2.0",
                "authorization_endpoint": f"{self.base}/{tenant}/oauth2/v2.0/authorize",
                "token_endpoint": f"{self.base}/{tenant}/oauth2/v2.0/token",
                "jwks_uri": f"{self.base}/{tenant}/discovery/v2.0/keys",
                "response_types_supported": ["code"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }, {}
        if method == "POST" and len(segments) == 4 and segments[1:] == ["oauth2", "v2.0", "token"]:
            form = {name: values[-1] for name, values in parse_qs(body).items()}
            with self.lock:
                self.token_requests.append(form)
            return self._token(segments[0], form)
        return 404, {"error": "not_found"}, {}

    def _token(self, tenant: str, form: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if self.fail_status is not None:
            return self.fail_status, {"error": "temporarily_unavailable",
                                      "error_description": "AADSTS90033: A transient error has occurred."}, {}
        app = self.apps.get((tenant, form.get("client_id", "")))
        if form.get("grant_type") != "client_credentials" or app is None:
            return 400, {"error": "unauthorized_client",
                         "error_description": "AADSTS700016: Application not found in the directory."}, {}
        if app.secret is not None:
            ok = form.get("client_secret") == app.secret
        else:
            assert app.certificate is not None
            ok = _assertion_valid(form.get("client_assertion", ""), app.certificate)
        if not ok:
            return 401, {"error": "invalid_client",
                         "error_description": "AADSTS7000215: Invalid client secret provided."}, {}
        with self.lock:
            self.issued += 1
            token = f"sp-token-{self.issued}"
        return 200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}, {}

    def _secret(self, segments: list[str], headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        authorization = headers.get("Authorization", "")
        with self.lock:
            self.vault_requests.append("/".join(segments))
        if not authorization.startswith("Bearer ") or not self.accept_vault_token(authorization[7:]):
            challenge = (f'Bearer authorization="{self.base}/00000000-0000-0000-0000-000000000000", '
                         'resource="https://vault.azure.net"')
            return 401, {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer"}}, {
                "WWW-Authenticate": challenge}
        name = segments[1] if len(segments) > 1 else ""
        if name not in self.secrets:
            missing = {"code": "SecretNotFound", "message": f"A secret with (name/id) {name} was not found"}
            return 404, {"error": missing}, {}
        value, content_type = self.secrets[name]
        version = segments[2] if len(segments) > 2 else "0" * 32
        return 200, {"value": value, "contentType": content_type,
                     "id": f"{self.base}/secrets/{name}/{version}",
                     "attributes": {"enabled": True, "created": 1_700_000_000, "updated": 1_700_000_000}}, {}


def _assertion_valid(assertion: str, certificate: x509.Certificate) -> bool:
    """A client assertion JWT signed (RS256 or PS256) by the certificate's key."""
    try:
        header_b64, claims_b64, signature_b64 = assertion.split(".")
        header = json.loads(_b64url(header_b64))
        signature = _b64url(signature_b64)
        key = certificate.public_key()
        assert isinstance(key, rsa.RSAPublicKey)
        signed = f"{header_b64}.{claims_b64}".encode()
        if header.get("alg") == "PS256":
            key.verify(signature, signed, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                      salt_length=padding.PSS.DIGEST_LENGTH), hashes.SHA256())
        else:
            key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
        return True
    except Exception:  # any malformed or badly signed assertion is refused
        return False


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
