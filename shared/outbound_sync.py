"""Outbound sync (queue `sync-outbound`): push a group's status or assignee to its linked work item.

A message only says *that* something changed; the handler always pushes the group's current state,
so messages may arrive late, twice or out of order. Per link and kind, a lease serialises pushes
and the group version last pushed is recorded: a message whose version was already pushed is
skipped without an ADO call. Happy paths: status = 1 ADO call (PATCH); assignee = graph users +
PATCH cold, PATCH alone when the e-mail → ADO user answer is cached.

Error policy: transient failures (throttling, 5xx, timeouts, storage) raise so the queue retries;
permanent ones (refused credential, work item gone, rule errors) are recorded in the group's
activity and complete the message. Reference: sentry-vsts.md §6.2, §6.3.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from shared import deps, store, sync
from shared.ado_client import AdoClient
from shared.core.errors import BundleError, InvalidInput, TransientError
from shared.keys import check_id
from shared.models import Activity, Group, GroupChange, GroupState, Integration, Link, OrgLink
from shared.outbound import FLAG_FOR_KIND, KINDS

log = logging.getLogger(__name__)

USER_TTL = 3600.0
NO_USER_TTL = 300.0
NO_ADO_USER = "No matching Azure DevOps user found."


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
    if not isinstance(key, str) or not key.isdigit():
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


@dataclass(frozen=True)
class Plan:
    """What to send: JSON Patch ops, or None with the reason nothing is sent."""

    ops: list[dict[str, Any]] | None
    detail: dict[str, Any]


def status_plan(config: dict[str, Any], link: Link, group: Group) -> Plan:
    """The State the group's current status maps to for the link's project (pure)."""
    when = "on_resolve" if group.status == "resolved" else "on_unresolve"
    mapping = config.get("sync_status_forward")
    projects = {str(k).lower(): v for k, v in mapping.items()} if isinstance(mapping, dict) else {}
    if not link.project_id:
        return Plan(None, {"reason": "The link does not know its Azure DevOps project.", "status": group.status})
    states = projects.get(link.project_id.lower())
    state = states.get(when) if isinstance(states, dict) else None
    if not isinstance(state, str) or not state:
        return Plan(None, {"reason": f"No {when} state is configured for project {link.project_id}.",
                           "status": group.status, "project_id": link.project_id})
    return Plan([{"op": "replace", "path": "/fields/System.State", "value": state}],
                {"state": state, "status": group.status})


def assignee_ops(ado_user: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Assign to an ADO user (by e-mail, else principal name), or remove the assignee (pure)."""
    if ado_user is None:
        return [{"op": "remove", "path": "/fields/System.AssignedTo"}]
    value = ado_user.get("mailAddress") or ado_user.get("principalName")
    return [{"op": "add", "path": "/fields/System.AssignedTo", "value": value}]


def find_ado_user(client: Callable[[], AdoClient], account_id: str, emails: Iterable[str]) -> dict[str, Any] | None:
    """The ADO user whose `mailAddress` is one of `emails` (case-insensitive), cached per e-mail.

    Reads graph users page by page and stops at the first match; an e-mail nobody has is cached as
    such for a few minutes, so a repeated miss does not page through the organization again.
    """
    wanted = sorted({e.strip().lower() for e in emails if e and e.strip()})
    unknown: list[str] = []
    for email in wanted:
        cached = store.cache_get(account_id, f"graph_user|{email}")
        if cached is None:
            unknown.append(email)
        elif isinstance(cached, dict) and cached.get("found"):
            return dict(cached["user"])
    if not unknown:
        return None
    for user in client().iter_graph_users():
        mail = str(user.get("mailAddress") or "").lower()
        if mail and mail in unknown:
            found = {"mailAddress": user.get("mailAddress"), "principalName": user.get("principalName"),
                     "displayName": user.get("displayName")}
            store.cache_put(account_id, f"graph_user|{mail}", {"found": True, "user": found}, ttl=USER_TTL)
            return found
    store.cache_put_many(account_id, {f"graph_user|{e}": {"found": False} for e in unknown}, ttl=NO_USER_TTL)
    return None


# --- the queue handler --------------------------------------------------------------------------


def sync_work_item(message: dict[str, Any]) -> None:
    """Handle one `sync-outbound` message (see the module docstring for the policy)."""
    msg = parse_message(message)
    target = _target(msg)
    if target is None:
        return
    integration, org_link = target
    version = msg.version
    if version is None:  # a message without a version asks for the group's state as it is now
        group = store.get_group(msg.organization_id, msg.group_id)
        if group is None:
            log.info("outbound.link_missing", extra=_extra(msg))
            return
        version = group.version
    claim = store.claim_push(msg.organization_id, msg.group_id, msg.integration_id, msg.key, msg.kind,
                             version=version)
    if claim is None:
        log.info("outbound.stale", extra=_extra(msg))
        return
    pushed: int | None = None
    try:
        pushed = _push(msg, integration, org_link)
    finally:
        store.finish_push(claim, version=pushed)


