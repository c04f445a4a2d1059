"""The bundle's state in Azure Table Storage: narrow, domain-shaped verbs over `azure-data-tables`.

Key design (PartitionKey / RowKey), chosen so every hot path is a point read or one partition:

| table            | PartitionKey              | RowKey                              | holds                      |
|------------------|---------------------------|-------------------------------------|----------------------------|
| Integrations     | account id                | `integration`                       | the integration            |
|                  | account id                | `identity`                          | tokens (never returned)    |
|                  | account id                | `org|<org id>`                      | organization link + config |
| Groups           | `<org id>|<group id>`     | `group`                             | status, assignee, project  |
|                  | `<org id>|<group id>`     | `link|<account id>|<work item id>`  | link + last applied revs   |
|                  | `<org id>|<group id>`     | `activity|<time ns>|<nonce>`        | activity, oldest first     |
| WorkItemLinks    | `<account id>|<wi id>`    | `<org id>|<group id>`               | reverse index of links     |
| Users            | org id                    | `user|<user id>`                    | e-mails, projects          |
|                  | org id                    | `email|<e-mail>|<user id>`          | verified e-mail index      |
| Organizations    | org id                    | `org`                               | tracker organization       |
| Repositories     | org id                    | repo id                             | repository                 |
| Cache            | account id                | `<kind>|<key>`                      | ADO lookups with expiry    |
|                  | `~kickoff`                | six-hour slot start (unix seconds)  | kickoff progress per slot  |
| OutboundPushes   | `<org id>|<group id>`     | `<account id>|<wi id>|<kind>`       | pushed version + lease     |
| Creations        | account id                | `<org id>|<group id>`               | work item being created    |

- The webhook reads the integration partition (integration + org links) in one query, the linked
  groups of a work item in one WorkItemLinks partition, and each group with its links in one query.
- A group, its links and its activity share a partition, so a change and its activity are written
  in one transaction: no half-applied change, and ETags guard every read-modify-write.
- A user and its e-mail index rows share a partition and are replaced in one transaction.
- An outbound push (tracker → ADO) of one kind of change for one link holds a lease on its
  OutboundPushes row and records the group version it pushed, so pushes never overlap and a late
  message never overwrites a newer state.
- Creating a work item for a group holds a Creations row: a concurrent create for the same group is
  refused, and the id of a work item created but not yet linked is kept, so a retry links it
  instead of creating a duplicate.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from dataclasses import replace as replace_fields
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableEntity, TableTransactionError, UpdateMode

from shared import storage
from shared.core.errors import Conflict, TransientError
from shared.keys import check_id, escape, join
from shared.models import (
    Activity,
    Group,
    GroupChange,
    GroupState,
    Identity,
    Integration,
    Link,
    OrgLink,
    Repository,
    User,
)

log = logging.getLogger(__name__)

INTEGRATIONS = "Integrations"
GROUPS = "Groups"
WORK_ITEM_LINKS = "WorkItemLinks"
USERS = "Users"
ORGANIZATIONS = "Organizations"
REPOSITORIES = "Repositories"
CACHE = "Cache"

RK_INTEGRATION = "integration"
RK_IDENTITY = "identity"
RK_GROUP = "group"
ORG_PREFIX = "org|"
LINK_PREFIX = "link|"
ACTIVITY_PREFIX = "activity|"
MAX_ATTEMPTS = 60
MAX_TEXT = 8000  # characters of free text kept on a row (a property holds at most 32K)


def _table(name: str) -> TableClient:
    return storage.table(name)


def _etag(entity: TableEntity) -> str:
    return str(entity.metadata["etag"])


def _prefix_range(prefix: str) -> tuple[str, str]:
    """RowKey bounds of every key starting with `prefix` (which ends with the `|` separator)."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _query(table: str, flt: str, **params: str) -> Iterator[TableEntity]:
    with storage.translated():
        yield from _table(table).query_entities(flt, parameters=params)


def _get(table: str, pk: str, rk: str) -> TableEntity | None:
    with storage.translated():
        try:
            return _table(table).get_entity(pk, rk)
        except ResourceNotFoundError:
            return None


