"""Plain records the core passes around: tracker-side and integration-side.

Pure: no storage or network access. Records holding secrets keep them out of `repr`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from shared.core.events import Event
from shared.core.identities import EntraIdentity

GroupStatus = Literal["unresolved", "resolved"]
GROUP_STATUSES: tuple[str, ...] = ("unresolved", "resolved")

IdentityKind = Literal["oauth", "pat", "managed_identity", "service_principal"]
IDENTITY_KINDS: tuple[str, ...] = ("oauth", "pat", "managed_identity", "service_principal")


@dataclass
class Identity:
    """The credential an integration calls Azure DevOps with.

    `oauth` and `pat` carry tokens (`access_token`, `refresh_token`); `managed_identity` and
    `service_principal` carry only `entra`, the non-secret description of an app-only identity
    (`access_token` is empty: their tokens are fetched at run time and never stored).
    `expires_at` is unix seconds (None: unknown / never). `status` is "valid" or "invalid"
    (a refresh was refused); `problem` says why.
    """

    kind: IdentityKind
    access_token: str
    refresh_token: str | None = None
    expires_at: float | None = None
    status: str = "valid"
    problem: str | None = None
    entra: EntraIdentity | None = None

    def __repr__(self) -> str:
        return f"Identity(kind={self.kind!r}, expires_at={self.expires_at!r}, status={self.status!r})"

    def expires_within(self, seconds: float, *, now: float | None = None) -> bool:
        if self.kind != "oauth" or self.expires_at is None:
            return False
        return self.expires_at - (time.time() if now is None else now) <= seconds


@dataclass
class Integration:
    """One Azure DevOps organization (account/collection) installed in the bundle.

    `deployment` is "services" (Azure DevOps Services) or "server" (an Azure DevOps Server
    collection), as the collection's connectionData reported at install; "" for integrations
    installed before it was recorded (then the organization URL decides).
    """

    account_id: str
    account_name: str
    domain_name: str
    status: str = "active"
    subscription_id: str | None = None
    secret_hash: str | None = None
    subscription_status: str | None = None
    last_checked: float | None = None
    last_delivery: float | None = None
    problem: str | None = None
    # Reconciliation: work items changed after `last_reconciled` are read again; `repaired` counts the
    # links the last pass brought back in sync.
    last_reconciled: float | None = None
    repaired: int = 0
    deployment: str = ""
    # While a hook is replaced, the hashes of other secrets still (or already) accepted, each until a
    # time (unix seconds): see `shared.core.overlap`.
    overlap_secrets: dict[str, float] = field(default_factory=dict)
    # Replaced hooks still running until they are deleted, each with the time it may go (unix seconds).
    retired_hooks: dict[str, float] = field(default_factory=dict)
    # The second service hook, `workitem.commented` (only while some organization syncs comments).
    comment_subscription_id: str | None = None
    comment_secret_hash: str | None = None
    comment_subscription_status: str | None = None

    def __repr__(self) -> str:
        return f"Integration(account_id={self.account_id!r}, status={self.status!r})"


@dataclass
class OrgLink:
    """The link of a tracker organization to an integration, with its sync config."""

    account_id: str
    org_id: str
    status: str = "active"
    config: dict[str, Any] = field(default_factory=dict)

    def flag(self, name: str) -> bool:
        return bool(self.config.get(name))


@dataclass
class User:
    org_id: str
    user_id: str
    emails: list[str] = field(default_factory=list)
    projects: list[str] = field(default_factory=list)


@dataclass
class Group:
    """A tracker issue. `assignment_source` / `status_source` name the integration an inbound change
    came from (None: the tracker), so outbound sync never echoes a change back to where it came from."""

    org_id: str
    group_id: str
    project_id: str
    title: str
    status: str = "unresolved"
    assignee: str | None = None
    assignment_source: str | None = None
    status_source: str | None = None
    version: int = 0


@dataclass
class Link:
    """A group linked to an Azure DevOps work item (`key` is the work item id as a string)."""

    org_id: str
    group_id: str
    account_id: str
    key: str
    url: str = ""
    title: str = ""
    description: str = ""
    display_name: str = ""
    project_id: str | None = None
    work_item_type: str | None = None
    # The newest revision (and its delivery) applied per synced field: older deliveries of a field
    # change nothing, and the same delivery twice changes nothing the second time.
    state_rev: int = 0
    state_delivery: str = ""
    assignee_rev: int = 0
    assignee_delivery: str = ""
    # The field values the work item had at those revisions, as far as the bundle knows (None: unknown).
    state_value: str | None = None
    assignee_value: str | None = None


@dataclass
class Activity:
    """One entry of a group's history: what changed, from where, and why."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0


@dataclass
class Repository:
    org_id: str
    repo_id: str
    name: str
    provider: str
    external_id: str
    config: dict[str, Any] = field(default_factory=dict)
    integration_id: str | None = None
    status: str = "active"


