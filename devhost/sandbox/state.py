"""The sandbox's in-memory Azure DevOps: organizations, credentials, work items and subscriptions.

No I/O: every method runs under one lock and raises `ApiError` the way ADO answers. Changes to
work items are handed to `publish` as delivery jobs (the delivery worker sends them).
"""

from __future__ import annotations

import base64
import copy
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from devhost.sandbox import hooks, render
from devhost.sandbox.errors import ApiError
from devhost.sandbox.model import (
    DEFAULT_STATES,
    REASONS,
    WORK_ITEM_TYPES,
    Org,
    Project,
    Repository,
    Subscription,
    Token,
    User,
    WorkItem,
    field_display_name,
    now_iso,
)

_EMAIL_IN_BRACKETS = re.compile(r"<([^<>]+)>\s*$")


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


class State:
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
        self.publish: Callable[[Job], None] = lambda job: None

    # -- organizations and people -------------------------------------------------------------

    def org(self, name: str) -> Org:
        org = self.orgs.get(name.lower())
        if org is None:
            raise ApiError(404, f"VS800075: The organization '{name}' does not exist.", "OrganizationNotFound")
        return org

    def instance(self, org: Org) -> str:
        return render.instance_url(self.base_url, org)

    def add_organization(self, name: str, account_id: str | None) -> str:
        with self.lock:
            if name.lower() in self.orgs:
                raise ValueError(f"organization {name!r} already exists")
            account = (account_id or str(uuid.uuid4())).lower()
            integration = User(f"{name} Integration", f"integration@{name.lower()}.sandbox.example")
            self.orgs[name.lower()] = Org(name=name, account_id=account, integration=integration)
            return account

    def add_project(self, org_name: str, name: str, project_id: str | None) -> str:
        with self.lock:
            org = self.org(org_name)
            if org.project(name):
                raise ValueError(f"project {name!r} already exists")
            pid = (project_id or str(uuid.uuid4())).lower()
            org.projects[pid] = Project(id=pid, name=name)
            return pid

    def add_user(self, org_name: str, display_name: str, email: str) -> User:
        with self.lock:
            user = User(display_name, email)
            self.org(org_name).users.append(user)
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
        match = _EMAIL_IN_BRACKETS.search(text)
        wanted = (match.group(1) if match else text).lower()
        users = [u for u in org.users if u.email and u.email.lower() == wanted]
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

    # -- credentials ---------------------------------------------------------------------------

    def add_pat(self, org_name: str, pat: str | None) -> str:
        with self.lock:
            value = pat or secrets.token_urlsafe(39)
            self.org(org_name).pats.add(value)
            return value

    def issue_token(self, org_name: str, expires_in: float) -> dict[str, Any]:
        with self.lock:
            org = self.org(org_name)
            access, refresh = _new_token("at"), _new_token("rt")
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
                return token is not None and token.org == org.name.lower() and token.expires_at > time.time()
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
            access = _new_token("at")
            self.tokens[access] = Token(org=org, expires_at=time.time() + self.access_token_lifetime)
            if self.rotate_refresh_tokens:
                del self.refresh_tokens[refresh]
                refresh = _new_token("rt")
                self.refresh_tokens[refresh] = org
            return {
                "access_token": access,
                "refresh_token": refresh,
                "expires_in": int(self.access_token_lifetime),
                "token_type": "Bearer",
                "scope": "499b84ac-1321-427f-aa17-267ca6975798/.default",
            }

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

    # -- work items ----------------------------------------------------------------------------

    def item(self, org: Org, work_item_id: int) -> WorkItem:
        found = org.work_items.get(work_item_id)
        if found is None:
            raise ApiError(
                404,
                f"TF401232: Work item {work_item_id} does not exist, or you do not have permissions to read it.",
                "WorkItemUnauthorizedAccessException",
            )
        return found

    def create_work_item(
        self, org_name: str, project: str, type_ref: str, ops: Any, actor: User | None = None
    ) -> WorkItem:
        with self.lock:
            org = self.org(org_name)
            proj = self._project(org, project)
            wtype = self.work_item_type(proj, type_ref)
            actor = actor or org.integration
            given: dict[str, Any] = {}
            history, relations, multiline, _ = self._apply(org, given, ops)
            now = now_iso()
            state = str(given.get("System.State") or self.states(org, proj, wtype)[0]["name"])
            fields: dict[str, Any] = {
                "System.AreaPath": proj.name,
                "System.IterationPath": proj.name,
                "System.State": state,
                "System.Reason": REASONS.get(state, f"Moved to state {state}"),
                "System.CreatedDate": now,
                "System.CreatedBy": actor.unique,
                "System.ChangedDate": now,
                "System.ChangedBy": actor.unique,
                "System.CommentCount": len(history),
                "Microsoft.VSTS.Common.StateChangeDate": now,
                "Microsoft.VSTS.Common.Priority": 2,
                **given,
                "System.TeamProject": proj.name,
                "System.WorkItemType": wtype,
            }
            self._validate(org, proj, fields, item_id=-1)
            item = WorkItem(org.next_id, proj.id, 1, fields, relations, multiline)
            org.next_id += 1
            org.watermark += 1
            org.work_items[item.id] = item
            self._emit(org, "workitem.created", item, None, actor)
            if history:
                self._emit(org, "workitem.commented", item, {"System.History": {"newValue": history[-1]}}, actor)
            return item

    def update_work_item(self, org_name: str, work_item_id: int, ops: Any, actor: User | None = None) -> WorkItem:
        with self.lock:
            org = self.org(org_name)
            item = self.item(org, work_item_id)
            actor = actor or org.integration
            fields = dict(item.fields)
            history, relations, multiline, expected_rev = self._apply(org, fields, ops)
            if expected_rev is not None and expected_rev != item.rev:
                raise ApiError(
                    412,
                    f"TF26071: This work item has been changed by someone else since you opened it. "
                    f"You will need to refresh it and discard your changes. Work item {item.id}.",
                    "WorkItemRevisionMismatchException",
                )
            proj = org.projects[item.project_id]
            fields["System.TeamProject"] = proj.name
            self._validate(org, proj, fields, item_id=item.id)
            changed = [k for k in set(fields) | set(item.fields) if fields.get(k) != item.fields.get(k)]
            if not changed and not history and not relations and multiline.items() <= item.multiline.items():
                return item
            now = now_iso()
            if "System.State" in changed:
                state = str(fields["System.State"])
                fields["System.Reason"] = REASONS.get(state, f"Moved to state {state}")
                fields["Microsoft.VSTS.Common.StateChangeDate"] = now
            fields["System.ChangedDate"] = now
            fields["System.ChangedBy"] = actor.unique
            fields["System.CommentCount"] = int(item.fields.get("System.CommentCount", 0)) + len(history)
            org.watermark += 1
            changes = _changes(item.fields, fields)
            changes["System.Rev"] = {"oldValue": item.rev, "newValue": item.rev + 1}
            changes["System.AuthorizedDate"] = {"oldValue": item.fields.get("System.ChangedDate"), "newValue": now}
            changes["System.RevisedDate"] = {"oldValue": now, "newValue": "9999-01-01T00:00:00Z"}
            changes["System.Watermark"] = {"oldValue": org.watermark - 1, "newValue": org.watermark}
            if history:
                changes["System.History"] = {"newValue": history[-1]}
            item.fields = fields
            item.rev += 1
            item.relations.extend(relations)
            item.multiline.update(multiline)
            self._emit(org, "workitem.updated", item, changes, actor)
            if history:
                self._emit(org, "workitem.commented", item, {"System.History": {"newValue": history[-1]}}, actor)
            return item

    def _apply(
        self, org: Org, fields: dict[str, Any], ops: Any
    ) -> tuple[list[str], list[dict[str, Any]], dict[str, str], int | None]:
        """Apply a JSON Patch document to `fields`; returns history, relations, formats and a `test /rev`."""
        if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
            message = "You must pass a valid patch document in the body of the request."
            raise ApiError(400, message, "VssPropertyValidationException")
        history: list[str] = []
        relations: list[dict[str, Any]] = []
        multiline: dict[str, str] = {}
        expected_rev: int | None = None
        for op in ops:
            kind, path, value = str(op.get("op", "")).lower(), str(op.get("path", "")), op.get("value")
            if kind not in ("add", "replace", "remove", "test"):
                raise ApiError(400, f"Unsupported JSON Patch operation '{kind}'.", "PatchOperationFailedException")
            if kind == "test" and path.lower() == "/rev":
                expected_rev = int(value) if isinstance(value, int | str) and str(value).isdigit() else -1
            elif path.lower() == "/fields/system.history" and kind in ("add", "replace"):
                if value:
                    history.append(str(value))
            elif path.lower().startswith("/fields/") and len(path) > len("/fields/"):
                name = path[len("/fields/") :]
                if kind == "remove":
                    fields.pop(name, None)
                elif kind in ("add", "replace"):
                    if name == "System.AssignedTo" and value in (None, ""):
                        fields.pop(name, None)
                    elif name == "System.AssignedTo":
                        fields[name] = self.resolve_identity(org, value)
                    else:
                        fields[name] = value
            elif path == "/relations/-" and kind == "add" and isinstance(value, dict):
                relations.append(dict(value))
            elif path.startswith("/multilineFieldsFormat/") and kind == "add":
                multiline[path.split("/", 2)[2]] = str(value)
            else:
                raise ApiError(400, f"The path '{path}' is not supported for operation '{kind}'.", "PatchException")
        return history, relations, multiline, expected_rev

    def _validate(self, org: Org, proj: Project, fields: dict[str, Any], *, item_id: int) -> None:
        required = ["System.Title", *org.required_fields.get(proj.id, [])]
        for name in required:
            value = fields.get(name)
            if value is None or (isinstance(value, str) and not value.strip()):
                raise ApiError(
                    400,
                    f"TF401320: Rule Error for field {field_display_name(name)}. Error code: Required, "
                    "HasValues, LimitedToValues, AllowsOldValue, InvalidEmpty.",
                    "RuleValidationException",
                )
        wtype = str(fields["System.WorkItemType"])
        state = fields.get("System.State")
        if state not in [s["name"] for s in self.states(org, proj, wtype)]:
            raise ApiError(
                400,
                f"TF401320: Rule Error for field State. Error code: ValidValues, HasValues, LimitedToValues, "
                f"AllowsOldValue, InvalidUnknown. The value '{state}' is not in the list of supported values.",
                "RuleValidationException",
            )
        area = str(fields.get("System.AreaPath", ""))
        if area.lower() != proj.name.lower() and not area.lower().startswith(proj.name.lower() + "\\"):
            raise ApiError(
                400,
                f"TF401347: Invalid tree name given for work item {item_id}, field 'System.AreaPath'.",
                "WorkItemFieldInvalidTreeNameException",
            )

    def _emit(self, org: Org, event_type: str, item: WorkItem, changes: dict[str, Any] | None, actor: User) -> None:
        subs = [s for s in org.subscriptions.values() if hooks.wants(s, event_type, item, changes)]
        if not subs:
            return
        if event_type == "workitem.updated":
            resource = render.updated_resource(self.base_url, org, item, changes or {}, actor)
        else:
            resource = render.work_item(self.base_url, org, item)
            if event_type == "workitem.commented" and changes:
                resource["fields"]["System.History"] = changes["System.History"]["newValue"]
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

    # -- search --------------------------------------------------------------------------------

    def search(self, org: Org, project: str | None, body: Any) -> dict[str, Any]:
        """`POST _apis/search/workitemsearchresults`: title substring or id; lower-cased string fields."""
        if not isinstance(body, dict) or not str(body.get("searchText") or "").strip():
            raise ApiError(400, "The search text is empty.", "InvalidQueryException")
        text = str(body["searchText"]).strip().lower()
        top, skip = int(body.get("$top") or 100), int(body.get("$skip") or 0)
        filters = body.get("filters") or {}
        with self.lock:
            proj = self._project(org, project) if project else None
            found = []
            for item in sorted(org.work_items.values(), key=lambda i: i.id):
                title = str(item.fields.get("System.Title", ""))
                if proj and item.project_id != proj.id:
                    continue
                if text != "*" and text not in title.lower() and text.lstrip("#") != str(item.id):
                    continue
                if all(_filter_ok(item, k, v) for k, v in filters.items()):
                    found.append(item)
            results = [self._search_hit(org, item, text) for item in found[skip : skip + top]]
        return {"count": len(found), "results": results, "infoCode": 0, "facets": {}}

    def _search_hit(self, org: Org, item: WorkItem, text: str) -> dict[str, Any]:
        proj = org.projects[item.project_id]
        keys = (
            "System.Id",
            "System.WorkItemType",
            "System.Title",
            "System.AssignedTo",
            "System.State",
            "System.Tags",
            "System.CreatedDate",
            "System.ChangedDate",
            "System.AreaPath",
            "System.TeamProject",
        )
        values = {**item.fields, "System.Id": item.id, "System.Rev": item.rev}
        title = str(item.fields.get("System.Title", ""))
        hits = [{"fieldReferenceName": "system.title", "highlights": [title]}] if text in title.lower() else []
        return {
            "project": {"id": proj.id, "name": proj.name},
            "fields": {k.lower(): str(values.get(k, "")) for k in keys},
            "hits": hits,
            "url": render.work_item(self.base_url, org, item)["url"],
        }


def _filter_ok(item: WorkItem, key: str, wanted: Any) -> bool:
    if not isinstance(wanted, list) or not wanted:
        return True
    actual = str(item.fields.get(key, "")).lower()
    options = [str(w).lower() for w in wanted]
    if key == "System.AssignedTo":
        email = _EMAIL_IN_BRACKETS.search(actual)
        return actual in options or (email is not None and email.group(1) in options)
    return actual in options


def _changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """resourceVersion 1.0 change records: `oldValue` absent when it was empty, `newValue` when cleared."""
    records: dict[str, dict[str, Any]] = {}
    for name in sorted(set(old) | set(new)):
        if old.get(name) == new.get(name):
            continue
        record: dict[str, Any] = {}
        if old.get(name) not in (None, ""):
            record["oldValue"] = old[name]
        if new.get(name) not in (None, ""):
            record["newValue"] = new[name]
        records[name] = record
    return records


def _new_token(kind: str) -> str:
    return f"sbx-{kind}-{secrets.token_urlsafe(24)}"