def _upsert(table: str, entity: dict[str, Any]) -> None:
    with storage.translated():
        _table(table).upsert_entity(entity, mode=UpdateMode.REPLACE)


def _loads(text: Any, default: Any) -> Any:
    if not isinstance(text, str) or not text:
        return default
    return json.loads(text)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# --- integrations -------------------------------------------------------------------------------


def _integration_entity(item: Integration) -> dict[str, Any]:
    return {
        "PartitionKey": item.account_id,
        "RowKey": RK_INTEGRATION,
        "account_name": item.account_name,
        "domain_name": item.domain_name,
        "status": item.status,
        "subscription_id": item.subscription_id,
        "secret_hash": item.secret_hash,
        "subscription_status": item.subscription_status,
        "last_checked": item.last_checked,
        "last_delivery": item.last_delivery,
        "problem": item.problem,
    }


def _integration(entity: TableEntity) -> Integration:
    return Integration(
        account_id=entity["PartitionKey"],
        account_name=entity.get("account_name", ""),
        domain_name=entity.get("domain_name", ""),
        status=entity.get("status", "active"),
        subscription_id=entity.get("subscription_id"),
        secret_hash=entity.get("secret_hash"),
        subscription_status=entity.get("subscription_status"),
        last_checked=entity.get("last_checked"),
        last_delivery=entity.get("last_delivery"),
        problem=entity.get("problem"),
    )


def _org_link_entity(link: OrgLink) -> dict[str, Any]:
    return {
        "PartitionKey": link.account_id,
        "RowKey": ORG_PREFIX + link.org_id,
        "status": link.status,
        "config": _dumps(link.config),
    }


def _org_link(entity: TableEntity) -> OrgLink:
    return OrgLink(
        account_id=entity["PartitionKey"],
        org_id=entity["RowKey"][len(ORG_PREFIX) :],
        status=entity.get("status", "active"),
        config=_loads(entity.get("config"), {}),
    )


@dataclass
class IntegrationState:
    """An integration with its organization links, read in one query; etags for conditional writes."""

    integration: Integration | None
    links: list[OrgLink] = field(default_factory=list)
    etag: str | None = None


def read_integration(account_id: str) -> IntegrationState:
    """The integration and its organization links (one single-partition query; never the tokens)."""
    check_id(account_id, "account_id")
    state = IntegrationState(integration=None)
    for entity in _query(INTEGRATIONS, "PartitionKey eq @pk", pk=account_id):
        row = entity["RowKey"]
        if row == RK_INTEGRATION:
            state.integration = _integration(entity)
            state.etag = _etag(entity)
        elif row.startswith(ORG_PREFIX):
            state.links.append(_org_link(entity))
    return state


def get_integration(account_id: str) -> Integration | None:
    entity = _get(INTEGRATIONS, check_id(account_id, "account_id"), RK_INTEGRATION)
    return _integration(entity) if entity else None


def save_integration(item: Integration) -> None:
    _upsert(INTEGRATIONS, _integration_entity(item))


def update_integration(account_id: str, mutate: Callable[[Integration], Integration | None]) -> Integration | None:
    """Read-modify-write of an integration under its ETag. `mutate` returns None for "no change"."""
    table = INTEGRATIONS
    for _ in range(MAX_ATTEMPTS):
        entity = _get(table, account_id, RK_INTEGRATION)
        if entity is None:
            return None
        changed = mutate(_integration(entity))
        if changed is None:
            return _integration(entity)
        try:
            with storage.translated():
                _table(table).update_entity(
                    _integration_entity(changed),
                    mode=UpdateMode.REPLACE,
                    etag=_etag(entity),
                    match_condition=MatchConditions.IfNotModified,
                )
            return changed
        except ResourceModifiedError:
            continue
    raise Conflict(f"integration {account_id} changed concurrently too often")


def save_org_link(link: OrgLink) -> None:
    _upsert(INTEGRATIONS, _org_link_entity(link))