@dataclass
class Push:
    """Outbound sync of one kind of change ("status" or "assignee") to one linked work item.

    `pushed` is the group version last pushed (a message for an older version is a no-op). While a
    push is in flight it holds a lease (`lease` token until `lease_until`), and records the work item
    revision its write is conditional on (`base_rev`) and the value it writes (`planned`), so the
    service hook of that write is recognised as the bundle's own even before the push is recorded.
    """

    account_id: str
    key: str
    kind: str
    pushed: int = 0
    lease: str | None = None
    lease_until: float = 0.0
    base_rev: int = 0
    planned: str | None = None

    def held(self, now: float) -> bool:
        return bool(self.lease) and self.lease_until > now


@dataclass
class Creation:
    """A claim on creating the work item of one group in one integration.

    `attempted` is set before Azure DevOps is asked to create it, `key` once it answered: a retry
    after an attempt with no key looks for the work item by its marker instead of creating another.
    """

    account_id: str
    started: float
    attempted: bool = False
    key: str | None = None


@dataclass
class Comment:
    """A group comment: written in the tracker (`origin` "tracker") or brought in from Azure DevOps
    ("azure_devops", then `account_id`, `key` and `ado_comment_id` say where). `version` grows with
    every change, `ado_version` is the Azure DevOps comment version an inbound comment was last read at."""

    comment_id: str
    body: str
    author_name: str = ""
    author_email: str | None = None
    origin: str = "tracker"
    version: int = 1
    deleted: bool = False
    created: float = 0.0
    updated: float = 0.0
    account_id: str | None = None
    key: str | None = None
    ado_comment_id: int | None = None
    ado_version: int = 0


@dataclass
class CommentTarget:
    """A tracker comment's copy on one linked work item.

    `state`: "new" (never posted), "pending" (a create was sent and its comment id is not known yet),
    "posted" (`ado_comment_id` holds text of `version`) or "deleted". `version` is the comment version
    last written (or given up on). While a push works on it, it holds a lease; a create records when
    it began (`started`), which version it posts (`planned`) and the mark of that text (`mark`), so a
    retry finds the comment an interrupted attempt may have created instead of posting it twice.
    """

    account_id: str
    key: str
    comment_id: str
    state: str = "new"
    ado_comment_id: int | None = None
    version: int = 0
    lease: str | None = None
    lease_until: float = 0.0
    started: float = 0.0
    planned: int = 0
    mark: str = ""
    problem: str | None = None

    def held(self, now: float) -> bool:
        return bool(self.lease) and self.lease_until > now


@dataclass(frozen=True)
class CommentRef:
    """An Azure DevOps comment known to a group: one the bundle posted (`origin` "tracker") or one it
    brought in ("azure_devops"), with the group comment it belongs to."""

    account_id: str
    key: str
    ado_comment_id: int
    comment_id: str
    origin: str


@dataclass
class GroupState:
    """A group with its links, pushes and creation claims, read in one query (etags kept per row)."""

    group: Group
    links: dict[tuple[str, str], Link]
    etags: dict[str, str]
    pushes: dict[tuple[str, str, str], Push] = field(default_factory=dict)
    creations: dict[str, Creation] = field(default_factory=dict)
    # Comment rows, read only when asked for (`GroupStore.read(..., rows=, ranges=)`).
    comments: dict[str, Comment] = field(default_factory=dict)
    comment_targets: dict[tuple[str, str, str], CommentTarget] = field(default_factory=dict)
    comment_refs: dict[tuple[str, str, int], CommentRef] = field(default_factory=dict)


@dataclass
class GroupChange:
    """What a read-modify-write of a group decided: the new group (or None), changed rows, activity."""

    group: Group | None = None
    links: list[Link] = field(default_factory=list)
    activity: list[Activity] = field(default_factory=list)
    pushes: list[Push] = field(default_factory=list)
    creations: list[Creation] = field(default_factory=list)
    ended_creations: list[str] = field(default_factory=list)
    # Events for the tracker, written in the same transaction (an outbox the relay delivers from).
    events: list[Event] = field(default_factory=list)
    # Links removed, as (account id, work item id): the link row and its push rows are deleted.
    unlinked: list[tuple[str, str]] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)
    comment_targets: list[CommentTarget] = field(default_factory=list)
    comment_refs: list[CommentRef] = field(default_factory=list)

    def __bool__(self) -> bool:
        return (self.group is not None or bool(self.links) or bool(self.activity) or bool(self.pushes)
                or bool(self.creations) or bool(self.ended_creations) or bool(self.events)
                or bool(self.unlinked) or bool(self.comments) or bool(self.comment_targets)
                or bool(self.comment_refs))


@dataclass
class IntegrationState:
    """An integration with its organization links, read in one query; the etag for conditional writes."""

    integration: Integration | None
    links: list[OrgLink] = field(default_factory=list)
    etag: str | None = None

    def org_link(self, org_id: str) -> OrgLink | None:
        return next((link for link in self.links if link.org_id == org_id), None)
