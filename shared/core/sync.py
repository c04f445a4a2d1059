"""Sync decisions: what an inbound change does to a group. Pure: no network or storage access.

The done-state logic and inbound assignment follow Sentry's Azure DevOps integration
(https://docs.sentry.io/organization/integrations/source-code-mgmt/azure-devops/), with two fixes:
states that cannot be read never become a decision (the caller raises instead), and a per-project
override lists the states that resolve and unresolve. The same decision applies a service-hook
delivery and a work item read by reconciliation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any, Literal

from shared.core import events
from shared.core.events import Event
from shared.core.models import Activity, Group, GroupChange, GroupState, Link
from shared.core.outbound import is_own_write

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


@dataclass(frozen=True)
class Observed:
    """What Azure DevOps reported about a work item at revision `rev`.

    `state` is the new State (None: not reported); `assignee` the new assignee's e-mail, lower case
    ("" for nobody; None: not reported). The marks identify the change itself (see `change_mark`).
    """

    rev: int
    state: str | None = None
    state_old: str | None = None
    state_mark: str = ""
    assignee: str | None = None
    assignee_mark: str = ""


def decide_inbound(
    account_id: str,
    key: str,
    observed: Observed,
    action: Action | None,
    assignee: str | Literal[False] | None,
    assignee_note: str | None,
    now: float,
    current: GroupState | None,
    *,
    strategy: str | None = None,
) -> GroupChange:
    """The change one observation of work item `key` makes to a linked group (nothing if not linked).

    `action` is None when the state is not synced; `assignee` is the user to assign, None to
    deassign, or False when the assignee is not synced; `assignee_note` records why an assignment
    was not made. A field the bundle itself is writing at exactly this revision (a push in flight)
    is recorded as the bundle's own write and never applied back.
    """
    link = current.links.get((account_id, key)) if current else None
    if current is None or link is None:
        return GroupChange()
    pushes = current.pushes
    if observed.state is not None and is_own_write(pushes.get((account_id, key, "status")), "status",
                                                   observed.rev, observed.state, now):
        link, action = pushed(link, "state", observed.rev, observed.state), None
    if observed.assignee is not None and is_own_write(pushes.get((account_id, key, "assignee")), "assignee",
                                                      observed.rev, observed.assignee, now):
        link, assignee, assignee_note = pushed(link, "assignee", observed.rev, observed.assignee), False, None
    return inbound_change(current, link, observed=observed, integration_id=account_id, action=action,
                          assignee=assignee, assignee_note=assignee_note, now=now, strategy=strategy)


def inbound_change(
    state: GroupState,
    link: Link,
    *,
    observed: Observed,
    integration_id: str,
    action: Action | None,
    assignee: str | Literal[False] | None,
    assignee_note: str | None = None,
    now: float = 0.0,
    strategy: str | None = None,
) -> GroupChange:
    """The change one observation makes to one linked group, with the events that tell the tracker.

    Each field keeps the newest revision applied and a mark of the change applied at it (see
    `change_mark`): an older revision, or the same change again, changes nothing.
    """
    group: Group = state.group
    original = state.links.get((link.account_id, link.key), link)
    new, new_link = group, link
    activity: list[Activity] = []
    told: list[Event] = []
    rev = observed.rev
    source = {**PROVIDER, "integration_id": integration_id, "key": link.key, "rev": rev}
    at = now or None
    if action is not None and _fresh(rev, observed.state_mark, link.state_rev, link.state_delivery):
        new_link = replace(new_link, state_rev=rev, state_delivery=observed.state_mark, state_value=observed.state)
        target = {"resolve": "resolved", "unresolve": "unresolved"}.get(action)
        if target and group.status != target:
            new = replace(new, status=target, status_source=integration_id)
            activity.append(Activity(kind=f"set_{target}", data=source))
            told.append(events.status_changed(
                group.org_id, group.group_id, group.status, target, source="azure_devops",
                integration_id=integration_id, work_item=link.key, rev=rev, now=at,
                resolution_strategy=strategy if target == "resolved" else None))
    considered = assignee is not False or assignee_note is not None
    if considered and _fresh(rev, observed.assignee_mark, link.assignee_rev, link.assignee_delivery):
        if assignee is not False and assignee != group.assignee:
            new = replace(new, assignee=assignee, assignment_source=integration_id)
            activity.append(Activity(kind="assigned" if assignee else "unassigned",
                                     data={**source, "assignee": assignee}))
            told.append(events.assignee_changed(
                group.org_id, group.group_id, group.assignee, assignee, source="azure_devops",
                integration_id=integration_id, work_item=link.key, rev=rev, actor=observed.assignee or None, now=at))
        if assignee_note and rev > link.assignee_rev:  # once per revision
            activity.append(Activity(kind="assignee_not_synced", data={**source, "reason": assignee_note}))
        new_link = replace(new_link, assignee_rev=rev, assignee_delivery=observed.assignee_mark,
                           assignee_value=observed.assignee)
    links = [new_link] if new_link != original else []
    changed_group = replace(new, version=group.version + 1) if new != group else None
    return GroupChange(group=changed_group, links=links, activity=activity, events=told)


OWN_WRITE = "*"  # mark of a revision the bundle itself wrote: nothing at that revision is applied back


def change_mark(old: Any, new: Any) -> str:
    """A short digest of one field's change record (`oldValue` → `newValue`)."""
    text = json.dumps([old, new], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def pushed(link: Link, field: Literal["state", "assignee"], rev: int, value: str | None) -> Link:
    """The link after the bundle itself wrote `value` to `field` at revision `rev` (its event must not echo)."""
    if field == "state":
        if rev < link.state_rev:
            return link
        return replace(link, state_rev=rev, state_delivery=OWN_WRITE, state_value=value)
    if rev < link.assignee_rev:
        return link
    return replace(link, assignee_rev=rev, assignee_delivery=OWN_WRITE, assignee_value=value)


def _fresh(rev: int, mark: str, seen_rev: int, seen_mark: str) -> bool:
    """Newer than what the field last applied. At an equal revision only a different change counts
    (two events may share a revision number); a redelivery of the same change, or any event of a
    revision the bundle wrote itself, does not."""
    if rev != seen_rev:
        return rev > seen_rev
    return seen_mark != OWN_WRITE and mark != seen_mark
