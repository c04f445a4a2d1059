"""Tracker-side group changes, and the `sync-outbound` messages they produce.

A change made in the tracker (PATCH of a group) is applied to the group with its activity in one
transaction; then one message per linked work item is queued, for each requested kind of change
the organization's link allows. Changes that came from Azure DevOps are applied by the webhook, never
through here, so they are not echoed back.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from shared import storage, store
from shared.models import Activity, GroupChange, GroupState

log = logging.getLogger(__name__)

QUEUE = "sync-outbound"
KINDS = ("status", "assignee")
FLAG_FOR_KIND = {"status": "sync_status_forward", "assignee": "sync_forward_assignment"}


def change_group_from_tracker(org_id: str, group_id: str, changes: dict[str, Any]) -> list[dict[str, Any]]:
    """Apply `changes` (status and/or assignee) and queue outbound sync. Returns the queued messages."""
    changed_kinds: list[str] = []

    def decide(state: GroupState | None) -> GroupChange:
        assert state is not None
        group = state.group
        changed_kinds.clear()
        activity = []
        new = group
        if "status" in changes and changes["status"] != group.status:
            new = replace(new, status=changes["status"], status_source=None)
            changed_kinds.append("status")
            activity.append(Activity(kind=f"set_{changes['status']}", data={"source": "tracker"}))
        if "assignee" in changes and changes["assignee"] != group.assignee:
            new = replace(new, assignee=changes["assignee"], assignment_source=None)
            changed_kinds.append("assignee")
            activity.append(Activity(kind="assigned" if changes["assignee"] else "unassigned",
                                     data={"source": "tracker", "assignee": changes["assignee"]}))
        if not changed_kinds:
            return GroupChange()
        return GroupChange(group=replace(new, version=group.version + 1), activity=activity)

    state = store.change_group(org_id, group_id, decide)
    if state is None:
        return []
    # Queue every requested kind, changed now or by an earlier attempt whose send failed: the
    # handler skips versions it already pushed, so a retried PATCH still reaches Azure DevOps.
    requested = [kind for kind in KINDS if kind in changes]
    messages = planned_messages(org_id, group_id, state, requested)
    for message in messages:
        storage.send(QUEUE, message)
    return messages


def planned_messages(org_id: str, group_id: str, state: GroupState, kinds: list[str]) -> list[dict[str, Any]]:
    """One message per (linked work item, changed kind) whose organization link allows that sync."""
    messages: list[dict[str, Any]] = []
    links_by_account: dict[str, Any] = {}
    for link in state.links.values():
        if link.account_id not in links_by_account:
            links_by_account[link.account_id] = store.get_org_link(link.account_id, org_id)
        org_link = links_by_account[link.account_id]
        if org_link is None or org_link.status != "active":
            continue
        for kind in kinds:
            if org_link.flag(FLAG_FOR_KIND[kind]):
                messages.append({
                    "kind": kind,
                    "integration_id": link.account_id,
                    "organization_id": org_id,
                    "group_id": group_id,
                    "key": link.key,
                    "version": state.group.version,
                })
    return messages