def _target(msg: OutboundMessage) -> tuple[Integration, OrgLink] | None:
    state = store.read_integration(msg.integration_id)
    if state.integration is None or state.integration.status != "active":
        log.warning("outbound.integration_missing", extra=_extra(msg))
        return None
    org_link = next((link for link in state.links if link.org_id == msg.organization_id), None)
    if org_link is None or org_link.status != "active":
        log.warning("outbound.org_link_missing", extra=_extra(msg))
        return None
    if not org_link.flag(FLAG_FOR_KIND[msg.kind]):
        log.info("outbound.disabled", extra=_extra(msg))
        return None
    return state.integration, org_link


def _push(msg: OutboundMessage, integration: Integration, org_link: OrgLink) -> int | None:
    """Push the current state; the group version pushed (None: nothing to record)."""
    state = store.read_group(msg.organization_id, msg.group_id)
    link = state.links.get((msg.integration_id, msg.key)) if state else None
    if state is None or link is None:
        log.info("outbound.link_missing", extra=_extra(msg))
        return None
    client = functools.cache(lambda: deps.ado_client(integration))
    try:
        if msg.kind == "status":
            _push_status(client, msg, org_link, state, link)
        else:
            _push_assignee(client, msg, state, link)
    except TransientError:
        raise
    except BundleError as error:
        log.warning("outbound.failed", extra={**_extra(msg), "error": type(error).__name__})
        _record(msg, f"outbound_{msg.kind}_failed", {"error": type(error).__name__, "detail": error.message},
                state)
        return None
    return state.group.version


def _push_status(client: Callable[[], AdoClient], msg: OutboundMessage, org_link: OrgLink,
                 state: GroupState, link: Link) -> None:
    if state.group.status_source == msg.integration_id:
        log.info("outbound.status.echo", extra=_extra(msg))
        return
    plan = status_plan(org_link.config, link, state.group)
    if plan.ops is None:
        _record(msg, "outbound_status_skipped", plan.detail, state)
        return
    written = client().update_work_item(link.key, plan.ops)
    _record(msg, "outbound_status", plan.detail, state, pushed=("state", written.get("rev")))


def _push_assignee(client: Callable[[], AdoClient], msg: OutboundMessage, state: GroupState, link: Link) -> None:
    group = state.group
    if group.assignment_source == msg.integration_id:
        log.info("outbound.assignee.echo", extra=_extra(msg))
        return
    ado_user = None
    if group.assignee is not None:
        user = store.get_user(group.org_id, group.assignee)
        ado_user = find_ado_user(client, msg.integration_id, user.emails if user else [])
        if ado_user is None:
            _record(msg, "outbound_assignee_skipped", {"reason": NO_ADO_USER, "assignee": group.assignee}, state)
            return
    ops = assignee_ops(ado_user)
    written = client().update_work_item(link.key, ops)
    _record(msg, "outbound_assignee", {"assignee": group.assignee, "ado_user": ops[0].get("value")}, state,
            pushed=("assignee", written.get("rev")))


def _record(msg: OutboundMessage, kind: str, data: dict[str, Any], known: GroupState,
            pushed: tuple[Literal["state", "assignee"], Any] | None = None) -> None:
    """Add an activity to the group (first try under the etags just read; a lost race re-reads).

    `pushed` is the field written to Azure DevOps and the revision it produced: the link records
    it, so the service hook of our own write is not applied back to the group.
    """
    activity = Activity(kind=kind, data={"integration_id": msg.integration_id, "key": msg.key, **data})

    def decide(state: GroupState | None) -> GroupChange:
        link = state.links.get((msg.integration_id, msg.key)) if state else None
        rev = pushed[1] if pushed else None
        if link is None or pushed is None or isinstance(rev, bool) or not isinstance(rev, int):
            return GroupChange(activity=[activity])
        updated = sync.pushed(link, pushed[0], rev)
        return GroupChange(links=[updated] if updated != link else [], activity=[activity])

    store.change_group(msg.organization_id, msg.group_id, decide, known=known)



def _extra(msg: OutboundMessage) -> dict[str, Any]:
    return {"integration_id": msg.integration_id, "group_id": msg.group_id, "key": msg.key, "kind": msg.kind}
