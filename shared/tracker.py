"""Management API handlers for the tracker's records: users, groups, repositories, health.

Each handler takes plain values (route ids, the parsed body) and returns a `Reply`; validation
happens before anything is written, so a rejected request changes nothing.
"""

from __future__ import annotations

from typing import Any

from shared import outbound, storage, store, validate
from shared.core.errors import NotFound
from shared.http import Reply, iso_time
from shared.keys import check_id
from shared.models import GROUP_STATUSES, Group, Repository, User

REPO_STATUSES = ("active", "disabled")


def health() -> Reply:
    storage.ping()
    return Reply(body={"status": "ok"})


def put_user(org_id: str, user_id: str, body: dict[str, Any]) -> Reply:
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
    store.put_user(user)
    return Reply(body=_user_view(user))


def get_user(org_id: str, user_id: str) -> Reply:
    user = store.get_user(check_id(org_id, "org_id"), check_id(user_id, "user_id"))
    if user is None:
        raise NotFound("User not found")
    return Reply(body=_user_view(user))


def _user_view(user: User) -> dict[str, Any]:
    return {"org_id": user.org_id, "user_id": user.user_id, "emails": user.emails, "projects": user.projects}


def put_group(org_id: str, group_id: str, body: dict[str, Any]) -> Reply:
    check_id(org_id, "org_id")
    check_id(group_id, "group_id")
    project_id = check_id(validate.required_text(body, "project_id"), "project_id")
    title = validate.required_text(body, "title", max_len=4000)
    status = validate.choice(body, "status", GROUP_STATUSES, required=False) or "unresolved"
    assignee = _assignee(org_id, body)
    store.put_group(Group(org_id=org_id, group_id=group_id, project_id=project_id, title=title,
                          status=status, assignee=assignee))
    return get_group(org_id, group_id)


def patch_group(org_id: str, group_id: str, body: dict[str, Any]) -> Reply:
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
        changes["assignee"] = _assignee(org_id, body)
    if store.get_group(org_id, group_id) is None:
        raise NotFound("Group not found")
    outbound.change_group_from_tracker(org_id, group_id, changes)
    return get_group(org_id, group_id)


def _assignee(org_id: str, body: dict[str, Any]) -> str | None:
    assignee = validate.text(body, "assignee", required=False)
    if assignee is None:
        return None
    check_id(assignee, "assignee")
    if store.get_user(org_id, assignee) is None:
        raise validate.invalid("assignee", "is not a user of this organization")
    return assignee


def get_group(org_id: str, group_id: str) -> Reply:
    check_id(org_id, "org_id")
    check_id(group_id, "group_id")
    state = store.read_group(org_id, group_id)
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
                     for a in store.list_activity(org_id, group_id)],
    })


def put_repository(org_id: str, repo_id: str, body: dict[str, Any]) -> Reply:
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
    store.put_repository(repo)
    return Reply(body=repository_view(repo))


def get_repository(org_id: str, repo_id: str) -> Reply:
    repo = store.get_repository(check_id(org_id, "org_id"), check_id(repo_id, "repo_id"))
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
