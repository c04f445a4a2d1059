"""The sandbox's in-memory Azure DevOps: organizations, people, projects, rules and subscriptions.

No I/O: every method runs under one lock and raises `ApiError` the way ADO answers. Credentials
and work item writes are mixins (`credentials.py`, `workitems.py`). Changes to work items are
handed to `publish` as delivery jobs (the delivery worker sends them).
"""

from __future__ import annotations

import copy
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devhost.sandbox import comments, hooks, process, render
from devhost.sandbox.comments import Comments
from devhost.sandbox.credentials import Credentials
from devhost.sandbox.entra import Entra
from devhost.sandbox.errors import ApiError
from devhost.sandbox.model import (
    DEFAULT_STATES,
    WORK_ITEM_TYPES,
    Comment,
    Org,
    Project,
    Repository,
    Subscription,
    Token,
    User,
    WorkItem,
)
from devhost.sandbox.workitems import WorkItems

EMAIL_IN_BRACKETS = re.compile(r"<([^<>]+)>\s*$")


@dataclass
class Job:
    """One notification to POST to one subscription's URL."""

    org: str
    subscription_id: str
    url: str
    username: str
    password: str
    headers: dict[str, str]
    payload: dict[str, Any]

    @property
    def work_item_id(self) -> int | None:
        resource = self.payload.get("resource") or {}
        value = resource.get("workItemId", resource.get("id"))
        return value if isinstance(value, int) else None


def parse_headers(text: str) -> dict[str, str]:
    """`httpHeaders` consumer input: `Name:value` lines."""
    headers: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip():
            headers[name.strip()] = value.strip()
    return headers


