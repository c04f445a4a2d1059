"""Managed identity and service principal auth: real azure-identity credentials against local endpoints.

The managed identity tests run `ManagedIdentityCredential` against a local App Service token endpoint
(`IDENTITY_ENDPOINT`/`IDENTITY_HEADER`); the service principal tests run `ClientSecretCredential`,
`CertificateCredential` and `SecretClient` against a local HTTPS Entra tenant and Key Vault.
"""

from __future__ import annotations

import base64
import datetime
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import trustme
from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID
from entra_endpoints import EntraAuthority, ManagedIdentityEndpoint

from shared.adapters.entra import (
    ADO_SCOPE,
    AzureCredentials,
    CachedToken,
    EntraAuth,
    EntraIdentity,
    KeyVaultReader,
    TokenCache,
    parse_entra_identity,
)
from shared.core.errors import IdentityInvalid, InvalidInput, TransientError

ADO_RESOURCE = "499b84ac-1321-427f-aa17-267ca6975798"
VAULT_RESOURCE = "https://vault.azure.net"
IDENTITY_HEADER = "identity-header-S3CRET"
MI_CLIENT = "11111111-2222-3333-4444-555555555555"
APP_CLIENT = "99999999-8888-7777-6666-555555555555"
TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
SP_CLIENT = "22222222-3333-4444-5555-666666666666"
SP_SECRET = "sp-client-S3CRET"


