"""Install and the client factory against hostile or broken hosts: network failures answer one
generic error, a plain-http WEBHOOK_URL is refused before anything happens, credentials go only
to allow-listed hosts and the configured token URL. Azurite, the sandbox ADO, and raw sockets on
loopback standing in for hosts that misbehave.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from shared import compose, config
from shared.adapters import ado_client, integrations, storage
from shared.core.errors import AdoError, BundleError, ConfigError
from shared.core.models import Integration
from shared.flows import install

pytestmark = pytest.mark.usefixtures("azurite")

WEBHOOK = "https://sync.example.test/api/vsts/issue-updated"


class RawHost:
    """A TCP listener on loopback that treats each connection with `serve` (bounded: stops with the test)."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.serve = serve
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            with connection:
                self.serve(connection)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)
        self.listener.close()


def reset(connection: socket.socket) -> None:
    """Close with an RST (SO_LINGER 0) as soon as the client is connected."""
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def plain_http(connection: socket.socket) -> None:
    """Answer whatever arrives (a TLS hello) in plain HTTP: no TLS spoken here."""
    connection.settimeout(2)
    try:
        connection.recv(4096)
        connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    except OSError:
        pass


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def org(sandbox_ado: Any, env: pytest.MonkeyPatch, uid: str) -> dict[str, str]:
    env.setenv("WEBHOOK_URL", WEBHOOK)
    name = f"sec{uid}"
    account_id = sandbox_ado.add_organization(name, f"acct-sec-{uid}")
    return {"name": name, "account_id": account_id, "pat": sandbox_ado.add_pat(name)}


def body(org: dict[str, str], domain: str) -> dict[str, Any]:
    return {"account_name": org["name"], "organization_id": f"t-{org['name']}", "domain_name": domain,
            "identity": {"kind": "pat", "access_token": org["pat"]}}


def partition_rows(account_id: str) -> list[dict[str, Any]]:
    return [dict(e) for e in storage.table(integrations.TABLE).query_entities(
        "PartitionKey eq @pk", parameters={"pk": account_id})]


def test_network_failures_of_allow_listed_hosts_all_get_the_same_answer(
        sandbox_ado: Any, org: dict[str, str], env: pytest.MonkeyPatch, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ado_client, "BACKOFF_BASE", 0.0)  # retries still happen, without the waiting
    resetting, speaking_http = RawHost(reset), RawHost(plain_http)
    closed = closed_port()
    sandbox_host = urlsplit(sandbox_ado.url).netloc
    listed = [sandbox_host, f"127.0.0.1:{closed}", f"127.0.0.1:{resetting.port}", f"127.0.0.1:{speaking_http.port}"]
    env.setenv("ADO_SERVER_HOSTS", ",".join(listed))
    config.reset()
    svc = compose.build()

    def answer(domain: str) -> tuple[int, str]:
        with pytest.raises(BundleError) as caught:
            install.install(svc, org["account_id"], body(org, domain))
        return caught.value.status, caught.value.message

    connection_data = f"/{org['name']}/_apis/connectionData"
    try:
        answers = {
            "closed port": answer(f"https://127.0.0.1:{closed}/tfs/DefaultCollection/"),
            "connection reset": answer(f"https://127.0.0.1:{resetting.port}/tfs/DefaultCollection/"),
            "no TLS": answer(f"https://127.0.0.1:{speaking_http.port}/tfs/DefaultCollection/"),
        }
        sandbox_ado.inject_fault("drop", times=10, path_contains=connection_data)
        answers["dropped by ADO"] = answer(sandbox_ado.instance_url(org["name"]))
        sandbox_ado.clear_faults()
        sandbox_ado.inject_fault("500", times=10, path_contains=connection_data)
        answers["HTTP 500"] = answer(sandbox_ado.instance_url(org["name"]))
    finally:
        sandbox_ado.clear_faults()
        resetting.stop()
        speaking_http.stop()

    assert set(answers.values()) == {(503, install.UNREACHABLE)}, answers
    assert partition_rows(org["account_id"]) == []


