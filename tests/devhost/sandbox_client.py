"""A `requests` client for the sandbox Azure DevOps, and a local webhook receiver, for the devhost tests.

Every test talks HTTPS to a real `SandboxAdo` on loopback, trusting its CA, like the bundle does.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from devhost.sandbox_ado import SandboxAdo

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "ado-webhooks"
ORG = "fabrikam"
ACCOUNT_ID = "80ded3e8-3cd3-43b1-9f96-52032624aa3a"
PATCH_JSON = "application/json-patch+json"


class Ado:
    """A sandbox seeded with one org, and a `requests` session that calls it with a PAT."""

    def __init__(self, sandbox: SandboxAdo) -> None:
        self.sandbox = sandbox
        self.account_id = sandbox.add_organization(ORG, ACCOUNT_ID)
        self.project_id = sandbox.add_project(ORG, "Fabrikam")
        sandbox.add_user(ORG, "Jamal Hartnett", "jamal@example.com")
        sandbox.add_user(ORG, "Lauryn", "lauryn@example.com")
        sandbox.add_user(ORG, "Francis Totten", "ftotten@example.com")
        self.pat = sandbox.add_pat(ORG)
        self.session = requests.Session()
        self.session.verify = sandbox.ca_pem_path
        self.session.trust_env = False
        self.session.headers.update({"Authorization": basic(self.pat), "X-TFS-FedAuthRedirect": "Suppress"})

    def url(self, path: str) -> str:
        return self.sandbox.instance_url(ORG) + path

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.session.get(self.url(path), params={"api-version": "7.1", **kw.pop("params", {})}, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> requests.Response:
        return self.session.post(self.url(path), params={"api-version": "7.1"}, json=body, timeout=5, **kw)

    def patch_doc(self, method: str, path: str, ops: list[dict[str, Any]], **kw: Any) -> requests.Response:
        headers = {"Content-Type": PATCH_JSON, **kw.pop("headers", {})}
        return self.session.request(
            method, self.url(path), params={"api-version": "7.1"}, data=json.dumps(ops), headers=headers, timeout=5
        )


def basic(pat: str) -> str:
    return "Basic " + base64.b64encode(f":{pat}".encode()).decode()


def title_op(value: str) -> list[dict[str, Any]]:
    return [{"op": "add", "path": "/fields/System.Title", "value": value}]


class Receiver:
    """A tiny local HTTP endpoint that records webhook deliveries and answers `status`."""

    def __init__(self) -> None:
        self.status = 200
        self.requests: list[dict[str, Any]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
                self.send_response(owner.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/ado/tenant-1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def subscribe(ado: Ado, url: str, **inputs: str) -> dict[str, Any]:
    body = {
        "publisherId": "tfs",
        "eventType": "workitem.updated",
        "resourceVersion": "1.0",
        "consumerId": "webHooks",
        "consumerActionId": "httpRequest",
        "publisherInputs": {},
        "consumerInputs": {"url": url, "resourceDetailsToSend": "all", **inputs},
    }
    resp = ado.post("_apis/hooks/subscriptions", body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def running_ado(**options: object) -> Iterator[Ado]:
    """Body of an `ado` fixture: a started sandbox with the `fabrikam` org, stopped afterwards."""
    kwargs = {"delivery_timeout": 1.0, "probation_failures": 3, "graph_page_size": 2, **options}
    with SandboxAdo(**kwargs) as sandbox:  # type: ignore[arg-type]
        client = Ado(sandbox)
        yield client
        client.session.close()


def running_receiver() -> Iterator[Receiver]:
    """Body of a `receiver` fixture."""
    rec = Receiver()
    yield rec
    rec.close()