class Clock:
    """Real time plus an adjustable offset (token expiry times come from the real clock)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(clock: Clock) -> TokenCache:
    return TokenCache(clock=clock)


@pytest.fixture
def mi(monkeypatch: pytest.MonkeyPatch) -> Iterator[ManagedIdentityEndpoint]:
    """The local App Service token endpoint, with the environment pointing ManagedIdentityCredential at it."""
    endpoint = ManagedIdentityEndpoint(IDENTITY_HEADER, client_ids=(MI_CLIENT, APP_CLIENT))
    endpoint.start()
    for name in ("IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET", "AZURE_CLIENT_ID",
                 "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint.url)
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield endpoint
    endpoint.stop()


def mi_auth(cache: TokenCache, client_id: str | None = MI_CLIENT) -> EntraAuth:
    # retry_total=0: azure-core would otherwise retry a failing endpoint with back-off for seconds.
    return EntraAuth(EntraIdentity("managed_identity", client_id=client_id),
                     credentials=AzureCredentials(retry_total=0), cache=cache)


# --- managed identity ----------------------------------------------------------------------------


def test_header_is_a_bearer_token_for_azure_devops(mi: ManagedIdentityEndpoint, cache: TokenCache) -> None:
    assert mi_auth(cache).header() == f"Bearer {mi.tokens[0]}"
    assert mi.requests == [{"api-version": "2019-08-01", "resource": ADO_RESOURCE, "client_id": MI_CLIENT}]


def test_without_client_id_the_apps_own_identity_is_used(mi: ManagedIdentityEndpoint, cache: TokenCache,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", APP_CLIENT)
    mi_auth(cache, client_id=None).header()
    assert mi.requests[0]["client_id"] == APP_CLIENT


def test_twenty_threads_at_once_cause_one_token_request(mi: ManagedIdentityEndpoint, cache: TokenCache) -> None:
    mi.delay = 0.3  # the first request is still running when the others ask
    start = threading.Barrier(20)

    def ask(_: int) -> str:
        auth = mi_auth(cache)  # one Auth per invocation; the cache is shared by the process
        start.wait()
        return auth.header()

    with ThreadPoolExecutor(20) as pool:
        headers = list(pool.map(ask, range(20)))
    assert set(headers) == {f"Bearer {mi.tokens[0]}"}
    assert len(mi.requests) == 1


def test_identities_do_not_share_tokens(mi: ManagedIdentityEndpoint, cache: TokenCache) -> None:
    first, second = mi_auth(cache, MI_CLIENT).header(), mi_auth(cache, APP_CLIENT).header()
    assert first != second
    assert [query["client_id"] for query in mi.requests] == [MI_CLIENT, APP_CLIENT]


def test_token_is_reused_until_five_minutes_before_expiry(mi: ManagedIdentityEndpoint, cache: TokenCache,
                                                          clock: Clock) -> None:
    auth = mi_auth(cache)
    first = auth.header()
    expires_on = time.time() + mi.lifetime
    clock.offset = expires_on - 301 - time.time()
    assert auth.header() == first
    assert len(mi.requests) == 1
    clock.offset = expires_on - 299 - time.time()
    renewed = auth.header()
    assert renewed == f"Bearer {mi.tokens[1]}" != first
    assert len(mi.requests) == 2
    assert auth.header() == renewed
    assert len(mi.requests) == 2


def test_short_lived_token_is_renewed_half_way(mi: ManagedIdentityEndpoint, cache: TokenCache, clock: Clock) -> None:
    mi.lifetime = 200  # shorter than twice the 300 s margin
    auth = mi_auth(cache)
    first = auth.header()
    clock.offset = 90
    assert auth.header() == first
    clock.offset = 110
    assert auth.header() != first
    assert len(mi.requests) == 2


def test_on_unauthorized_fetches_a_new_token_once(mi: ManagedIdentityEndpoint, cache: TokenCache,
                                                  clock: Clock) -> None:
    auth = mi_auth(cache)
    first = auth.header()
    assert auth.on_unauthorized() is True
    second = auth.header()
    assert second == f"Bearer {mi.tokens[1]}" != first
    # ADO refuses the new token too: no second request within the minute, so no retry.
    assert auth.on_unauthorized() is False
    assert auth.header() == second
    assert len(mi.requests) == 2
    clock.offset = 61
    assert auth.on_unauthorized() is True
    assert len(mi.requests) == 3


def test_concurrent_401s_share_one_renewal(mi: ManagedIdentityEndpoint, cache: TokenCache) -> None:
    mi.delay = 0.2
    first = mi_auth(cache).header()
    start = threading.Barrier(10)

    def refused(_: int) -> tuple[str, bool, str]:
        auth = mi_auth(cache)
        sent = auth.header()  # ADO answers 401 to it
        start.wait()
        return sent, auth.on_unauthorized(), auth.header()

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(refused, range(10)))
    assert results == [(first, True, f"Bearer {mi.tokens[1]}")] * 10
    assert len(mi.requests) == 2


def test_same_token_again_after_401_is_no_reason_to_retry(cache: TokenCache) -> None:
    """A token service that answers with its cached token: on_unauthorized says False."""
    calls = []

    class Fixed:
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            calls.append(scopes)
            return AccessToken("same-token", int(time.time()) + 3600)

    auth = EntraAuth(EntraIdentity("managed_identity"), credentials=lambda identity: Fixed(), cache=cache)
    auth.header()
    assert auth.on_unauthorized() is False
    assert len(calls) == 2


@pytest.mark.parametrize("status", [500, 503, 429])
def test_token_endpoint_failure_is_transient_and_not_cached(mi: ManagedIdentityEndpoint, cache: TokenCache,
                                                            status: int) -> None:
    mi.fail_status = status
    auth = mi_auth(cache)
    with pytest.raises(TransientError) as caught:
        auth.header()
    assert f"HTTP {status}" in caught.value.message
    mi.fail_status = None
    assert auth.header() == f"Bearer {mi.tokens[0]}"
    assert len(mi.requests) == 2


def test_token_endpoint_down_is_transient_without_the_urls_secrets(
        mi: ManagedIdentityEndpoint, cache: TokenCache, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    mi.stop()
    monkeypatch.setenv("IDENTITY_ENDPOINT", mi.url + "?code=URL-S3CRET")
    caplog.set_level(logging.DEBUG, logger="shared")
    with pytest.raises(TransientError) as caught:
        mi_auth(cache).header()
    error = caught.value
    assert isinstance(error, TransientError) and not isinstance(error, IdentityInvalid)
    assert "no answer" in error.message
    ours = "\n".join(record.getMessage() + repr(record.__dict__) for record in caplog.records
                     if record.name.startswith("shared"))
    for secret in ("URL-S3CRET", IDENTITY_HEADER, str(mi.port), "127.0.0.1"):
        assert secret not in str(error)
        assert secret not in ours
    assert error.__cause__ is None and error.__suppress_context__


def test_identity_the_endpoint_does_not_know_is_invalid(mi: ManagedIdentityEndpoint, cache: TokenCache) -> None:
    with pytest.raises(IdentityInvalid) as caught:
        mi_auth(cache, client_id="00000000-0000-0000-0000-00000000dead").header()
    assert "HTTP 400" in caught.value.message


def test_failed_early_renewal_keeps_the_old_token(mi: ManagedIdentityEndpoint, cache: TokenCache,
                                                  clock: Clock) -> None:
    auth = mi_auth(cache)
    first = auth.header()
    clock.offset = mi.lifetime - 200  # in the renewal window, 200 s of life left
    mi.fail_status = 503
    assert auth.header() == first
    assert auth.header() == first  # no new attempt during the pause
    assert len(mi.requests) == 2
    clock.offset += 31
    mi.fail_status = None
    assert auth.header() == f"Bearer {mi.tokens[1]}" != first
    assert len(mi.requests) == 3


def test_expired_token_is_not_served_when_renewal_fails(mi: ManagedIdentityEndpoint, cache: TokenCache,
                                                        clock: Clock) -> None:
    auth = mi_auth(cache)
    auth.header()
    clock.offset = mi.lifetime - 20
    mi.fail_status = 503
    with pytest.raises(TransientError):
        auth.header()


def test_reprs_hold_no_token(mi: ManagedIdentityEndpoint, cache: TokenCache) -> None:
    auth = mi_auth(cache)
    auth.header()
    token = mi.tokens[0]
    assert token not in repr(auth)
    assert token not in repr(CachedToken(token, 1.0, 1.0))


# --- service principal ---------------------------------------------------------------------------


def test_service_principal_wiring_with_an_injected_factory(cache: TokenCache) -> None:
    seen: list[tuple[EntraIdentity, tuple[str, ...]]] = []
    identity = parse_entra_identity({"kind": "service_principal", "tenant_id": TENANT, "client_id": SP_CLIENT,
                                     "secret_ref": "https://kv-sync.vault.azure.net/secrets/ado-sp"})

    class Fake:
        def __init__(self, identity: EntraIdentity) -> None:
            self.identity = identity
            self.closed = False

        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            seen.append((self.identity, scopes))
            return AccessToken(f"sp-token-{len(seen)}", int(time.time()) + 3600)

    auth = EntraAuth(identity, credentials=Fake, cache=cache)
    assert auth.header() == "Bearer sp-token-1"
    assert auth.header() == "Bearer sp-token-1"
    assert seen == [(identity, (ADO_SCOPE,))]
    assert auth.on_unauthorized() is True
    assert auth.header() == "Bearer sp-token-2"


def test_tokens_are_shared_only_with_the_same_key_vault_reference(cache: TokenCache) -> None:
    """An install naming another's client id but a different secret cannot borrow its cached token."""
    fetched: list[str | None] = []

    class Fake:
        def __init__(self, identity: EntraIdentity) -> None:
            self.ref = identity.secret_ref

        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            fetched.append(self.ref)
            return AccessToken(f"token-for-{self.ref}", int(time.time()) + 3600)

    def auth(ref: str) -> EntraAuth:
        identity = EntraIdentity("service_principal", SP_CLIENT, TENANT, secret_ref=ref)
        return EntraAuth(identity, credentials=Fake, cache=cache)

    first, other = f"{VAULT}/secrets/a", f"{VAULT}/secrets/b"
    assert auth(first).header() == f"Bearer token-for-{first}"
    assert auth(first).header() == f"Bearer token-for-{first}"
    assert auth(other).header() == f"Bearer token-for-{other}"
    assert fetched == [first, other]


