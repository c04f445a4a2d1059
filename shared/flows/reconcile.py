"""Reconciliation: bring back in sync what service hooks never delivered, and what was never pushed.

Azure DevOps drops events while a hook is on probation or disabled, and while the bundle is down
(https://learn.microsoft.com/azure/devops/service-hooks/troubleshoot). After every subscription
check (and on `POST .../reconcile`, which queues one), the linked work items changed since the
integration's watermark (Azure DevOps' `asOf` time of the previous pass, less a margin) are found
with one WIQL query per 200 ids
(https://learn.microsoft.com/rest/api/azure/devops/wit/wiql/query-by-wiql) and read in batches;
each one is applied to its groups through the webhook's revision guard, so an event that arrives
later, or twice, changes nothing. A field is applied only when its value differs from the one the
link last knew: a revision that only touched other fields never reverts a tracker change still on
its way out. Then every group whose current version was not pushed gets a `sync-outbound` message,
and the comments of linked work items of organizations that sync comments are scanned
(`shared.flows.comments_inbound.reconcile`: edits, deletes and lost deliveries).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from shared.compose import Services
from shared.core import outbound as plan
from shared.core import sync
from shared.core.models import GroupState, Integration, OrgLink
from shared.core.workitems import field_values
from shared.flows import comments_inbound
from shared.flows.inbound import apply_observation

log = logging.getLogger(__name__)

IDS_PER_QUERY = 200
SKEW = 300.0  # seconds the watermark is moved back, for clock skew and changes committed late
FIELDS = ["System.Id", "System.Rev", "System.State", "System.AssignedTo", "System.ChangedDate"]


@dataclass(frozen=True)
class Result:
    checked: int  # work items read (changed since the watermark)
    repaired: int  # links brought back in sync: a change applied, or a push queued again


def reconcile(svc: Services, integration: Integration, org_links: list[OrgLink]) -> Result:
    """One reconciliation pass over the integration's linked work items; records the watermark."""
    started = svc.clock()
    active = {link.org_id: link for link in org_links if link.status == "active"}
    linked = svc.store.integrations.linked_work_items(integration.account_id)
    targets = {key: [(org, group) for org, group in groups if org in active] for key, groups in linked.items()}
    targets = {key: groups for key, groups in targets.items() if groups}
    client = svc.ado(integration)
    changed_ids: list[int] = []
    ids = sorted(int(key) for key in targets)
    since = _wiql_time(integration.last_reconciled - SKEW) if integration.last_reconciled else None
    as_of: float | None = None
    for start in range(0, len(ids), IDS_PER_QUERY):
        chunk = ", ".join(str(i) for i in ids[start:start + IDS_PER_QUERY])
        where = f"[System.Id] IN ({chunk})" + (f" AND [System.ChangedDate] > '{since}'" if since else "")
        found, answered = client.query_ids_as_of(f"SELECT [System.Id] FROM WorkItems WHERE {where}")
        changed_ids += found
        as_of = answered if as_of is None else as_of
    # The watermark is Azure DevOps' own time of the first query: the host's clock never matters.
    started = as_of if as_of is not None else started
    fixed: set[tuple[str, str, str]] = set()  # the links (org, group, work item) this pass repaired
    for item in client.get_work_items(changed_ids, FIELDS):
        key = str(item.get("id"))
        rev = item.get("rev")
        state_value, assignee_value = field_values(item.get("fields") or {})
        for org_id, group_id in targets.get(key, []):
            state = svc.store.groups.read(org_id, group_id)
            if state is not None and _apply(svc, integration, active[org_id], state, key,
                                            rev if isinstance(rev, int) else 0, state_value, assignee_value):
                fixed.add((org_id, group_id, key))
    for key, groups in targets.items():
        for org_id, group_id in groups:
            if _push_missed(svc, active[org_id], org_id, group_id, key):
                fixed.add((org_id, group_id, key))
    repaired = len(fixed)
    # Comments have no service-hook event for edits and deletes: their scan lists each work item's comments.
    repaired += comments_inbound.reconcile(svc, integration, list(active.values()), targets)
    svc.store.integrations.update(integration.account_id,
                                  lambda cur: replace(cur, last_reconciled=started, repaired=repaired))
    log.info("reconcile.done", extra={"account_id": integration.account_id, "checked": len(changed_ids),
                                      "repaired": repaired})
    return Result(checked=len(changed_ids), repaired=repaired)


def _apply(svc: Services, integration: Integration, org_link: OrgLink, state: GroupState, key: str, rev: int,
           state_value: str | None, assignee_value: str) -> bool:
    link = state.links.get((integration.account_id, key))
    if link is None or rev <= 0:
        return False
    state_moved = state_value is not None and state_value != link.state_value and rev > link.state_rev
    assignee_moved = assignee_value != (link.assignee_value or "") and rev > link.assignee_rev
    if not (state_moved or assignee_moved):
        return False
    observed = sync.Observed(
        rev=rev,
        state=state_value if state_moved else None,
        state_old=link.state_value,
        state_mark=sync.change_mark(link.state_value, state_value),
        assignee=assignee_value if assignee_moved else None,
        assignee_mark=sync.change_mark(link.assignee_value, assignee_value),
    )
    return apply_observation(svc, integration, org_link, state, key, observed)


def _push_missed(svc: Services, org_link: OrgLink, org_id: str, group_id: str, key: str) -> int:
    """Queue a push of each kind whose current group version never reached work item `key`."""
    state = svc.store.groups.read(org_id, group_id)
    link = state.links.get((org_link.account_id, key)) if state else None
    if state is None or link is None or state.group.version == 0:
        return 0
    queued = 0
    for kind in plan.KINDS:
        if not org_link.flag(plan.FLAG_FOR_KIND[kind]):
            continue
        push = state.pushes.get((org_link.account_id, key, kind))
        source = state.group.status_source if kind == "status" else state.group.assignment_source
        if source == org_link.account_id or (push is not None and push.pushed >= state.group.version):
            continue
        if push is None and _never_changed(state, kind):
            continue
        svc.send(plan.QUEUE, plan.message(kind, link, state.group.version))
        queued += 1
    return queued


def _never_changed(state: GroupState, kind: str) -> bool:
    """A group whose field still has its initial value has nothing to push (no push record yet)."""
    group = state.group
    return (group.status == "unresolved") if kind == "status" else group.assignee is None


def _wiql_time(timestamp: float) -> str:
    return datetime.fromtimestamp(max(0.0, timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
