"""Records the sandbox Azure DevOps keeps in memory, and the fixed process template.

Pure: no network or storage access. The `State` class in `state.py` owns and mutates these.
"""

from __future__ import annotations

import base64
import itertools
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

# https://learn.microsoft.com/rest/api/azure/devops/wit/work-item-types/list
WORK_ITEM_TYPES: dict[str, str] = {
    "Bug": "Microsoft.VSTS.WorkItemTypes.Bug",
    "Issue": "Microsoft.VSTS.WorkItemTypes.Issue",
    "Task": "Microsoft.VSTS.WorkItemTypes.Task",
    "User Story": "Microsoft.VSTS.WorkItemTypes.UserStory",
}

# (name, referenceName, default type, member types)
CATEGORIES: list[tuple[str, str, str, list[str]]] = [
    ("Bug Category", "Microsoft.BugCategory", "Bug", ["Bug"]),
    ("Issue Category", "Microsoft.IssueCategory", "Issue", ["Issue"]),
    ("Requirement Category", "Microsoft.RequirementCategory", "User Story", ["User Story"]),
    ("Task Category", "Microsoft.TaskCategory", "Task", ["Task"]),
]

# https://learn.microsoft.com/rest/api/azure/devops/wit/work-item-type-states/list
DEFAULT_STATES: list[dict[str, str]] = [
    {"name": "New", "color": "b2b2b2", "category": "Proposed"},
    {"name": "Active", "color": "007acc", "category": "InProgress"},
    {"name": "Resolved", "color": "ff9d00", "category": "Resolved"},
    {"name": "Closed", "color": "339933", "category": "Completed"},
    {"name": "Removed", "color": "ffffff", "category": "Removed"},
]

REASONS = {"New": "New", "Active": "Activated", "Resolved": "Fixed", "Closed": "Verified", "Removed": "Removed"}

FIELD_NAMES = {
    "System.Title": "Title",
    "System.Description": "Description",
    "System.AssignedTo": "Assigned To",
    "System.State": "State",
    "System.AreaPath": "Area Path",
    "System.IterationPath": "Iteration Path",
    "System.Tags": "Tags",
    "Microsoft.VSTS.TCM.ReproSteps": "Repro Steps",
    "Microsoft.VSTS.Common.Priority": "Priority",
    "Microsoft.VSTS.Common.Severity": "Severity",
}

EVENT_TYPES = ("workitem.created", "workitem.updated", "workitem.deleted", "workitem.restored", "workitem.commented")
ACTIVE_STATUSES = ("enabled", "onProbation")
SUBSCRIPTION_STATUSES = ("enabled", "onProbation", "disabledByUser", "disabledBySystem", "disabledByInactiveIdentity")


def now_iso() -> str:
    """The current UTC time as ADO writes it (milliseconds, `Z`)."""
    moment = datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def field_display_name(reference: str) -> str:
    return FIELD_NAMES.get(reference, reference.rsplit(".", 1)[-1])


@dataclass
class User:
    display_name: str
    email: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    account: str = ""  # `DOMAIN\\user` on Azure DevOps Server

    @property
    def unique_name(self) -> str:
        return self.account or self.email

    @property
    def unique(self) -> str:
        """`Display Name <email>` (Server: `Display Name <DOMAIN\\user>`): the resourceVersion 1.0 identity string."""
        return f"{self.display_name} <{self.unique_name}>" if self.unique_name else self.display_name

    @property
    def descriptor(self) -> str:
        """`aad.` subject descriptor (Services), `win.` for a Server domain account."""
        prefix = "win." if self.account else "aad."
        return prefix + base64.urlsafe_b64encode(self.id.encode()).decode().rstrip("=")

    def identity_ref(self, base_url: str) -> dict[str, Any]:
        avatar = f"{base_url}_apis/GraphProfile/MemberAvatars/{self.descriptor}"
        return {
            "displayName": self.display_name,
            "name": self.unique,
            "url": f"{base_url}_apis/Identities/{self.id}",
            "imageUrl": f"{base_url}_api/_common/identityImage?id={self.id}",
            "descriptor": self.descriptor,
            "_links": {"avatar": {"href": avatar}},
            "uniqueName": self.unique_name,
            "id": self.id,
        }

    def ims_identity(self, domain: str) -> dict[str, Any]:
        """The identities (IMS) API's view: Server splits `Domain` and `Account`; Services has the e-mail as account.

        https://learn.microsoft.com/rest/api/azure/devops/ims/identities/read-identities?view=azure-devops-server-rest-7.0
        """
        account_domain, _, account = self.account.rpartition("\\") if self.account else (domain, "", self.email)

        def text(value: str) -> dict[str, str]:
            return {"$type": "System.String", "$value": value}

        return {
            "id": self.id,
            "descriptor": ("System.Security.Principal.WindowsIdentity;" if self.account
                           else "Microsoft.IdentityModel.Claims.ClaimsIdentity;") + self.id,
            "subjectDescriptor": self.descriptor,
            "providerDisplayName": self.display_name,
            "isActive": True,
            "isContainer": False,
            "members": [],
            "memberOf": [],
            "properties": {"SchemaClassName": text("User"), "Domain": text(account_domain), "Account": text(account),
                           "Mail": text(self.email)},
            "resourceVersion": 2,
            "metaTypeId": 0,
        }

    def graph_user(self, base_url: str) -> dict[str, Any]:
        return {
            "subjectKind": "user",
            "descriptor": self.descriptor,
            "displayName": self.display_name,
            "mailAddress": self.email,
            "principalName": self.email or self.display_name,
            "origin": "aad",
            "originId": self.id,
            "domain": "sandbox",
            "url": f"{base_url}_apis/Graph/Users/{self.descriptor}",
        }