def test_service_principal_without_reference_is_invalid(cache: TokenCache) -> None:
    auth = EntraAuth(EntraIdentity("service_principal", SP_CLIENT, TENANT), cache=cache)
    with pytest.raises(IdentityInvalid):
        auth.header()


@pytest.fixture(scope="module")
def tls() -> Iterator[tuple[ssl.SSLContext, str]]:
    """A server TLS context for 127.0.0.1 and the path of its CA bundle."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with ca.cert_pem.tempfile() as ca_path:
        yield context, ca_path


@pytest.fixture
def entra(tls: tuple[ssl.SSLContext, str], mi: ManagedIdentityEndpoint) -> Iterator[EntraAuthority]:
    """An HTTPS Entra tenant and Key Vault; the vault accepts the app identity's vault tokens."""

    def vault_token(token: str) -> bool:
        vault_tokens = [query for query in mi.requests_for(VAULT_RESOURCE) if query.get("client_id") == APP_CLIENT]
        return bool(vault_tokens) and token in mi.tokens

    authority = EntraAuthority(tls[0], accept_vault_token=vault_token)
    authority.start()
    yield authority
    authority.stop()


def sp_auth(entra: EntraAuthority, ca_path: str, cache: TokenCache, **refs: str) -> EntraAuth:
    # verify_challenge_resource=False: the local vault is not under vault.azure.net.
    reader = KeyVaultReader(credential_options={"retry_total": 0}, verify_challenge_resource=False,
                            connection_verify=ca_path, retry_total=0)
    credentials = AzureCredentials(read_secret=reader, authority=entra.authority, disable_instance_discovery=True,
                                   connection_verify=ca_path, retry_total=0)
    identity = EntraIdentity("service_principal", client_id=SP_CLIENT, tenant_id=TENANT, **refs)
    return EntraAuth(identity, credentials=credentials, cache=cache)


