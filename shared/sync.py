"""Sync decisions: what an inbound change does to a group. Pure: no network or storage access.

Reference: sentry-vsts.md §5.4 (done-state logic) and §6.1 (inbound assignee), with two fixes:
states that cannot be read never become a decision (the caller raises instead), and a per-project
override lists the states that resolve and unresolve.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import replace
from typing import Any, Literal

from shared.models import Activity, Group, GroupChange, GroupState, Link

Action = Literal["resolve", "unresolve", "noop"]
DONE_CATEGORIES = frozenset({"Resolved", "Completed", "Closed"})
PROVIDER = {"provider": "Azure DevOps", "provider_key": "vsts"}


def done_states(states: list[dict[str, Any]]) -> list[str]:
    """Names of the states whose category counts as done."""
    return sorted(str(s["name"]) for s in states if s.get("category") in DONE_CATEGORIES and s.get("name"))


def status_action(old: str | None, new: str | None, done: Collection[str],
                  override: dict[str, Any] | None = None) -> Action:
    """Resolve, unresolve or leave a group for a state change `old` → `new`."""
    if not new:
        return "noop"
    if override:
        if new in (override.get("resolve") or []):
            return "resolve"
        if new in (override.get("unresolve") or []):
            return "unresolve"
        return "noop"
    should_resolve = old not in done and new in done
    should_unresolve = new not in done or old is None
    if should_resolve and should_unresolve:
        return "noop"  # a brand-new item created in a done state: the reference treats it as a conflict
    if should_resolve:
        return "resolve"
    if should_unresolve:
        return "unresolve"
    return "noop"


def inbound_change(
    state: GroupState,
    link: Link,
    *,
    rev: int,
    state_mark: str,
    assignee_mark: str,
    integration_id: str,
    action: Action | None,
    assignee: str | Literal[False] | None,
    assignee_note: str | None = None,
) -> GroupChange:
    """The change one delivery makes to one linked group.

    `action` is None when the delivery's state is not synced; `assignee` is the user to assign,
    None to deassign, or False when the assignee is not synced; `assignee_note` records why an
    assignment was not made. Each field keeps the newest revision applied and a mark of the change
    applied at it (see `change_mark`): an older revision, or the same change again, changes nothing.
    """
    group: Group = state.group
    new, new_link = group, link
    activity: list[Activity] = []
    source = {**PROVIDER, "integration_id": integration_id, "key": link.key, "rev": rev}
    if action is not None and _fresh(rev, state_mark, link.state_rev, link.state_delivery):
        new_link = replace(new_link, state_rev=rev, state_delivery=state_mark)
        target = {"resolve": "resolved", "unresolve": "unresolved"}.get(action)
        if target and group.status != target:
            new = replace(new, status=target, status_source=integration_id)
            activity.append(Activity(kind=f"set_{target}", data=source))
    considered = assignee is not False or assignee_note is not None
    if considered and _fresh(rev, assignee_mark, link.assignee_rev, link.assignee_delivery):
        if assignee is not False and assignee != group.assignee:
            new = replace(new, assignee=assignee, assignment_source=integration_id)
            activity.append(Activity(kind="assigned" if assignee else "unassigned",
                                     data={**source, "assignee": assignee}))
        if assignee_note and rev > link.assignee_rev:  # once per revision
            activity.append(Activity(kind="assignee_not_synced", data={**source, "reason": assignee_note}))
        new_link = replace(new_link, assignee_rev=rev, assignee_delivery=assignee_mark)
    links = [new_link] if new_link != link else []
    changed_group = replace(new, version=group.version + 1) if new != group else None
    return GroupChange(group=changed_group, links=links, activity=activity)


OWN_WRITE = "*"  # mark of a revision the bundle itself wrote: nothing at that revision is applied back


def change_mark(old: Any, new: Any) -> str:
    """A short digest of one field's change record (`oldValue` → `newValue`)."""
    text = json.dumps([old, new], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pushed(link: Link, field: Literal["state", "assignee"], rev: int) -> Link:
    """The link after the bundle itself wrote `field` at revision `rev` (its own event must not echo)."""
    if field == "state":
        return link if rev < link.state_rev else replace(link, state_rev=rev, state_delivery=OWN_WRITE)
    return link if rev < link.assignee_rev else replace(link, assignee_rev=rev, assignee_delivery=OWN_WRITE)


def _fresh(rev: int, mark: str, seen_rev: int, seen_mark: str) -> bool:
    """Newer than what the field last applied. At an equal revision only a different change counts
    (two events may share a revision number); a redelivery of the same change, or any event of a
    revision the bundle wrote itself, does not."""
    if rev != seen_rev:
        return rev > seen_rev
    return seen_mark != OWN_WRITE and mark != seen_mark