_node_ids = itertools.count(100)


@dataclass
class Node:
    """A classification node (area or iteration); the root's name is the project's."""

    name: str
    structure: str  # "area" | "iteration"
    identifier: str
    id: int = field(default_factory=lambda: next(_node_ids))
    children: list[Node] = field(default_factory=list)
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Project:
    id: str
    name: str
    revision: int = 1
    areas: Node = field(default_factory=lambda: Node("", "area", ""))
    iterations: Node = field(default_factory=lambda: Node("", "iteration", ""))


@dataclass
class Repository:
    id: str
    name: str
    project_id: str
    accessible: bool = True


@dataclass
class CommentVersion:
    version: int
    text: str
    modified_by: User
    modified_date: str
    is_deleted: bool = False


@dataclass
class Comment:
    """A work item comment (Comments API v3/v4); `versions` keeps every edit, the last one is current."""

    id: int
    work_item_id: int
    created_by: User
    created_date: str
    format: str
    versions: list[CommentVersion]

    @property
    def current(self) -> CommentVersion:
        return self.versions[-1]


@dataclass
class WorkItem:
    id: int
    project_id: str
    rev: int
    fields: dict[str, Any]
    relations: list[dict[str, Any]] = field(default_factory=list)
    multiline: dict[str, str] = field(default_factory=dict)
    comments: list[Comment] = field(default_factory=list)


@dataclass
class Subscription:
    """A service-hook subscription as stored (the password unmasked)."""

    data: dict[str, Any]
    failures: int = 0
    notifications: int = 0


@dataclass
class Token:
    org: str
    expires_at: float


@dataclass
class Org:
    name: str
    account_id: str
    integration: User
    projects: dict[str, Project] = field(default_factory=dict)
    users: list[User] = field(default_factory=list)
    repositories: dict[str, Repository] = field(default_factory=dict)
    work_items: dict[int, WorkItem] = field(default_factory=dict)
    subscriptions: dict[str, Subscription] = field(default_factory=dict)
    pats: set[str] = field(default_factory=set)
    server: bool = False  # an Azure DevOps Server collection: /tfs/{name}/, PATs only, DOMAIN\\user identities
    server_id: str = ""
    server_domain: str = ""
    required_fields: dict[str, list[str]] = field(default_factory=dict)
    allowed_values: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # project id -> field -> values
    states: dict[tuple[str, str], list[dict[str, str]]] = field(default_factory=dict)
    git_unauthorized: bool = False
    next_id: int = 1
    next_comment_id: int = 1000
    watermark: int = 0

    @property
    def pat_only(self) -> bool:
        return self.server

    @property
    def host_account_id(self) -> str:
        """The `account.id` of events: on ADO Services it differs from `collection.id`."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, self.account_id))

    def project(self, ref: str) -> Project | None:
        """A project by id or (case-insensitive) name."""
        found = self.projects.get(ref.lower())
        if found:
            return found
        return next((p for p in self.projects.values() if p.name.lower() == ref.lower()), None)


def later_than(previous: str) -> str:
    """`now_iso()`, or 1 ms after `previous` when the clock has not moved past it (dates only increase)."""
    now = now_iso()
    if not previous or now > previous:
        return now
    try:
        moment = datetime.strptime(previous, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return now
    moment += timedelta(milliseconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