def test_service_principal_secret_is_read_from_key_vault(
        entra: EntraAuthority, tls: tuple[ssl.SSLContext, str], mi: ManagedIdentityEndpoint, cache: TokenCache,
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", APP_CLIENT)  # the function app's own identity reads Key Vault
    entra.register(TENANT, SP_CLIENT, secret=SP_SECRET)
    entra.secrets["ado-sp"] = (SP_SECRET, None)
    caplog.set_level(logging.DEBUG, logger="shared")
    auth = sp_auth(entra, tls[1], cache, secret_ref=f"{entra.vault_url}/secrets/ado-sp")
    assert auth.header() == "Bearer sp-token-1"
    assert [form["client_secret"] for form in entra.token_requests] == [SP_SECRET]
    assert entra.token_requests[0]["scope"] == ADO_SCOPE
    assert mi.requests_for(VAULT_RESOURCE)[0]["client_id"] == APP_CLIENT
    assert mi.requests_for(ADO_RESOURCE) == []  # the service principal's token does not come from the MI
    assert auth.header() == "Bearer sp-token-1"  # cached: no second secret read or token request
    assert len(entra.token_requests) == 1
    assert SP_SECRET not in caplog.text and "sp-token-1" not in caplog.text  # ours and azure-identity's


def _certificate() -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ado-sync")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return key, cert


@pytest.mark.parametrize("content_type", ["application/x-pkcs12", "application/x-pem-file"])
def test_service_principal_certificate_is_read_from_key_vault(
        entra: EntraAuthority, tls: tuple[ssl.SSLContext, str], cache: TokenCache,
        monkeypatch: pytest.MonkeyPatch, content_type: str) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", APP_CLIENT)
    key, cert = _certificate()
    if content_type == "application/x-pkcs12":
        pfx = pkcs12.serialize_key_and_certificates(b"ado-sync", key, cert, None, serialization.NoEncryption())
        value = base64.b64encode(pfx).decode()
    else:
        value = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).decode() + cert.public_bytes(
                                      serialization.Encoding.PEM).decode()
    entra.register(TENANT, SP_CLIENT, certificate=cert)
    entra.secrets["ado-sp-cert"] = (value, content_type)
    auth = sp_auth(entra, tls[1], cache, certificate_ref=f"{entra.vault_url}/certificates/ado-sp-cert")
    assert auth.header() == "Bearer sp-token-1"
    assert "client_secret" not in entra.token_requests[0]
    assert entra.vault_requests[-1] == "secrets/ado-sp-cert"