def get_org_link(account_id: str, org_id: str) -> OrgLink | None:
    entity = _get(INTEGRATIONS, account_id, ORG_PREFIX + org_id)
    return _org_link(entity) if entity else None


# --- identities (tokens) -----------------------------------------------------------------------


def _identity_entity(account_id: str, identity: Identity) -> dict[str, Any]:
    return {
        "PartitionKey": account_id,
        "RowKey": RK_IDENTITY,
        "kind": identity.kind,
        "access_token": identity.access_token,
        "refresh_token": identity.refresh_token,
        "expires_at": identity.expires_at,
        "status": identity.status,
        "problem": identity.problem,
    }


def load_identity(account_id: str) -> tuple[Identity, str] | None:
    """The integration's identity and its ETag, or None."""
    entity = _get(INTEGRATIONS, account_id, RK_IDENTITY)
    if entity is None:
        return None
    identity = Identity(
        kind=entity.get("kind", "oauth"),
        access_token=entity.get("access_token", ""),
        refresh_token=entity.get("refresh_token"),
        expires_at=entity.get("expires_at"),
        status=entity.get("status", "valid"),
        problem=entity.get("problem"),
    )
    return identity, _etag(entity)


def save_identity(account_id: str, identity: Identity, etag: str | None = None) -> bool:
    """Store tokens. With `etag`, only if nobody wrote since; returns False when someone did."""
    entity = _identity_entity(account_id, identity)
    if etag is None:
        _upsert(INTEGRATIONS, entity)
        return True
    try:
        with storage.translated():
            _table(INTEGRATIONS).update_entity(
                entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        return True
    except (ResourceModifiedError, ResourceNotFoundError):
        return False


class IdentityStore:
    """The `IdentityRepo` the ADO auth uses: the two functions above, as an object."""

    def load_identity(self, account_id: str) -> tuple[Identity, str] | None:
        return load_identity(account_id)

    def save_identity(self, account_id: str, identity: Identity, etag: str) -> bool:
        return save_identity(account_id, identity, etag)


# --- organizations, users ----------------------------------------------------------------------


def ensure_organization(org_id: str) -> None:
    _upsert(ORGANIZATIONS, {"PartitionKey": org_id, "RowKey": "org", "org_id": org_id})


def _email_row(email: str, user_id: str) -> str:
    return join("email", escape(email.lower()), user_id)


def get_user(org_id: str, user_id: str) -> User | None:
    entity = _get(USERS, org_id, join("user", user_id))
    if entity is None:
        return None
    return User(
        org_id=org_id,
        user_id=user_id,
        emails=_loads(entity.get("emails"), []),
        projects=_loads(entity.get("projects"), []),
    )


def put_user(user: User) -> None:
    """Create or replace a user and its e-mail index in one transaction."""
    ensure_organization(user.org_id)
    for _ in range(MAX_ATTEMPTS):
        existing = _get(USERS, user.org_id, join("user", user.user_id))
        old_rows = set()
        if existing is not None:
            old_rows = {_email_row(e, user.user_id) for e in _loads(existing.get("emails"), [])}
        new_rows = {_email_row(e, user.user_id) for e in user.emails}
        entity = {
            "PartitionKey": user.org_id,
            "RowKey": join("user", user.user_id),
            "emails": _dumps(user.emails),
            "projects": _dumps(user.projects),
        }
        ops: list[Any] = []
        if existing is None:
            ops.append(("create", entity))
        else:
            ops.append(("update", entity, {"mode": UpdateMode.REPLACE, "etag": _etag(existing),
                                           "match_condition": MatchConditions.IfNotModified}))
        ops += [("delete", {"PartitionKey": user.org_id, "RowKey": row}) for row in old_rows - new_rows]
        ops += [("upsert", {"PartitionKey": user.org_id, "RowKey": row, "user_id": user.user_id,
                            "projects": _dumps(user.projects)}) for row in new_rows]
        if _transact(USERS, ops):
            return
    raise Conflict(f"user {user.user_id} changed concurrently too often")


def members_with_email(org_id: str, email: str) -> list[tuple[str, list[str]]]:
    """(user id, projects) of the users with this verified e-mail, from the index alone (one query)."""
    low, high = _prefix_range(join("email", escape(email.lower()), ""))
    rows = _query(USERS, "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                  pk=org_id, low=low, high=high)
    return [(row["user_id"], _loads(row.get("projects"), [])) for row in rows]


# --- groups, links, activity -------------------------------------------------------------------


def _group_pk(org_id: str, group_id: str) -> str:
    return join(org_id, group_id)


def _group_entity(group: Group) -> dict[str, Any]:
    return {
        "PartitionKey": _group_pk(group.org_id, group.group_id),
        "RowKey": RK_GROUP,
        "project_id": group.project_id,
        "title": group.title,
        "status": group.status,
        "assignee": group.assignee,
        "assignment_source": group.assignment_source,
        "status_source": group.status_source,
        "version": group.version,
    }


def _group(org_id: str, group_id: str, entity: TableEntity) -> Group:
    return Group(
        org_id=org_id,
        group_id=group_id,
        project_id=entity.get("project_id", ""),
        title=entity.get("title", ""),
        status=entity.get("status", "unresolved"),
        assignee=entity.get("assignee"),
        assignment_source=entity.get("assignment_source"),
        status_source=entity.get("status_source"),
        version=int(entity.get("version", 0)),
    )


def _link_entity(link: Link) -> dict[str, Any]:
    return {
        "PartitionKey": _group_pk(link.org_id, link.group_id),
        "RowKey": join("link", link.account_id, link.key),
        "url": link.url[:MAX_TEXT],
        "title": link.title[:MAX_TEXT],
        # A copy for display only: cut so a long work item description always fits the row.
        "description": link.description[:MAX_TEXT],
        "display_name": link.display_name[:MAX_TEXT],
        "project_id": link.project_id,
        "work_item_type": link.work_item_type,
        "state_rev": link.state_rev,
        "state_delivery": link.state_delivery,
        "assignee_rev": link.assignee_rev,
        "assignee_delivery": link.assignee_delivery,
    }


def _link(org_id: str, group_id: str, entity: TableEntity) -> Link:
    _, account_id, key = entity["RowKey"].split("|", 2)
    return Link(
        org_id=org_id,
        group_id=group_id,
        account_id=account_id,
        key=key,
        url=entity.get("url", ""),
        title=entity.get("title", ""),
        description=entity.get("description", ""),
        display_name=entity.get("display_name", ""),
        project_id=entity.get("project_id"),
        work_item_type=entity.get("work_item_type"),
        state_rev=int(entity.get("state_rev", 0)),
        state_delivery=entity.get("state_delivery", ""),
        assignee_rev=int(entity.get("assignee_rev", 0)),
        assignee_delivery=entity.get("assignee_delivery", ""),
    )


def _activity_entity(org_id: str, group_id: str, activity: Activity) -> dict[str, Any]:
    created = activity.created or time.time()
    row = join("activity", f"{int(created * 1e9):020d}", uuid.uuid4().hex[:8])
    return {
        "PartitionKey": _group_pk(org_id, group_id),
        "RowKey": row,
        "kind": activity.kind,
        "data": _dumps(activity.data),
        "created": created,
    }


def read_group(org_id: str, group_id: str) -> GroupState | None:
    """The group row and its link rows, in one single-partition query (activity excluded)."""
    pk = _group_pk(org_id, group_id)
    group: Group | None = None
    links: dict[tuple[str, str], Link] = {}
    etags: dict[str, str] = {}
    for entity in _query(GROUPS, "PartitionKey eq @pk and RowKey ge @low", pk=pk, low=RK_GROUP):
        etags[entity["RowKey"]] = _etag(entity)
        if entity["RowKey"] == RK_GROUP:
            group = _group(org_id, group_id, entity)
        elif entity["RowKey"].startswith(LINK_PREFIX):
            link = _link(org_id, group_id, entity)
            links[(link.account_id, link.key)] = link
    if group is None:
        return None
    return GroupState(group=group, links=links, etags=etags)


def get_group(org_id: str, group_id: str) -> Group | None:
    entity = _get(GROUPS, _group_pk(org_id, group_id), RK_GROUP)
    return _group(org_id, group_id, entity) if entity else None


def list_activity(org_id: str, group_id: str, limit: int = 200) -> list[Activity]:
    """The group's activity, oldest first (at most `limit` newest entries)."""
    low, high = _prefix_range(ACTIVITY_PREFIX)
    rows = _query(GROUPS, "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                  pk=_group_pk(org_id, group_id), low=low, high=high)
    items = [Activity(kind=r.get("kind", ""), data=_loads(r.get("data"), {}), created=r.get("created", 0.0))
             for r in rows]
    return items[-limit:]


def put_group(group: Group) -> Group:
    """Create or replace a group's tracker fields (keeps its links, activity and version counter)."""
    ensure_organization(group.org_id)

    def replace(state: GroupState | None) -> GroupChange:
        version = state.group.version + 1 if state else 1
        # An assignee set from the tracker is no longer the integration's doing.
        same_assignee = state is not None and state.group.assignee == group.assignee
        source = state.group.assignment_source if state and same_assignee else None
        same_status = state is not None and state.group.status == group.status
        status_source = state.group.status_source if state and same_status else None
        return GroupChange(group=replace_fields(group, version=version, assignment_source=source,
                                                status_source=status_source))

    state = change_group(group.org_id, group.group_id, replace, create=True)
    assert state is not None
    return state.group


def change_group(
    org_id: str,
    group_id: str,
    decide: Callable[[GroupState | None], GroupChange],
    *,
    create: bool = False,
    known: GroupState | None = None,
) -> GroupState | None:
    """Apply `decide` to the current group atomically, retrying on concurrent writes.

    `decide` is called with the current state (None when the group does not exist; then it is only
    called when `create` is set) and must be pure: it may run more than once. Returns the new state,
    or None when the group does not exist and `create` is not set. `known` is a state the caller
    has just read (with its etags); the first attempt uses it instead of reading again.
    """
    pk = _group_pk(org_id, group_id)
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0, min(0.2, 0.005 * attempt)))
        state = known if known is not None and attempt == 0 else read_group(org_id, group_id)
        if state is None and not create:
            return None
        change = decide(state)
        if not change:
            return state
        ops: list[Any] = []
        if change.group is not None:
            entity = _group_entity(change.group)
            if state is None:
                ops.append(("create", entity))
            else:
                ops.append(("update", entity, _if_match(state.etags[RK_GROUP])))
        for link in change.links:
            entity = _link_entity(link)
            etag = state.etags.get(entity["RowKey"]) if state else None
            ops.append(("update", entity, _if_match(etag)) if etag else ("create", entity))
        if change.group is None and state is not None:
            # Touching nothing on the group row would let two writers interleave: guard it.
            ops.append(("update", _group_entity(state.group), _if_match(state.etags[RK_GROUP])))
        ops += [("create", _activity_entity(org_id, group_id, a)) for a in change.activity]
        if _transact(GROUPS, ops):
            links = dict(state.links) if state else {}
            links.update({(link.account_id, link.key): link for link in change.links})
            group = change.group or (state.group if state else None)
            assert group is not None
            return GroupState(group=group, links=links, etags={})
        log.info("store.group.retry", extra={"partition": pk})
    raise Conflict(f"group {group_id} changed concurrently too often")


def _if_match(etag: str | None) -> dict[str, Any]:
    return {"mode": UpdateMode.REPLACE, "etag": etag, "match_condition": MatchConditions.IfNotModified}


def _transact(table: str, ops: list[Any]) -> bool:
    """Submit one all-or-nothing transaction; False when an ETag or existence check lost a race."""
    try:
        with storage.translated():
            _table(table).submit_transaction(ops)
        return True
    except TableTransactionError as error:
        if error.status_code in (404, 409, 412) or getattr(error, "error_code", None) in (
            "UpdateConditionNotSatisfied", "EntityAlreadyExists", "ResourceNotFound"
        ):
            return False
        raise
    except (ResourceModifiedError, ResourceExistsError):
        return False
    except HttpResponseError as error:
        if error.status_code in (404, 409, 412):
            return False
        raise


def add_link(link: Link) -> None:
    """Link a group to a work item: reverse index first, so a failure leaves at most a dangling index row."""
    _upsert(WORK_ITEM_LINKS, {
        "PartitionKey": join(link.account_id, link.key),
        "RowKey": join(link.org_id, link.group_id),
        "org_id": link.org_id,
        "group_id": link.group_id,
    })

    def attach(state: GroupState | None) -> GroupChange:
        assert state is not None
        existing = state.links.get((link.account_id, link.key))
        if existing is not None and existing.state_rev > link.state_rev:
            link.state_rev, link.state_delivery = existing.state_rev, existing.state_delivery
        if existing is not None and existing.assignee_rev > link.assignee_rev:
            link.assignee_rev, link.assignee_delivery = existing.assignee_rev, existing.assignee_delivery
        return GroupChange(links=[link], activity=[Activity(kind="link", data={
            "account_id": link.account_id, "key": link.key, "url": link.url})])

    if change_group(link.org_id, link.group_id, attach) is None:
        raise Conflict(f"group {link.group_id} disappeared while linking")


def groups_linked_to(account_id: str, key: str) -> list[tuple[str, str]]:
    """(org id, group id) of every group linked to work item `key` of this integration."""
    rows = _query(WORK_ITEM_LINKS, "PartitionKey eq @pk", pk=join(account_id, key))
    return [(row["org_id"], row["group_id"]) for row in rows]


# --- repositories ------------------------------------------------------------------------------


def _repository(entity: TableEntity) -> Repository:
    return Repository(
        org_id=entity["PartitionKey"],
        repo_id=entity["RowKey"],
        name=entity.get("name", ""),
        provider=entity.get("provider", ""),
        external_id=entity.get("external_id", ""),
        config=_loads(entity.get("config"), {}),
        integration_id=entity.get("integration_id"),
        status=entity.get("status", "active"),
    )


def _repository_entity(repo: Repository) -> dict[str, Any]:
    return {
        "PartitionKey": repo.org_id,
        "RowKey": repo.repo_id,
        "name": repo.name,
        "provider": repo.provider,
        "external_id": repo.external_id,
        "config": _dumps(repo.config),
        "integration_id": repo.integration_id,
        "status": repo.status,
    }


def put_repository(repo: Repository) -> None:
    ensure_organization(repo.org_id)
    _upsert(REPOSITORIES, _repository_entity(repo))


def get_repository(org_id: str, repo_id: str) -> Repository | None:
    entity = _get(REPOSITORIES, org_id, repo_id)
    return _repository(entity) if entity else None


def list_repositories(org_id: str) -> list[Repository]:
    return [_repository(e) for e in _query(REPOSITORIES, "PartitionKey eq @pk", pk=org_id)]


def update_repository(
    org_id: str, repo_id: str, mutate: Callable[[Repository], Repository | None]
) -> Repository | None:
    """Read-modify-write of a repository under its ETag; `mutate` returns None for "no change"."""
    for _ in range(MAX_ATTEMPTS):
        entity = _get(REPOSITORIES, org_id, repo_id)
        if entity is None:
            return None
        changed = mutate(_repository(entity))
        if changed is None:
            return _repository(entity)
        try:
            with storage.translated():
                _table(REPOSITORIES).update_entity(
                    _repository_entity(changed), **_if_match(_etag(entity))
                )
            return changed
        except ResourceModifiedError:
            continue
    raise Conflict(f"repository {repo_id} changed concurrently too often")


# --- work item creations -------------------------------------------------------------------------

CREATIONS = "Creations"
CREATION_LEASE = 300.0  # longer than a create with all its lookups and retries can take


@dataclass
class Creation:
    """A claim on creating the work item of one group; `key` is set once Azure DevOps created it."""

    account_id: str
    row: str
    key: str | None = None


def begin_creation(account_id: str, org_id: str, group_id: str, *, now: float | None = None) -> Creation | None:
    """Claim the creation of a group's work item; None while another request holds a fresh claim."""
    now = time.time() if now is None else now
    row = join(org_id, group_id)
    entity = {"PartitionKey": account_id, "RowKey": row, "started": now}
    for _ in range(3):
        existing = _get(CREATIONS, account_id, row)
        try:
            with storage.translated():
                if existing is None:
                    _table(CREATIONS).create_entity(entity)
                    return Creation(account_id, row)
                key = existing.get("key") or None
                if key is None and now - float(existing.get("started", 0)) < CREATION_LEASE:
                    return None
                _table(CREATIONS).update_entity({**entity, "key": key}, **_if_match(_etag(existing)))
                return Creation(account_id, row, key)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            continue
    return None


def record_creation(creation: Creation, key: str) -> None:
    """Remember the created work item before linking it (a failed link is then retried, not re-created)."""
    _upsert(CREATIONS, {"PartitionKey": creation.account_id, "RowKey": creation.row, "started": time.time(),
                        "key": key})
    creation.key = key


def end_creation(creation: Creation) -> None:
    with storage.translated():
        _table(CREATIONS).delete_entity(creation.account_id, creation.row)




# --- cache of ADO lookups ----------------------------------------------------------------------


def cache_get(account_id: str, key: str, *, now: float | None = None) -> Any | None:
    """A cached value, or None when absent or expired."""
    entity = _get(CACHE, account_id, escape(key))
    if entity is None or float(entity.get("expires", 0)) <= (now or time.time()):
        return None
    return _loads(entity.get("value"), None)


def cache_put(account_id: str, key: str, value: Any, *, ttl: float) -> None:
    _upsert(CACHE, {"PartitionKey": account_id, "RowKey": escape(key), "value": _dumps(value),
                    "expires": time.time() + ttl})


def cache_put_many(account_id: str, values: dict[str, Any], *, ttl: float) -> None:
    """Cache many values of one integration in transactions of 100 (one round trip per 100)."""
    expires = time.time() + ttl
    ops: list[Any] = [("upsert", {"PartitionKey": account_id, "RowKey": escape(key), "value": _dumps(value),
                                  "expires": expires}) for key, value in values.items()]
    for start in range(0, len(ops), 100):
        with storage.translated():
            _table(CACHE).submit_transaction(ops[start:start + 100])


# --- outbound pushes (tracker → ADO) -----------------------------------------------------------

PUSHES = "OutboundPushes"
PUSH_LEASE = 180.0


@dataclass
class PushClaim:
    """A held lease on pushing one kind of change of one link; `pushed` is the version pushed before."""

    partition: str
    row: str
    token: str
    pushed: int
    etag: str | None = None


def claim_push(
    org_id: str, group_id: str, account_id: str, key: str, kind: str, *, version: int,
    lease: float = PUSH_LEASE, now: float | None = None,
) -> PushClaim | None:
    """Lease the push of `kind` for the link, or None when a version >= `version` was already pushed.

    Raises TransientError (with the lease's remaining time as `retry_after`) while another push of
    the same link and kind holds an unexpired lease.
    """
    partition, row = join(org_id, group_id), join(account_id, key, kind)
    for _ in range(MAX_ATTEMPTS):
        moment = time.time() if now is None else now
        entity = _get(PUSHES, partition, row)
        pushed = int(entity.get("pushed", 0)) if entity else 0
        if pushed >= version:
            return None
        held_until = float(entity.get("lease_until") or 0) if entity else 0.0
        if entity is not None and entity.get("lease") and held_until > moment:
            raise TransientError(f"another push of work item {key} ({kind}) is in progress",
                                 retry_after=held_until - moment)
        token = uuid.uuid4().hex
        new = {"PartitionKey": partition, "RowKey": row, "pushed": pushed, "lease": token,
               "lease_until": moment + lease}
        try:
            with storage.translated():
                if entity is None:
                    written = _table(PUSHES).create_entity(new)
                else:
                    written = _table(PUSHES).update_entity(new, **_if_match(_etag(entity)))
            etag = written.get("etag") if isinstance(written, dict) else None
            return PushClaim(partition=partition, row=row, token=token, pushed=pushed, etag=etag)
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            continue
    raise Conflict(f"push of work item {key} ({kind}) contended too often")


def finish_push(claim: PushClaim, *, version: int | None) -> None:
    """Release the lease; with `version`, record it as pushed (the recorded version never goes down).

    The first attempt writes under the claim's own etag without reading (nobody else writes a row
    whose lease is held); a lost race falls back to read-modify-write.
    """
    if claim.etag:
        new = {"PartitionKey": claim.partition, "RowKey": claim.row, "pushed": max(claim.pushed, version or 0),
               "lease": None, "lease_until": 0.0}
        try:
            with storage.translated():
                _table(PUSHES).update_entity(new, **_if_match(claim.etag))
            return
        except (ResourceModifiedError, ResourceNotFoundError):
            pass
    for _ in range(MAX_ATTEMPTS):
        entity = _get(PUSHES, claim.partition, claim.row)
        if entity is None:
            return
        mine = entity.get("lease") == claim.token
        pushed = int(entity.get("pushed", 0))
        recorded = max(pushed, version or 0)
        if not mine and recorded == pushed:
            return
        new = {"PartitionKey": claim.partition, "RowKey": claim.row, "pushed": recorded,
               "lease": None if mine else entity.get("lease"),
               "lease_until": 0.0 if mine else entity.get("lease_until")}
        try:
            with storage.translated():
                _table(PUSHES).update_entity(new, **_if_match(_etag(entity)))
            return
        except (ResourceModifiedError, ResourceNotFoundError):
            continue
    raise Conflict("outbound push record contended too often")


def pushed_version(org_id: str, group_id: str, account_id: str, key: str, kind: str) -> int:
    """The group version whose `kind` was last pushed to work item `key` (0: never)."""
    entity = _get(PUSHES, join(org_id, group_id), join(account_id, key, kind))
    return int(entity.get("pushed", 0)) if entity else 0


# --- subscription kickoff: streaming scan and per-slot progress --------------------------------

KICKOFF_PARTITION = "~kickoff"  # `~` sorts after every account id and is never one
SCAN_FIELDS = ["PartitionKey", "RowKey", "status", "subscription_id", "last_checked"]


@dataclass(frozen=True)
class KickoffProgress:
    """How far the kickoff of one six-hour slot got: the last (account id, RowKey) queued, and done."""

    account_id: str
    row_key: str
    done: bool = False


def scan_integrations(start_account: str | None = None, page_size: int = 1000) -> Iterator[TableEntity]:
    """Integration and org-link rows (only the kickoff's fields), from `start_account` on, page by page.

    Sorted by account id then RowKey, so an integration row comes right before its org links.
    """
    flt = "RowKey ne @identity"
    params = {"identity": RK_IDENTITY}
    if start_account is not None:
        flt += " and PartitionKey ge @start"
        params["start"] = start_account
    with storage.translated():
        pages = _table(INTEGRATIONS).query_entities(
            flt, parameters=params, select=SCAN_FIELDS, results_per_page=page_size
        ).by_page()
        for page in pages:
            yield from page


def get_kickoff_progress(slot: int) -> KickoffProgress | None:
    entity = _get(CACHE, KICKOFF_PARTITION, str(slot))
    if entity is None:
        return None
    return KickoffProgress(account_id=entity.get("account_id", ""), row_key=entity.get("row_key", ""),
                           done=bool(entity.get("done")))


def put_kickoff_progress(slot: int, progress: KickoffProgress) -> None:
    _upsert(CACHE, {"PartitionKey": KICKOFF_PARTITION, "RowKey": str(slot), "account_id": progress.account_id,
                    "row_key": progress.row_key, "done": progress.done})