class State(Credentials, WorkItems, Comments):
    """Everything the sandbox knows, guarded by `lock`."""

    def __init__(self, *, probation_failures: int = 3) -> None:
        self.lock = threading.RLock()
        self.base_url = ""
        self.orgs: dict[str, Org] = {}
        self.tokens: dict[str, Token] = {}
        self.refresh_tokens: dict[str, str] = {}
        self.client_id: str | None = None
        self.client_secret: str | None = None
        self.rotate_refresh_tokens = True
        self.access_token_lifetime = 3600.0
        self.probation_failures = probation_failures
        self.graph_page_size = 2
        self.wiql_max_results = 20000
        self.entra = Entra()
        self.publish: Callable[[Job], None] = lambda job: None

    # -- organizations and people -------------------------------------------------------------

    def org(self, name: str) -> Org:
        org = self.orgs.get(name.lower())
        if org is None:
            raise ApiError(404, f"VS800075: The organization '{name}' does not exist.", "OrganizationNotFound")
        return org

    def instance(self, org: Org) -> str:
        return render.instance_url(self.base_url, org)

    def add_organization(
        self, name: str, account_id: str | None, *, server_domain: str | None = None, server_id: str | None = None
    ) -> str:
        """An org (Services), or with `server_domain` a collection of an Azure DevOps Server."""
        with self.lock:
            if name.lower() in self.orgs:
                raise ValueError(f"organization {name!r} already exists")
            account = (account_id or str(uuid.uuid4())).lower()
            integration = User(f"{name} Integration", f"integration@{name.lower()}.sandbox.example")
            org = Org(name=name, account_id=account, integration=integration)
            if server_domain:
                org.server, org.server_id = True, (server_id or str(uuid.uuid4())).lower()
                org.server_domain = server_domain
                integration.account = f"{server_domain}\\svc-integration"
            self.orgs[name.lower()] = org
            return account

    def add_project(self, org_name: str, name: str, project_id: str | None) -> str:
        with self.lock:
            org = self.org(org_name)
            if org.project(name):
                raise ValueError(f"project {name!r} already exists")
            pid = (project_id or str(uuid.uuid4())).lower()
            proj = Project(id=pid, name=name)
            process.seed_trees(proj)
            org.projects[pid] = proj
            return pid

    def add_user(self, org_name: str, display_name: str, email: str) -> User:
        with self.lock:
            org = self.org(org_name)
            user = User(display_name, email)
            if org.server:  # Server identities are domain accounts: DOMAIN\\localpart
                user.account = f"{org.server_domain}\\{email.split('@', 1)[0]}"
            org.users.append(user)
            return user

    def add_repository(self, org_name: str, project: str, name: str, repo_id: str | None, accessible: bool) -> str:
        with self.lock:
            org = self.org(org_name)
            proj = self._project(org, project)
            rid = (repo_id or str(uuid.uuid4())).lower()
            org.repositories[rid] = Repository(id=rid, name=name, project_id=proj.id, accessible=accessible)
            return rid

    def resolve_identity(self, org: Org, value: Any) -> str:
        """An e-mail, `Name <email>` or unique display name → `Name <email>`; unknown → 400."""
        text = str(value or "").strip()
        match = EMAIL_IN_BRACKETS.search(text)
        wanted = (match.group(1) if match else text).lower()
        users = [u for u in org.users if wanted in (u.email.lower(), u.account.lower()) and wanted]
        if not users and not match:
            users = [u for u in org.users if u.display_name.lower() == wanted]
        if len(users) == 1:
            return users[0].unique
        if len(users) > 1:
            raise ApiError(
                400,
                f"The identity value '{text}' for field 'Assigned To' is an ambiguous identity.",
                "WorkItemFieldInvalidException",
            )
        raise ApiError(
            400,
            f"The identity value '{text}' for field 'Assigned To' is an unknown identity.",
            "WorkItemFieldInvalidException",
        )

    def user(self, org: Org, email: str | None) -> User:
        """The acting user for helper-made changes (default: the first sandbox user)."""
        if email:
            for u in org.users:
                if u.email.lower() == email.lower():
                    return u
            raise ValueError(f"no sandbox user {email!r} in {org.name}")
        return org.users[0] if org.users else User("Sandbox User", "sandbox.user@example.com")

    # -- work item types and states ------------------------------------------------------------

    def _project(self, org: Org, ref: str) -> Project:
        proj = org.project(ref)
        if proj is None:
            raise ApiError(
                404,
                f"TF200016: The following project does not exist: {ref}. Verify that the name of the "
                "project is correct and that the project exists on the specified Azure DevOps Server.",
                "ProjectDoesNotExistWithNameException",
            )
        return proj

    def project(self, org: Org, ref: str) -> Project:
        with self.lock:
            return self._project(org, ref)

    @staticmethod
    def work_item_type(proj: Project, ref: str) -> str:
        for name, reference in WORK_ITEM_TYPES.items():
            if ref.lower() in (name.lower(), reference.lower()):
                return name
        raise ApiError(
            404,
            f"VS402323: Work item type {ref} does not exist in project {proj.name} "
            "or you do not have permission to access it.",
            "WorkItemTypeNotFoundException",
        )

    def states(self, org: Org, proj: Project, wtype: str) -> list[dict[str, str]]:
        return copy.deepcopy(org.states.get((proj.id, wtype), DEFAULT_STATES))

    def set_states(self, org_name: str, project: str, wtype: str, states: list[dict[str, str]]) -> None:
        with self.lock:
            org = self.org(org_name)
            proj = self._project(org, project)
            org.states[(proj.id, self.work_item_type(proj, wtype))] = copy.deepcopy(states)

    def set_required_fields(self, org_name: str, project: str, fields: list[str]) -> None:
        with self.lock:
            org = self.org(org_name)
            org.required_fields[self._project(org, project).id] = list(fields)

    def set_allowed_values(self, org_name: str, project: str, field_name: str, values: list[Any]) -> None:
        with self.lock:
            org = self.org(org_name)
            org.allowed_values.setdefault(self._project(org, project).id, {})[field_name] = list(values)

    def add_node(self, org_name: str, project: str, kind: str, path: str, attributes: dict[str, Any] | None) -> None:
        with self.lock:
            proj = self._project(self.org(org_name), project)
            process.add_node(proj.areas if kind == "area" else proj.iterations, path, attributes)

    # -- rules and events ------------------------------------------------------------------------

    def validate(self, org: Org, proj: Project, fields: dict[str, Any], *, item_id: int) -> None:
        process.validate(self.field_rules(org, proj, str(fields["System.WorkItemType"])), proj, fields, item_id=item_id)

    def field_rules(self, org: Org, proj: Project, wtype: str) -> list[process.FieldRule]:
        states = [s["name"] for s in self.states(org, proj, wtype)]
        required = org.required_fields.get(proj.id, [])
        return process.field_rules(wtype, states, required, org.allowed_values.get(proj.id, {}))

    def emit(
        self,
        org: Org,
        event_type: str,
        item: WorkItem,
        changes: dict[str, Any] | None,
        actor: User,
        *,
        comment: Comment | None = None,
    ) -> None:
        """Queue one notification per matching subscription (`comment`: the one a `commented` event is about)."""
        text = comment.current.text if comment else None
        subs = [s for s in org.subscriptions.values() if hooks.wants(s, event_type, item, changes, comment=text)]
        if not subs:
            return
        if event_type == "workitem.updated":
            resource = render.updated_resource(self.base_url, org, item, changes or {}, actor)
        else:
            resource = render.work_item(self.base_url, org, item)
            if comment is not None:
                resource["fields"]["System.History"] = comment.current.text
                resource["commentVersionRef"] = comments.version_ref(self.instance(org), item.project_id, comment)
        event_id = str(uuid.uuid4())
        for sub in subs:
            sub.notifications += 1
            payload = render.event(
                self.base_url,
                org,
                sub,
                event_id=event_id,
                event_type=event_type,
                item=item,
                resource=resource,
                actor=actor,
                comment=text,
            )
            inputs = sub.data.get("consumerInputs") or {}
            self.publish(
                Job(
                    org=org.name.lower(),
                    subscription_id=sub.data["id"],
                    url=inputs["url"],
                    username=inputs.get("basicAuthUsername", ""),
                    password=inputs.get("basicAuthPassword", ""),
                    headers=parse_headers(inputs.get("httpHeaders", "")),
                    payload=copy.deepcopy(payload),
                )
            )

    # -- subscriptions -------------------------------------------------------------------------

    def subscription(self, org: Org, sub_id: str) -> Subscription:
        sub = org.subscriptions.get(sub_id.lower())
        if sub is None:
            raise ApiError(404, f"Subscription '{sub_id}' was not found.", "SubscriptionNotFoundException")
        return sub

    def add_subscription(self, org: Org, body: Any) -> Subscription:
        with self.lock:
            creator = org.integration.identity_ref(self.instance(org))
            sub = hooks.new_subscription(org, body, instance=self.instance(org), creator=creator)
            org.subscriptions[sub.data["id"]] = sub
            return sub

    def delivery_result(self, org_name: str, sub_id: str, status: int | None) -> None:
        with self.lock:
            org = self.orgs.get(org_name)
            sub = org.subscriptions.get(sub_id) if org else None
            if sub is not None:
                hooks.record_result(sub, status, probation_failures=self.probation_failures)

    def is_active(self, org_name: str, sub_id: str) -> bool:
        with self.lock:
            org = self.orgs.get(org_name)
            sub = org.subscriptions.get(sub_id) if org else None
            return sub is not None and sub.data.get("status") in ("enabled", "onProbation")
