"""Outbound sync (tracker → Azure DevOps), decided without I/O: messages, plans and conflict rules.

A `sync-outbound` message only says *that* a kind of change ("status" or "assignee") of a group
should reach one linked work item; the handler always pushes the group's current state. A push is
a JSON Patch made conditional on the work item revision it was planned from (`test /rev`), so a
person's edit in Azure DevOps made meanwhile is never overwritten blindly.
Patch operations: https://learn.microsoft.com/rest/api/azure/devops/wit/work-items/update
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from shared.core.errors import InvalidInput
from shared.core.keys import check_id
from shared.core.models import Group, GroupState, Link, OrgLink, Push
from shared.core.validate import is_number

QUEUE = "sync-outbound"
KINDS = ("status", "assignee")
FLAG_FOR_KIND = {"status": "sync_status_forward", "assignee": "sync_forward_assignment"}
FIELD_FOR_KIND = {"status": "state", "assignee": "assignee"}


@dataclass(frozen=True)
class OutboundMessage:
    kind: str
    integration_id: str
    organization_id: str
    group_id: str
    key: str
    version: int | None


def parse_message(message: dict[str, Any]) -> OutboundMessage:
    """Validate a `sync-outbound` message (InvalidInput when malformed)."""
    kind = message.get("kind")
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}", field="kind")
    key = message.get("key")
    key = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
    if not isinstance(key, str) or not is_number(key) or len(key) > 12:
        raise InvalidInput("key must be a work item id", field="key")
    version = message.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise InvalidInput("version must be a non-negative integer", field="version")
    return OutboundMessage(
        kind=str(kind),
        integration_id=check_id(message.get("integration_id"), "integration_id"),
        organization_id=check_id(message.get("organization_id"), "organization_id"),
        group_id=check_id(message.get("group_id"), "group_id"),
        key=key,
        version=version,
    )


def message(kind: str, link: Link, version: int) -> dict[str, Any]:
    return {"kind": kind, "integration_id": link.account_id, "organization_id": link.org_id,
            "group_id": link.group_id, "key": link.key, "version": version}


def planned_messages(state: GroupState, org_links: dict[str, OrgLink | None], kinds: list[str]
                     ) -> list[dict[str, Any]]:
    """One message per (linked work item, kind) whose organization link is active and allows that sync."""
    messages = []
    for link in state.links.values():
        org_link = org_links.get(link.account_id)
        if org_link is None or org_link.status != "active":
            continue
        messages += [message(kind, link, state.group.version) for kind in kinds
                     if org_link.flag(FLAG_FOR_KIND[kind])]
    return messages


@dataclass(frozen=True)
class Plan:
    """What to write: the value and its JSON Patch ops, or None with the reason nothing is sent."""

    value: str | None
    ops: list[dict[str, Any]] | None
    detail: dict[str, Any]


def status_plan(config: dict[str, Any], link: Link, group: Group) -> Plan:
    """The State the group's current status maps to for the link's project."""
    when = "on_resolve" if group.status == "resolved" else "on_unresolve"
    mapping = config.get("sync_status_forward")
    projects = {str(k).lower(): v for k, v in mapping.items()} if isinstance(mapping, dict) else {}
    if not link.project_id:
        return Plan(None, None, {"reason": "The link does not know its Azure DevOps project.",
                                 "status": group.status})
    states = projects.get(link.project_id.lower())
    state = states.get(when) if isinstance(states, dict) else None
    if not isinstance(state, str) or not state:
        return Plan(None, None, {"reason": f"No {when} state is configured for project {link.project_id}.",
                                 "status": group.status, "project_id": link.project_id})
    return Plan(state, [{"op": "replace", "path": "/fields/System.State", "value": state}],
                {"state": state, "status": group.status})


def assignee_plan(ado_user: dict[str, Any] | None, group: Group) -> Plan:
    """Assign to an ADO user (by e-mail, else principal name: on Azure DevOps Server the `DOMAIN\\user`
    account), or remove the assignee. The plan's value is lower-cased, as service hooks are read."""
    if ado_user is None:
        return Plan("", [{"op": "remove", "path": "/fields/System.AssignedTo"}], {"assignee": group.assignee})
    value = str(ado_user.get("mailAddress") or ado_user.get("principalName") or "")
    return Plan(value.lower(), [{"op": "add", "path": "/fields/System.AssignedTo", "value": value}],
                {"assignee": group.assignee, "ado_user": value})


def conditional(ops: list[dict[str, Any]], rev: int) -> list[dict[str, Any]]:
    """The ops, applied only if the work item is still at revision `rev` (Azure DevOps answers 412 if not)."""
    return [{"op": "test", "path": "/rev", "value": rev}, *ops] if rev > 0 else list(ops)


def planned_value(kind: str, value: str) -> str:
    """How a push records the value it writes (compared with the value a service hook reports)."""
    return json.dumps([kind, value.strip().lower()])


def is_own_write(push: Push | None, kind: str, rev: int, value: str | None, now: float) -> bool:
    """Whether a hook event of revision `rev` setting `value` is the write of the push in flight.

    The push's PATCH is conditional on `base_rev`, so its write is exactly revision `base_rev + 1`.
    """
    if push is None or not push.held(now) or push.planned is None or value is None:
        return False
    return rev == push.base_rev + 1 and planned_value(kind, value) == push.planned


def base_rev(link: Link) -> int:
    """The newest revision of the work item the link knows of: the base of a conditional write."""
    return max(link.state_rev, link.assignee_rev)
