"""`SandboxAdo`: a stateful fake Azure DevOps served over HTTPS on loopback, with a test API.

Does I/O: listens on a TLS socket (a fresh local CA from `trustme`), writes the CA PEM, and
delivers service-hook notifications from a background thread.
"""

from __future__ import annotations

import base64
import logging
import shutil
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import trustme

from devhost.sandbox import comments, render
from devhost.sandbox.delivery import Deliverer
from devhost.sandbox.faults import Faults
from devhost.sandbox.handler import Server
from devhost.sandbox.model import SUBSCRIPTION_STATUSES
from devhost.sandbox.state import State

log = logging.getLogger(__name__)

LOOKUP_PATH = "_apis/resourceareas/79134C72-4A58-4B42-976C-04E7115F32BF"
_FRIENDLY_FIELDS = {
    "description": "System.Description",
    "state": "System.State",
    "assigned_to": "System.AssignedTo",
    "area_path": "System.AreaPath",
    "tags": "System.Tags",
    "history": "System.History",
    "repro_steps": "Microsoft.VSTS.TCM.ReproSteps",
}


class SandboxAdo:
    """A fake ADO organization host. Use as a context manager or call `start()` / `stop()`.

    Attributes worth setting in tests: `slow_seconds` (the "slow" fault) and `timeout_seconds`
    (the "timeout" fault); the token endpoint's policy is set with `set_oauth_client`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        state_dir: str | None = None,
        delivery_timeout: float = 5.0,
        probation_failures: int = 3,
        graph_page_size: int = 2,
    ) -> None:
        self.host = host
        self.port = port
        self.state = State(probation_failures=probation_failures)
        self.state.graph_page_size = graph_page_size
        self.faults = Faults(seed=0)
        self.deliverer = Deliverer(self.state, timeout=delivery_timeout)
        self.state.publish = self.deliverer.enqueue
        self.slow_seconds = 0.5
        self.timeout_seconds = 3.0
        self.url = ""
        self.ca_pem_path = ""
        self._state_dir = state_dir
        self._temp_dir: str | None = None
        self._calls: list[dict[str, Any]] = []
        self._calls_lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
        directory = self._state_dir or tempfile.mkdtemp(prefix="sandbox-ado-")
        if self._state_dir is None:
            self._temp_dir = directory
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.ca_pem_path = str(Path(directory, "ca.pem").resolve())
        ca.cert_pem.write_to_path(self.ca_pem_path)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(context)
        server = Server((self.host, self.port), self)
        # Handshake lazily in the handler thread, so one stalled client cannot block accept().
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self.port = int(server.server_address[1])
        shown = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        self.url = f"https://{shown}:{self.port}/"
        self.state.base_url = self.url
        self._stopping.clear()
        self._server = server
        self.deliverer.start()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="sandbox-ado-http", daemon=True
        )
        self._thread.start()
        log.info("sandbox_ado.started", extra={"url": self.url})

    def stop(self) -> None:
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.close_connections()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.deliverer.stop()
        if self._temp_dir:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None
        log.info("sandbox_ado.stopped")

    def __enter__(self) -> SandboxAdo:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- URLs --------------------------------------------------------------------------------

    def instance_url(self, org: str) -> str:
        """`https://127.0.0.1:port/{org}/`, or `.../tfs/{collection}/` for an Azure DevOps Server collection."""
        with self.state.lock:
            found = self.state.orgs.get(org.lower())
            return render.instance_url(self.url, found) if found else f"{self.url}{quote(org)}/"

    @property
    def token_url(self) -> str:
        return f"{self.url}oauth2/token"

    @property
    def lookup_url_template(self) -> str:
        return f"{self.url}{LOOKUP_PATH}?hostId={{account_id}}&api-preview=5.0-preview.1"

    @property
    def search_url_template(self) -> str:
        return f"{self.url}{{account_name}}/_apis/search/workitemsearchresults"

    @property
    def graph_users_url_template(self) -> str:
        return f"{self.url}{{account_name}}/_apis/graph/users"

    def environment(self) -> dict[str, str]:
        """App settings that point the bundle at this sandbox."""
        return {
            "REQUESTS_CA_BUNDLE": self.ca_pem_path,
            "ADO_TOKEN_URL": self.token_url,
            "ADO_ACCOUNT_LOOKUP_URL": self.lookup_url_template,
            "ADO_SEARCH_URL": self.search_url_template,
            "ADO_GRAPH_USERS_URL": self.graph_users_url_template,
            # The sandbox is an Azure DevOps Server-like host: credentials go only to allow-listed hosts.
            "ADO_SERVER_HOSTS": urlsplit(self.url).netloc,
        }

    # -- seeding -----------------------------------------------------------------------------

    def add_organization(self, name: str, account_id: str | None = None) -> str:
        return self.state.add_organization(name, account_id)

    def add_server_collection(
        self, name: str = "DefaultCollection", collection_id: str | None = None, *, domain: str = "FABRIKAM"
    ) -> str:
        """An Azure DevOps Server collection at `/tfs/{name}/`: PAT (basic) auth only, no graph (vssps)
        host, `DOMAIN\\user` identities, service hooks with `collection` + `server` containers."""
        return self.state.add_organization(name, collection_id, server_domain=domain)

    def add_project(self, org: str, name: str, project_id: str | None = None) -> str:
        return self.state.add_project(org, name, project_id)

    def add_user(self, org: str, display_name: str, email: str) -> dict[str, Any]:
        user = self.state.add_user(org, display_name, email)
        return {
            "id": user.id,
            "displayName": user.display_name,
            "mailAddress": user.email,
            "uniqueName": user.unique,
            "descriptor": user.descriptor,
        }

    def add_repository(
        self, org: str, project: str, name: str, repo_id: str | None = None, accessible: bool = True
    ) -> str:
        return self.state.add_repository(org, project, name, repo_id, accessible)

    def set_repository_accessible(self, org: str, repo_id: str, accessible: bool) -> None:
        with self.state.lock:
            self.state.org(org).repositories[repo_id.lower()].accessible = accessible

    def set_git_unauthorized(self, org: str, unauthorized: bool = True) -> None:
        """Make every git endpoint of `org` answer 401 (a credential without `vso.code`)."""
        with self.state.lock:
            self.state.org(org).git_unauthorized = unauthorized

    def issue_token(self, org: str, *, expires_in: float = 3600) -> dict[str, Any]:
        return self.state.issue_token(org, expires_in)

    def add_pat(self, org: str, pat: str | None = None) -> str:
        return self.state.add_pat(org, pat)

    def expire_access_token(self, token: str) -> None:
        self.state.expire_access_token(token)

    def set_oauth_client(
        self,
        client_id: str | None,
        client_secret: str | None,
        *,
        rotate_refresh_tokens: bool = True,
        access_token_lifetime: float = 3600.0,
    ) -> None:
        """Token endpoint policy: the client checked when set, refresh-token rotation, token lifetime."""
        with self.state.lock:
            self.state.client_id = client_id
            self.state.client_secret = client_secret
            self.state.rotate_refresh_tokens = rotate_refresh_tokens
            self.state.access_token_lifetime = access_token_lifetime

    def set_required_fields(self, org: str, project: str, fields: list[str]) -> None:
        self.state.set_required_fields(org, project, fields)

    # -- Entra ID (managed identity, service principals) ------------------------------------

    def managed_identity_environment(self) -> dict[str, str]:
        """`IDENTITY_ENDPOINT` and `IDENTITY_HEADER` as App Service sets them (not in `environment()`:
        `DefaultAzureCredential` would then use the sandbox for storage too)."""
        return {"IDENTITY_ENDPOINT": f"{self.url}msi/token", "IDENTITY_HEADER": self.state.entra.identity_header}

    @property
    def managed_identity_client_id(self) -> str:
        return self.state.entra.managed_identity_client_id

    @property
    def entra_authority(self) -> str:
        """The `authority` for `ClientSecretCredential(..., disable_instance_discovery=True)`."""
        return self.url.rstrip("/")

    def add_service_principal(self, tenant_id: str, client_id: str, secret: str) -> None:
        with self.state.lock:
            self.state.entra.principals[(tenant_id, client_id)] = secret

    def set_entra_token_lifetime(self, seconds: float) -> None:
        with self.state.lock:
            self.state.entra.token_lifetime = seconds

    @property
    def token_requests(self) -> list[dict[str, Any]]:
        """Every Entra token request answered: kind (managed_identity | client_credentials), resource/scope."""
        with self.state.lock:
            return [dict(r) for r in self.state.entra.requests]

    def set_allowed_values(self, org: str, project: str, field: str, values: list[Any]) -> None:
        """A picklist for `field` in `project` (every type): other values fail with TF401320."""
        self.state.set_allowed_values(org, project, field, values)

    def add_area(self, org: str, project: str, path: str) -> None:
        """Add an area node, `Parent\\Child` relative to the project (projects start with Team A, Team B)."""
        self.state.add_node(org, project, "area", path, None)

    def add_iteration(
        self, org: str, project: str, path: str, start: str | None = None, finish: str | None = None
    ) -> None:
        """Add an iteration node (projects start with Sprint 7 and Sprint 8), with optional ISO dates."""
        dates = {"startDate": start, "finishDate": finish} if start and finish else None
        self.state.add_node(org, project, "iteration", path, dates)

    def set_wiql_max_results(self, limit: int) -> None:
        """WIQL's result cap (ADO: 20,000, then VS402337), lowered to test windowed reconciliation."""
        with self.state.lock:
            self.state.wiql_max_results = limit

    def set_states(self, org: str, project: str, work_item_type: str, states: list[dict[str, str]]) -> None:
        """Replace a type's states (`[{"name", "color", "category"}]`), e.g. to add a custom state."""
        self.state.set_states(org, project, work_item_type, states)

    # -- work items (helpers: no HTTP, but changes deliver hooks like API changes) -------------

    def create_work_item(
        self, org: str, project: str, work_item_type: str = "Bug", title: str = "Sandbox work item", **fields: Any
    ) -> dict[str, Any]:
        """Create as a board user. `fields`: friendly names (state, assigned_to, ...) or reference names."""
        created_by = fields.pop("created_by", None)
        ops = [{"op": "add", "path": "/fields/System.Title", "value": title}]
        ops += [{"op": "add", "path": f"/fields/{_FRIENDLY_FIELDS.get(k, k)}", "value": v} for k, v in fields.items()]
        with self.state.lock:
            actor = self.state.user(self.state.org(org), created_by)
            item = self.state.create_work_item(org, project, work_item_type, ops, actor)
            return render.work_item(self.url, self.state.org(org), item)

    def update_work_item(
        self,
        org: str,
        work_item_id: int,
        *,
        state: str | None = None,
        assigned_to: Any = ...,
        title: str | None = None,
        comment: str | None = None,
        changed_by: str | None = None,
    ) -> dict[str, Any]:
        """Change a work item as a board user (default: the org's first user) and deliver `workitem.updated`.

        `assigned_to`: `...` leaves it, `None` unassigns, else e-mail / `Name <email>` / display name.
        """
        ops: list[dict[str, Any]] = []
        if title is not None:
            ops.append({"op": "replace", "path": "/fields/System.Title", "value": title})
        if assigned_to is None:
            ops.append({"op": "remove", "path": "/fields/System.AssignedTo"})
        elif assigned_to is not ...:
            ops.append({"op": "replace", "path": "/fields/System.AssignedTo", "value": assigned_to})
        if state is not None:
            ops.append({"op": "replace", "path": "/fields/System.State", "value": state})
        if comment:
            ops.append({"op": "add", "path": "/fields/System.History", "value": comment})
        with self.state.lock:
            actor = self.state.user(self.state.org(org), changed_by)
            item = self.state.update_work_item(org, work_item_id, ops, actor)
            return render.work_item(self.url, self.state.org(org), item)

    def add_comment(self, org: str, work_item_id: int, text: str, *, author: str | None = None) -> dict[str, Any]:
        """Comment as a board user (default: the org's first user); delivers `updated` and `commented`."""
        with self.state.lock:
            found = self.state.org(org)
            comment = self.state.add_comment(org, work_item_id, text, self.state.user(found, author), "html")
            project_id = self.state.item(found, work_item_id).project_id
            return comments.render(self.state.instance(found), project_id, comment, rendered=False)

    def edit_comment(
        self, org: str, work_item_id: int, comment_id: int, text: str, *, author: str | None = None
    ) -> dict[str, Any]:
        with self.state.lock:
            found = self.state.org(org)
            comment = self.state.edit_comment(org, work_item_id, comment_id, text, self.state.user(found, author))
            project_id = self.state.item(found, work_item_id).project_id
            return comments.render(self.state.instance(found), project_id, comment, rendered=False)

    def delete_comment(self, org: str, work_item_id: int, comment_id: int, *, author: str | None = None) -> None:
        with self.state.lock:
            found = self.state.org(org)
            self.state.delete_comment(org, work_item_id, comment_id, self.state.user(found, author))

    def work_item(self, org: str, work_item_id: int) -> dict[str, Any]:
        with self.state.lock:
            found = self.state.org(org)
            return render.work_item(self.url, found, self.state.item(found, work_item_id))

    # -- subscriptions -----------------------------------------------------------------------

    def subscriptions(self, org: str) -> list[dict[str, Any]]:
        """All subscriptions of `org`, passwords unmasked (test view)."""
        with self.state.lock:
            return [render.subscription(s, masked=False) for s in self.state.org(org).subscriptions.values()]

    def set_subscription_status(self, org: str, subscription_id: str, status: str) -> None:
        if status not in SUBSCRIPTION_STATUSES:
            raise ValueError(f"unknown subscription status {status!r}")
        with self.state.lock:
            sub = self.state.subscription(self.state.org(org), subscription_id)
            sub.data["status"] = status
            sub.failures = 0

    # -- faults, call log, deliveries -------------------------------------------------------

    def inject_fault(
        self,
        kind: str,
        *,
        times: int = 1,
        rate: float | None = None,
        path_contains: str | None = None,
        retry_after: int = 1,
    ) -> None:
        """Arm a fault for API requests: "429" (with Retry-After), "500", "503", "slow", "drop", "timeout"."""
        self.faults.inject(kind, times=times, rate=rate, path_contains=path_contains, retry_after=retry_after)

    def clear_faults(self, path_contains: str | None = None) -> None:
        """Disarm every fault, or only those injected with this `path_contains`."""
        self.faults.clear(path_contains)

    @property
    def calls(self) -> list[dict[str, Any]]:
        """Requests received so far: method, path, query, headers (credentials reduced to the scheme), body."""
        with self._calls_lock:
            return list(self._calls)

    def reset_calls(self) -> None:
        with self._calls_lock:
            self._calls.clear()

    @property
    def deliveries(self) -> list[dict[str, Any]]:
        """Delivery attempts: subscription_id, url, status or error, event_id, work_item_id, rev, attempt."""
        return list(self.deliverer.deliveries)

    def hold_deliveries(self, org: str, held: bool = True) -> None:
        """Keep `org`'s service-hook notifications instead of sending them (`held=False`: send again)."""
        self.deliverer.hold(org, held)

    def take_held_deliveries(self, org: str) -> list[dict[str, Any]]:
        """The notifications kept for `org` since the last call, oldest first: `payload`, `url`, `headers`
        (with the basic-auth `Authorization` the subscription asks for), `subscription_id`."""
        found = []
        for job in self.deliverer.take_held(org):
            headers = dict(job.headers)
            if job.username or job.password:
                token = base64.b64encode(f"{job.username}:{job.password}".encode()).decode()
                headers["Authorization"] = f"Basic {token}"
            found.append({"payload": job.payload, "url": job.url, "headers": headers,
                          "subscription_id": job.subscription_id})
        return found

    def reset_deliveries(self) -> None:
        self.deliverer.deliveries.clear()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no notification is queued or being delivered."""
        return self.deliverer.wait_idle(timeout)

    # -- used by the request handler ---------------------------------------------------------

    def _record(self, call: dict[str, Any]) -> None:
        with self._calls_lock:
            self._calls.append(call)

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)