def test_certificate_from_another_key_is_refused(entra: EntraAuthority, tls: tuple[ssl.SSLContext, str],
                                                 cache: TokenCache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", APP_CLIENT)
    _, registered = _certificate()
    key, cert = _certificate()
    pfx = pkcs12.serialize_key_and_certificates(b"x", key, cert, None, serialization.NoEncryption())
    entra.register(TENANT, SP_CLIENT, certificate=registered)
    entra.secrets["ado-sp-cert"] = (base64.b64encode(pfx).decode(), "application/x-pkcs12")
    with pytest.raises(IdentityInvalid):
        sp_auth(entra, tls[1], cache, certificate_ref=f"{entra.vault_url}/secrets/ado-sp-cert").header()


def test_wrong_client_secret_is_identity_invalid_without_the_secret(
        entra: EntraAuthority, tls: tuple[ssl.SSLContext, str], cache: TokenCache,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", APP_CLIENT)
    entra.register(TENANT, SP_CLIENT, secret="the-right-one")
    entra.secrets["ado-sp"] = (SP_SECRET, None)
    with pytest.raises(IdentityInvalid) as caught:
        sp_auth(entra, tls[1], cache, secret_ref=f"{entra.vault_url}/secrets/ado-sp").header()
    assert "AADSTS7000215" in caught.value.message and "HTTP 401" in caught.value.message
    assert SP_SECRET not in caught.value.message


def test_missing_key_vault_secret_is_identity_invalid(entra: EntraAuthority, tls: tuple[ssl.SSLContext, str],
                                                      cache: TokenCache, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", APP_CLIENT)
    entra.register(TENANT, SP_CLIENT, secret=SP_SECRET)
    with pytest.raises(IdentityInvalid) as caught:
        sp_auth(entra, tls[1], cache, secret_ref=f"{entra.vault_url}/secrets/gone").header()
    assert "secret gone" in caught.value.message and "does not exist" in caught.value.message
    assert entra.token_requests == []


def test_key_vault_token_failure_is_transient(entra: EntraAuthority, tls: tuple[ssl.SSLContext, str],
                                              mi: ManagedIdentityEndpoint, cache: TokenCache,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", APP_CLIENT)
    entra.register(TENANT, SP_CLIENT, secret=SP_SECRET)
    entra.secrets["ado-sp"] = (SP_SECRET, None)
    mi.fail_status = 503  # the app's own identity cannot get a Key Vault token
    with pytest.raises(TransientError) as caught:
        sp_auth(entra, tls[1], cache, secret_ref=f"{entra.vault_url}/secrets/ado-sp").header()
    assert "HTTP 503" in caught.value.message


def test_entra_outage_is_transient(entra: EntraAuthority, tls: tuple[ssl.SSLContext, str], cache: TokenCache,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", APP_CLIENT)
    entra.register(TENANT, SP_CLIENT, secret=SP_SECRET)
    entra.secrets["ado-sp"] = (SP_SECRET, None)
    entra.fail_status = 503
    auth = sp_auth(entra, tls[1], cache, secret_ref=f"{entra.vault_url}/secrets/ado-sp")
    with pytest.raises(TransientError):
        auth.header()
    entra.fail_status = None
    assert auth.header() == "Bearer sp-token-1"


# --- install body validation (pure) --------------------------------------------------------------

VAULT = "https://kv-sync.vault.azure.net"
VERSION = "0123456789abcdef0123456789ABCDEF"
SP = {"kind": "service_principal", "tenant_id": TENANT, "client_id": SP_CLIENT}


@pytest.mark.parametrize(("body", "expected"), [
    ({"kind": "managed_identity"}, EntraIdentity("managed_identity")),
    ({"kind": "managed_identity", "client_id": MI_CLIENT.upper()}, EntraIdentity("managed_identity", MI_CLIENT)),
    ({**SP, "secret_ref": f"{VAULT}/secrets/ado-sp"},
     EntraIdentity("service_principal", SP_CLIENT, TENANT, secret_ref=f"{VAULT}/secrets/ado-sp")),
    ({**SP, "secret_ref": f"https://KV-Sync.Vault.Azure.Net/secrets/ado-sp/{VERSION}"},
     EntraIdentity("service_principal", SP_CLIENT, TENANT, secret_ref=f"{VAULT}/secrets/ado-sp/{VERSION.lower()}")),
    ({**SP, "certificate_ref": f"{VAULT}/certificates/ado-cert"},
     EntraIdentity("service_principal", SP_CLIENT, TENANT, certificate_ref=f"{VAULT}/certificates/ado-cert")),
    ({**SP, "certificate_ref": "https://kv-sync.vault.azure.cn/secrets/ado-cert/"},
     EntraIdentity("service_principal", SP_CLIENT, TENANT, certificate_ref="https://kv-sync.vault.azure.cn/secrets/ado-cert")),
    ({**SP, "secret_ref": f"{VAULT}/secrets/ado-sp", "certificate_ref": None},
     EntraIdentity("service_principal", SP_CLIENT, TENANT, secret_ref=f"{VAULT}/secrets/ado-sp")),
])
def test_valid_identities(body: dict[str, Any], expected: EntraIdentity) -> None:
    parsed = parse_entra_identity(body)
    assert parsed == expected
    assert parse_entra_identity(parsed.to_dict()) == parsed  # what the store keeps reads back the same


@pytest.mark.parametrize(("body", "field"), [
    ([], "identity"),
    ({}, "identity.kind"),
    ({"kind": "pat"}, "identity.kind"),
    ({"kind": ["managed_identity"]}, "identity.kind"),
    ({"kind": "managed_identity", "client_id": "not-a-guid"}, "identity.client_id"),
    ({"kind": "managed_identity", "client_id": 12}, "identity.client_id"),
    ({"kind": "managed_identity", "client_id": " "}, "identity.client_id"),
    ({"kind": "managed_identity", "tenant_id": TENANT}, "identity.tenant_id"),
    ({"kind": "managed_identity", "secret_ref": f"{VAULT}/secrets/x"}, "identity.secret_ref"),
    ({"kind": "managed_identity", "access_token": "t"}, "identity.access_token"),
    ({**SP, "client_secret": "s", "secret_ref": f"{VAULT}/secrets/x"}, "identity.client_secret"),
    ({**SP, "certificate": "-----BEGIN", "secret_ref": f"{VAULT}/secrets/x"}, "identity.certificate"),
    ({**SP, "secret_ref": f"{VAULT}/secrets/x", "extra": 1}, "identity.extra"),
    ({"kind": "service_principal", "client_id": SP_CLIENT, "secret_ref": f"{VAULT}/secrets/x"}, "identity.tenant_id"),
    ({"kind": "service_principal", "tenant_id": TENANT, "secret_ref": f"{VAULT}/secrets/x"}, "identity.client_id"),
    ({**SP, "tenant_id": "contoso.onmicrosoft.com", "secret_ref": f"{VAULT}/secrets/x"}, "identity.tenant_id"),
    ({**SP, "client_id": f"{SP_CLIENT}0", "secret_ref": f"{VAULT}/secrets/x"}, "identity.client_id"),
    (SP, "identity.secret_ref"),
    ({**SP, "secret_ref": f"{VAULT}/secrets/x", "certificate_ref": f"{VAULT}/certificates/y"}, "identity.secret_ref"),
    ({**SP, "secret_ref": "http://kv-sync.vault.azure.net/secrets/x"}, "identity.secret_ref"),
    ({**SP, "secret_ref": "https://attacker.example.com/secrets/x"}, "identity.secret_ref"),
    ({**SP, "secret_ref": "https://kv-sync.vault.azure.net.example.com/secrets/x"}, "identity.secret_ref"),
    ({**SP, "secret_ref": "https://a.b.vault.azure.net/secrets/x"}, "identity.secret_ref"),
    ({**SP, "secret_ref": "https://kv-sync.vault.azure.net:8443/secrets/x"}, "identity.secret_ref"),
    ({**SP, "secret_ref": "https://user@kv-sync.vault.azure.net/secrets/x"}, "identity.secret_ref"),
    ({**SP, "secret_ref": "https://kv.vault.azure.net/secrets/x"}, "identity.secret_ref"),  # vault name too short
    ({**SP, "secret_ref": "https://kv--sync.vault.azure.net/secrets/x"}, "identity.secret_ref"),
    ({**SP, "secret_ref": f"{VAULT}/keys/x"}, "identity.secret_ref"),
    ({**SP, "secret_ref": f"{VAULT}/certificates/x"}, "identity.secret_ref"),
    ({**SP, "secret_ref": f"{VAULT}/secrets/"}, "identity.secret_ref"),
    ({**SP, "secret_ref": f"{VAULT}/secrets/x/y"}, "identity.secret_ref"),
    ({**SP, "secret_ref": f"{VAULT}/secrets/a_b"}, "identity.secret_ref"),
    ({**SP, "secret_ref": f"{VAULT}/secrets/x?api-version=7.4"}, "identity.secret_ref"),
    ({**SP, "secret_ref": f"{VAULT}/secrets/x#frag"}, "identity.secret_ref"),
    ({**SP, "secret_ref": f"{VAULT}/secrets/" + "x" * 128}, "identity.secret_ref"),
    ({**SP, "certificate_ref": f"{VAULT}/keys/x"}, "identity.certificate_ref"),
])
def test_invalid_identities(body: Any, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_entra_identity(body)
    assert caught.value.status == 422
    assert caught.value.field == field
    assert caught.value.message.startswith(f"{field}: ")


def test_stored_fields_hold_no_secret() -> None:
    identity = parse_entra_identity({**SP, "secret_ref": f"{VAULT}/secrets/ado-sp"})
    assert identity.to_dict() == {"kind": "service_principal", "client_id": SP_CLIENT, "tenant_id": TENANT,
                                  "secret_ref": f"{VAULT}/secrets/ado-sp"}

