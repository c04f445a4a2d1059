"""Management API handlers for the tracker's records: users, groups, repositories, health.

Each handler takes the services and plain values (route ids, the parsed body) and returns a
`Reply`; validation happens before anything is written, so a rejected request changes nothing.
A tracker-side change of a group is applied with its activity in one transaction, then one
`sync-outbound` message is queued per linked work item and kind the organization link allows.
Changes that came from Azure DevOps are applied by the webhook, never through here, so they are
not echoed back.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from shared.adapters import storage
from shared.compose import Services
from shared.core import outbound, validate
from shared.core.errors import NotFound
from shared.core.keys import check_id
from shared.core.models import GROUP_STATUSES, Activity, Group, GroupChange, GroupState, Repository, User
from shared.core.reply import Reply
from shared.core.times import iso_time

REPO_STATUSES = ("active", "disabled")


def health(svc: Services) -> Reply:
    storage.ping()
    return Reply(body={"status": "ok"})


def put_user(svc: Services, org_id: str, user_id: str, body: dict[str, Any]) -> Reply:
    check_id(org_id, "org_id")
    check_id(user_id, "user_id")
    # One transaction replaces a user with its e-mail index (at most 100 operations): cap the list.
    emails = validate.text_list(body, "emails", max_items=40, max_len=320)
    if any("@" not in e for e in emails):
        raise validate.invalid("emails", "must contain e-mail addresses")
    projects = validate.text_list(body, "projects", max_items=100, max_len=128)
    for project in projects:
        check_id(project, "projects")
    user = User(org_id=org_id, user_id=user_id, emails=emails, projects=projects)
    svc.store.users.put(user)
    return Reply(body=_user_view(user))


def get_user(svc: Services, org_id: str, user_id: str) -> Reply:
    user = svc.store.users.get(check_id(org_id, "org_id"), check_id(user_id, "user_id"))
    if user is None:
        raise NotFound("User not found")
    return Reply(body=_user_view(user))


def _user_view(user: User) -> dict[str, Any]:
    return {"org_id": user.org_id, "user_id": user.user_id, "emails": user.emails, "projects": user.projects}


def put_group(svc: Services, org_id: str, group_id: str, body: dict[str, Any]) -> Reply:
    check_id(org_id, "org_id")
    check_id(group_id, "group_id")
    project_id = check_id(validate.required_text(body, "project_id"), "project_id")
    title = validate.required_text(body, "title", max_len=4000)
    status = validate.choice(body, "status", GROUP_STATUSES, required=False) or "unresolved"
    assignee = _assignee(svc, org_id, body)
    svc.store.groups.put(Group(org_id=org_id, group_id=group_id, project_id=project_id, title=title,
                               status=status, assignee=assignee))
    return get_group(svc, org_id, group_id)


def patch_group(svc: Services, org_id: str, group_id: str, body: dict[str, Any]) -> Reply:
    """A tracker-side change of status and/or assignee; queues outbound sync for linked work items."""
    check_id(org_id, "org_id")
    check_id(group_id, "group_id")
    if not body or not set(body) & {"status", "assignee"}:
        raise validate.invalid("status", "status or assignee is required")
    status = validate.choice(body, "status", GROUP_STATUSES, required=False)
    changes: dict[str, Any] = {}
    if status is not None:
        changes["status"] = status
    if "assignee" in body:
        changes["assignee"] = _assignee(svc, org_id, body)
    if change_from_tracker(svc, org_id, group_id, changes) is None:
        raise NotFound("Group not found")
    return get_group(svc, org_id, group_id)


def change_from_tracker(svc: Services, org_id: str, group_id: str, changes: dict[str, Any]
                        ) -> list[dict[str, Any]] | None:
    """Apply `changes` (status and/or assignee) and queue outbound sync; the queued messages (None: no group)."""

    def decide(state: GroupState | None) -> GroupChange:
        assert state is not None
        group, new = state.group, state.group
        activity = []
        if "status" in changes and changes["status"] != group.status:
            new = replace(new, status=changes["status"], status_source=None)
            activity.append(Activity(kind=f"set_{changes['status']}", data={"source": "tracker"}))
        if "assignee" in changes and changes["assignee"] != group.assignee:
            new = replace(new, assignee=changes["assignee"], assignment_source=None)
            activity.append(Activity(kind="assigned" if changes["assignee"] else "unassigned",
                                     data={"source": "tracker", "assignee": changes["assignee"]}))
        if not activity:
            return GroupChange()
        return GroupChange(group=replace(new, version=group.version + 1), activity=activity)

    state = svc.store.groups.change(org_id, group_id, decide)
    if state is None:
        return None
    # Queue every requested kind, changed now or by an earlier attempt whose send failed: the
    # handler skips versions it already pushed, so a retried PATCH still reaches Azure DevOps.
    requested = [kind for kind in outbound.KINDS if kind in changes]
    org_links = {account_id: svc.store.integrations.get_org_link(account_id, org_id)
                 for account_id in {link.account_id for link in state.links.values()}}
    messages = outbound.planned_messages(state, org_links, requested)
    for message in messages:
        svc.send(outbound.QUEUE, message)
    return messages


def _assignee(svc: Services, org_id: str, body: dict[str, Any]) -> str | None:
    assignee = validate.text(body, "assignee", required=False)
    if assignee is None:
        return None
    check_id(assignee, "assignee")
    if svc.store.users.get(org_id, assignee) is None:
        raise validate.invalid("assignee", "is not a user of this organization")
    return assignee


def get_group(svc: Services, org_id: str, group_id: str) -> Reply:
    check_id(org_id, "org_id")
    check_id(group_id, "group_id")
    state = svc.store.groups.read(org_id, group_id)
    if state is None:
        raise NotFound("Group not found")
    group = state.group
    return Reply(body={
        "org_id": org_id,
        "group_id": group_id,
        "project_id": group.project_id,
        "title": group.title,
        "status": group.status,
        "assignee": group.assignee,
        "links": [
            {"account_id": link.account_id, "key": link.key, "url": link.url,
             "display_name": link.display_name, "project_id": link.project_id}
            for link in state.links.values()
        ],
        "activity": [{"kind": a.kind, "data": a.data, "created": iso_time(a.created)}
                     for a in svc.store.groups.activity(org_id, group_id)],
    })


def put_repository(svc: Services, org_id: str, repo_id: str, body: dict[str, Any]) -> Reply:
    check_id(org_id, "org_id")
    check_id(repo_id, "repo_id")
    name = validate.required_text(body, "name", max_len=1000)
    provider = validate.required_text(body, "provider", max_len=200)
    external_id = validate.text(body, "external_id", required=False, max_len=1000) or ""
    config = validate.mapping(body, "config") or {}
    for key in ("project", "name"):
        if key in config and not isinstance(config[key], str):
            raise validate.invalid(f"config.{key}", "must be a string")
    integration_id = validate.text(body, "integration_id", required=False)
    if integration_id is not None:
        check_id(integration_id, "integration_id")
    status = validate.choice(body, "status", REPO_STATUSES, required=False) or "active"
    repo = Repository(org_id=org_id, repo_id=repo_id, name=name, provider=provider, external_id=external_id,
                      config=config, integration_id=integration_id, status=status)
    svc.store.repositories.put(repo)
    return Reply(body=repository_view(repo))


def get_repository(svc: Services, org_id: str, repo_id: str) -> Reply:
    repo = svc.store.repositories.get(check_id(org_id, "org_id"), check_id(repo_id, "repo_id"))
    if repo is None:
        raise NotFound("Repository not found")
    return Reply(body=repository_view(repo))


def repository_view(repo: Repository) -> dict[str, Any]:
    return {
        "org_id": repo.org_id,
        "repo_id": repo.repo_id,
        "name": repo.name,
        "provider": repo.provider,
        "external_id": repo.external_id,
        "config": repo.config,
        "integration_id": repo.integration_id,
        "status": repo.status,
    }
