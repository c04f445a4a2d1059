"""Test fixtures shared by the whole suite: one Azurite per test session, settings, unique ids."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func
import pytest

from devhost import azurite as azurite_process
from devhost.host import Host
from shared import compose, config
from shared.adapters import storage
from shared.compose import Services
from shared.core.models import Integration

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "ado-webhooks"


@pytest.fixture(scope="session")
def azurite() -> Iterator[azurite_process.Azurite]:
    """A real Azurite on free ports, in memory, for the whole test session."""
    process = azurite_process.start()
    previous = os.environ.get("AzureWebJobsStorage")
    os.environ["AzureWebJobsStorage"] = process.connection_string
    config.reset()
    storage.reset()
    yield process
    process.stop()
    if previous is None:
        os.environ.pop("AzureWebJobsStorage", None)
    else:
        os.environ["AzureWebJobsStorage"] = previous
    config.reset()
    storage.reset()


class RecordingSend:
    """A queue sender that records messages (and their delays) instead of sending them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], float | None]] = []

    def __call__(self, queue: str, message: dict[str, Any], /, *, delay: float | None = None) -> None:
        self.sent.append((queue, message, delay))

    def messages(self, queue: str) -> list[dict[str, Any]]:
        """The messages sent to `queue`, batches flattened into their items."""
        found: list[dict[str, Any]] = []
        for name, message, _ in self.sent:
            if name == queue:
                found.extend(message.get("items", [message]))
        return found


@pytest.fixture
def svc(azurite: azurite_process.Azurite) -> Services:
    """The bundle's services on the test Azurite (real queues)."""
    return compose.build()


@pytest.fixture
def recording_svc(azurite: azurite_process.Azurite) -> Services:
    """The bundle's services on the test Azurite, with a queue sender that only records (`svc.send.sent`)."""
    return compose.build(send=RecordingSend())


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set environment variables for one test; settings are re-read before and after."""
    config.reset()
    yield monkeypatch
    monkeypatch.undo()
    config.reset()


@pytest.fixture
def uid() -> str:
    """A fresh id, so tests sharing one Azurite never see each other's rows."""
    return uuid.uuid4().hex[:12]


def drain(queue_name: str) -> list[dict[str, Any]]:
    """Receive and delete every message of a queue; batches are flattened into their items."""
    client = storage.queue(queue_name)
    found: list[dict[str, Any]] = []
    while True:
        messages = list(client.receive_messages(messages_per_page=32, visibility_timeout=30, max_messages=32))
        if not messages:
            return found
        for message in messages:
            text = message.content
            try:
                body = json.loads(text)
            except ValueError:
                body = json.loads(base64.b64decode(text))
            found.extend(body.get("items", [body]))
            client.delete_message(message)


class StubContext(func.Context):
    """The `context` the Functions worker passes, for calling decorated functions directly."""

    def __init__(self, function_name: str = "test") -> None:
        self._id = uuid.uuid4().hex
        self._name = function_name

    @property
    def invocation_id(self) -> str:
        return self._id

    @property
    def function_name(self) -> str:
        return self._name

    @property
    def function_directory(self) -> str:
        return str(ROOT)

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None

    @property
    def thread_local_storage(self) -> Any:
        return None


def wait_for(check: Callable[[], Any], timeout: float = 30.0, *, interval: float = 0.1,
             what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy (and return it); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(scope="session")
def sandbox_ado() -> Iterator[object]:
    """The HTTPS sandbox Azure DevOps, trusted through REQUESTS_CA_BUNDLE, with the bundle pointed at it."""
    from devhost.sandbox_ado import SandboxAdo

    server = SandboxAdo(delivery_timeout=5.0)
    server.start()
    saved = {name: os.environ.get(name) for name in _SANDBOX_SETTINGS}
    os.environ.update({
        "REQUESTS_CA_BUNDLE": server.ca_pem_path,
        "ADO_TOKEN_URL": server.token_url,
        "ADO_ACCOUNT_LOOKUP_URL": server.lookup_url_template,
        "ADO_SEARCH_URL": server.search_url_template,
        "ADO_GRAPH_USERS_URL": server.graph_users_url_template,
        "ADO_CLIENT_ID": "sandbox-client",
        "ADO_CLIENT_SECRET": "sandbox-client-secret",
        "ADO_SERVER_HOSTS": urlsplit(server.url).netloc,
    })
    config.reset()
    yield server
    server.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    config.reset()


_SANDBOX_SETTINGS = ("REQUESTS_CA_BUNDLE", "ADO_TOKEN_URL", "ADO_ACCOUNT_LOOKUP_URL", "ADO_SEARCH_URL",
                     "ADO_GRAPH_USERS_URL", "ADO_CLIENT_ID", "ADO_CLIENT_SECRET", "ADO_SERVER_HOSTS")


MANAGE_KEY = "e2e-manage-key-0123456789abcdef"


class Bundle:
    """The real function_app served by the devhost over HTTP, for end-to-end tests."""

    def __init__(self, url: str) -> None:
        import requests

        self.url = url
        self.http = requests.Session()
        self.http.trust_env = False

    def api(self, method: str, path: str, body: object = None, *, key: str | None = MANAGE_KEY,
            **kwargs: object) -> tuple[int, object]:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        response = self.http.request(method, f"{self.url}/api/{path.lstrip('/')}", json=body, headers=headers,
                                     timeout=60, **kwargs)  # type: ignore[arg-type]
        try:
            payload = response.json()
        except ValueError:
            payload = response.text
        return response.status_code, payload

    def run_function(self, name: str, message: str | None = None) -> int:
        body = {"input": message} if message is not None else {}
        return self.http.post(f"{self.url}/admin/functions/{name}", json=body, timeout=30).status_code


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bundle_host(storage_connection: str, *, host_json: dict[str, Any] | None = None) -> Host:
    """function_app.py on a devhost (not started) with the test settings, its webhook URL pointing at itself."""
    port = free_port()
    return Host(port=port, poll_interval_cap=0.2, host_json=host_json, settings={
        "AzureWebJobsStorage": storage_connection,
        "MANAGE_API_KEY": MANAGE_KEY,
        "WEBHOOK_URL": f"http://127.0.0.1:{port}/api/vsts/issue-updated",
    })


@pytest.fixture(scope="session")
def bundle(azurite: azurite_process.Azurite, sandbox_ado: object) -> Iterator[Bundle]:
    """function_app.py on the devhost (HTTP, queues, timers), on Azurite and the sandbox ADO."""
    host = bundle_host(azurite.connection_string)
    # Unit tests before this one leave messages for integrations that exist only in their own
    # setup; the live host must not spend the session retrying them.
    for name in ("subscription-check", "migrate-repo", "sync-outbound", "tracker-events"):
        storage.queue(name).clear_messages()
    host.start()
    yield Bundle(host.url)
    host.stop()


class Intercepted:
    """An ADO connector whose clients pass chosen calls through `hooks[name](real_method, *args)`."""

    def __init__(self, connector: Callable[[Integration], Any], **hooks: Callable[..., Any]) -> None:
        self._connector = connector
        self._hooks = hooks

    def __call__(self, integration: Integration) -> Any:
        return _InterceptedClient(self._connector(integration), self._hooks)


class _InterceptedClient:
    def __init__(self, real: Any, hooks: dict[str, Callable[..., Any]]) -> None:
        self._real = real
        self._hooks = hooks

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._real, name)
        hook = self._hooks.get(name)
        if hook is None:
            return method
        return lambda *args, **kwargs: hook(method, *args, **kwargs)