def test_a_plain_http_webhook_url_is_refused_before_anything_happens(
        sandbox_ado: Any, org: dict[str, str], env: pytest.MonkeyPatch) -> None:
    env.setenv("WEBHOOK_URL", "http://sync.example.test/api/vsts/issue-updated")
    config.reset()
    sandbox_ado.reset_calls()

    with pytest.raises(ConfigError, match="must use https") as caught:
        install.install(compose.build(), org["account_id"], body(org, sandbox_ado.instance_url(org["name"])))

    assert caught.value.status == 500
    assert partition_rows(org["account_id"]) == []
    assert not [c for c in sandbox_ado.calls if org["name"] in c["path"]]
    # Loopback may use plain http (local runs).
    env.setenv("WEBHOOK_URL", "http://127.0.0.1:7071/api/vsts/issue-updated")
    config.reset()
    install.install(compose.build(), org["account_id"], body(org, sandbox_ado.instance_url(org["name"])))
    assert [h["consumerInputs"]["url"] for h in sandbox_ado.subscriptions(org["name"])] == [
        "http://127.0.0.1:7071/api/vsts/issue-updated"]


class Spy(requests.Session):
    """Records every URL asked for (with the form of token requests)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.token_posts: list[str] = []

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        self.urls.append(str(url))
        if isinstance(kwargs.get("data"), dict) and kwargs["data"].get("grant_type") == "refresh_token":
            self.token_posts.append(str(url))
        return super().request(method, url, *args, **kwargs)

    def post(self, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        return self.request("POST", url, *args, **kwargs)


@pytest.fixture
def spy() -> Iterator[Spy]:
    session = Spy()
    yield session
    session.close()


def test_a_token_refresh_goes_only_to_the_token_url(sandbox_ado: Any, org: dict[str, str], spy: Spy) -> None:
    token = sandbox_ado.issue_token(org["name"])
    identity = {"kind": "oauth", "access_token": "expired", "refresh_token": token["refresh_token"],
                "expires_at": 1.0}

    install.install(compose.build(session=spy), org["account_id"],
                    {**body(org, sandbox_ado.instance_url(org["name"])), "identity": identity})

    assert spy.token_posts == [config.settings().ado_token_url]
    allowed = {urlsplit(sandbox_ado.instance_url(org["name"])).netloc}
    assert {urlsplit(url).netloc for url in spy.urls} == allowed


def test_a_tampered_stored_url_is_never_called_and_an_untrusted_lookup_answer_is_refused(
        sandbox_ado: Any, org: dict[str, str], spy: Spy, env: pytest.MonkeyPatch) -> None:
    svc = compose.build(session=spy)
    install.install(svc, org["account_id"], body(org, sandbox_ado.instance_url(org["name"])))
    svc.store.integrations.update(org["account_id"], lambda i: replace(i, domain_name="https://evil.example/o/"))
    stored = svc.store.integrations.get(org["account_id"])
    assert stored is not None

    client = svc.ado(stored)  # the lookup's (allow-listed) answer replaces the tampered URL

    assert client.base_url == sandbox_ado.instance_url(org["name"])
    assert not [url for url in spy.urls if "evil.example" in url]
    # When the lookup itself answers with a host that is not allow-listed, nothing is sent there.
    env.setenv("ADO_SERVER_HOSTS", "ado.example.test")
    config.reset()
    svc.store.integrations.update(org["account_id"], lambda i: replace(i, domain_name="https://evil.example/o/"))
    spy.urls.clear()
    with pytest.raises(AdoError, match="does not trust"):
        svc.ado(Integration(account_id=org["account_id"], account_name=org["name"],
                            domain_name="https://evil.example/o/"))
    assert [urlsplit(url).path for url in spy.urls] == [urlsplit(config.settings().ado_account_lookup_url).path]
