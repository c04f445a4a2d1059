"""Outbound sync (queue `sync-outbound`): push a group's status or assignee to a linked work item.

A message only says *that* something changed; the handler always pushes the group's current state,
so messages may arrive late, twice or out of order. Per link and kind, a lease serialises pushes and
the group version last pushed is recorded: a message whose version was already pushed is skipped
without an Azure DevOps call.

Convergence rules:
- The write is conditional on the work item revision the link knows (`test /rev`). When a person
  changed the work item meanwhile, Azure DevOps answers 412: the work item is read, a change of the
  synced field is applied to the group through the webhook's revision guard, and the push is planned
  again from the new state (at most `MAX_REPLANS` times, then the queue retries).
- While the push is in flight, its lease records the revision and value it writes, so the service
  hook of that write is recognised as the bundle's own even if it arrives first.
- A message meeting another push's lease is never failed (the host would poison it after a few
  tries): it is sent again, invisible until that lease ends. The push holding the lease, when it
  ends and the group has changed meanwhile, queues the newer version at once.

Storage round trips for a status push: the integration partition, the group partition, the lease,
and one transaction recording the result with the lease released. Error policy: transient failures
raise so the queue retries; permanent ones are recorded in the group's activity and complete the
message. Sentry's outbound sync: https://docs.sentry.io/organization/integrations/source-code-mgmt/azure-devops/
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from shared.adapters.ado_client import AdoClient
from shared.adapters.cache import CacheStore
from shared.compose import Services
from shared.core import events, sync
from shared.core import outbound as plan
from shared.core.errors import (
    AdoAuthError,
    AdoNotFound,
    AdoRevisionMismatch,
    BundleError,
    IdentityInvalid,
    TransientError,
    clamp_retry_after,
)
from shared.core.events import FailureReason
from shared.core.models import Activity, GroupChange, GroupState, Integration, Link, OrgLink, Push
from shared.core.workitems import field_values
from shared.flows import events as flow_events
from shared.flows.inbound import apply_observation

log = logging.getLogger(__name__)

LEASE = 180.0
USER_TTL = 3600.0
NO_USER_TTL = 300.0
MAX_REPLANS = 3
NO_ADO_USER = "No matching Azure DevOps user found."
Client = Callable[[], AdoClient]


def find_ado_user(client: Client, cache: CacheStore, account_id: str, emails: Iterable[str]) -> dict[str, Any] | None:
    """The ADO user whose `mailAddress` is one of `emails` (case-insensitive), cached per e-mail.

    Reads graph users page by page and stops at the first match; an e-mail nobody has is cached as
    such for a few minutes, so a repeated miss does not page through the organization again.
    """
    wanted = sorted({e.strip().lower() for e in emails if e and e.strip()})
    unknown: list[str] = []
    for email in wanted:
        cached = cache.get(account_id, f"graph_user|{email}")
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
            cache.put(account_id, f"graph_user|{mail}", {"found": True, "user": found}, ttl=USER_TTL)
            return found
    cache.put_many(account_id, {f"graph_user|{e}": {"found": False} for e in unknown}, ttl=NO_USER_TTL)
    return None


# --- the queue handler --------------------------------------------------------------------------


@dataclass
class _Job:
    svc: Services
    msg: plan.OutboundMessage
    integration: Integration
    org_link: OrgLink
    client: Client

    @property
    def push_key(self) -> tuple[str, str, str]:
        return (self.msg.integration_id, self.msg.key, self.msg.kind)

    def extra(self) -> dict[str, Any]:
        m = self.msg
        return {"integration_id": m.integration_id, "group_id": m.group_id, "key": m.key, "kind": m.kind}


def sync_work_item(svc: Services, message: dict[str, Any]) -> None:
    """Handle one `sync-outbound` message (see the module docstring for the policy)."""
    msg = plan.parse_message(message)
    found = svc.store.integrations.read(msg.integration_id)
    integration, org_link = found.integration, found.org_link(msg.organization_id)
    if integration is None or integration.status != "active" or org_link is None or org_link.status != "active":
        log.warning("outbound.target_missing", extra={"integration_id": msg.integration_id, "key": msg.key})
        return
    job = _Job(svc, msg, integration, org_link, functools.cache(lambda: svc.ado(integration)))
    if not org_link.flag(plan.FLAG_FOR_KIND[msg.kind]):
        log.info("outbound.disabled", extra=job.extra())
        return
    state = svc.store.groups.read(msg.organization_id, msg.group_id)
    if state is None or (msg.integration_id, msg.key) not in state.links:
        log.info("outbound.link_missing", extra=job.extra())
        return
    claimed = _claim(job, state, msg.version if msg.version is not None else state.group.version)
    if claimed is None:
        return
    state, token = claimed
    outcome: _Outcome | None = None
    try:
        outcome = _push(job, state, token)
    finally:
        _finish(job, state, token, outcome)


def _claim(job: _Job, state: GroupState, version: int) -> tuple[GroupState, str] | None:
    """Take the lease of this link and kind (None: nothing to do now, or re-sent for after the lease)."""
    svc, now, token = job.svc, job.svc.clock(), uuid.uuid4().hex
    outcome: list[str] = []

    def decide(current: GroupState | None) -> GroupChange:
        outcome.clear()
        if current is None or (job.msg.integration_id, job.msg.key) not in current.links:
            outcome.append("missing")
            return GroupChange()
        push = current.pushes.get(job.push_key) or Push(*job.push_key)
        if push.pushed >= version:
            outcome.append("stale")
            return GroupChange()
        if push.held(now):
            outcome.append(str(push.lease_until - now))
            return GroupChange()
        return GroupChange(pushes=[replace(push, lease=token, lease_until=now + LEASE, planned=None)])

    claimed = svc.store.groups.change(job.msg.organization_id, job.msg.group_id, decide, known=state)
    if not outcome:
        assert claimed is not None
        return claimed, token
    if outcome[0] in ("missing", "stale"):
        log.info(f"outbound.{outcome[0]}", extra=job.extra())
        return None
    # Another push holds the lease: come back when it ends, rather than fail towards the poison queue.
    delay = float(outcome[0])
    svc.send(plan.QUEUE, plan.message(job.msg.kind, claimed.links[(job.msg.integration_id, job.msg.key)]
                                      if claimed else _link_of(state, job), version),
             delay=clamp_retry_after(delay + 1.0))
    log.info("outbound.lease_held", extra={**job.extra(), "delay": round(delay, 1)})
    return None


def _link_of(state: GroupState, job: _Job) -> Link:
    return state.links[(job.msg.integration_id, job.msg.key)]


@dataclass
class _Outcome:
    """What a push did: the activity to record, the revision and value it wrote (if it wrote), and
    why it gave up (a `sync.failed` reason, if it did)."""

    activity: Activity | None
    rev: int | None = None
    value: str | None = None
    failure: FailureReason | None = None


def _push(job: _Job, state: GroupState, token: str) -> _Outcome:
    """Plan and write the current state; re-plan after a conflicting edit in Azure DevOps."""
    for _ in range(MAX_REPLANS):
        link = _link_of(state, job)
        kind, group = job.msg.kind, state.group
        source_field = group.status_source if kind == "status" else group.assignment_source
        if source_field == job.msg.integration_id:
            log.info(f"outbound.{kind}.echo", extra=job.extra())
            return _Outcome(None)
        try:
            planned = _plan(job, state, link)
        except TransientError:
            raise
        except BundleError as error:
            return _failed(job, error)
        if planned.ops is None or planned.value is None:
            reason: FailureReason = "no_ado_user" if kind == "assignee" else "no_state_mapping"
            return _Outcome(_activity(job, f"outbound_{kind}_skipped", planned.detail), failure=reason)
        base = plan.base_rev(link)
        state = _mark_planned(job, state, token, base, plan.planned_value(kind, planned.value))
        try:
            written = job.client().update_work_item(link.key, plan.conditional(planned.ops, base))
        except AdoRevisionMismatch:
            state = _observe_conflict(job, state)
            continue
        except TransientError:
            raise
        except BundleError as error:
            return _failed(job, error)
        rev = written.get("rev")
        return _Outcome(_activity(job, f"outbound_{kind}", planned.detail),
                        rev if isinstance(rev, int) and not isinstance(rev, bool) else None, planned.value)
    raise TransientError(f"work item {job.msg.key} kept changing during the push; retrying later")


def _plan(job: _Job, state: GroupState, link: Link) -> plan.Plan:
    group = state.group
    if job.msg.kind == "status":
        return plan.status_plan(job.org_link.config, link, group)
    ado_user = None
    if group.assignee is not None:
        user = job.svc.store.users.get(group.org_id, group.assignee)
        ado_user = find_ado_user(job.client, job.svc.store.cache, job.msg.integration_id, user.emails if user else [])
        if ado_user is None:
            return plan.Plan(None, None, {"reason": NO_ADO_USER, "assignee": group.assignee})
    return plan.assignee_plan(ado_user, group)


def _mark_planned(job: _Job, state: GroupState, token: str, base: int, value: str) -> GroupState:
    """Record on the lease the revision and value about to be written (one transaction)."""
    push = state.pushes[job.push_key]
    if push.lease != token:
        raise TransientError("the push lease was lost; retrying later")
    marked = replace(push, base_rev=base, planned=value)
    new = job.svc.store.groups.change(job.msg.organization_id, job.msg.group_id,
                                      lambda cur: GroupChange(pushes=[marked]) if cur else GroupChange(), known=state)
    if new is None:
        raise TransientError("the group disappeared during the push")
    return new


def _observe_conflict(job: _Job, state: GroupState) -> GroupState:
    """After a 412: read the work item, apply a change of the synced field to the group, read the group again."""
    link = _link_of(state, job)
    item = job.client().get_work_item(link.key)
    rev = item.get("rev")
    state_value, assignee_value = field_values(item.get("fields") or {})
    rev = rev if isinstance(rev, int) and not isinstance(rev, bool) else 0
    if job.msg.kind == "status":
        observed = sync.Observed(rev=rev, state=state_value, state_old=link.state_value,
                                 state_mark=sync.change_mark(link.state_value, state_value))
        moved = state_value != link.state_value
    else:
        observed = sync.Observed(rev=rev, assignee=assignee_value,
                                 assignee_mark=sync.change_mark(link.assignee_value, assignee_value))
        moved = assignee_value != (link.assignee_value or "")
    log.info("outbound.conflict", extra={**job.extra(), "field_changed": moved})
    if moved:
        apply_observation(job.svc, job.integration, job.org_link, state, link.key, observed)

    def advance(current: GroupState | None) -> GroupChange:
        # Only other fields changed, or the field is not synced from Azure DevOps (the guard applied
        # nothing): the push goes ahead from the new revision, else it would meet 412 again.
        found = current.links.get((job.msg.integration_id, job.msg.key)) if current else None
        if found is None:
            return GroupChange()
        original = found
        if max(found.state_rev, found.assignee_rev) > rev > 0:
            # The link knows a revision the work item never reached (a delivery that was not Azure
            # DevOps'): the item just read is the authority, or every conditional write meets 412.
            found = replace(found, state_rev=rev, state_value=state_value, assignee_rev=rev,
                            assignee_value=assignee_value)
        if job.msg.kind == "status" and found.state_rev < rev:
            found = replace(found, state_rev=rev, state_value=state_value)
        elif job.msg.kind != "status" and found.assignee_rev < rev:
            found = replace(found, assignee_rev=rev, assignee_value=assignee_value)
        return GroupChange(links=[found]) if found != original else GroupChange()

    fresh = job.svc.store.groups.change(job.msg.organization_id, job.msg.group_id, advance)
    if fresh is None or (job.msg.integration_id, job.msg.key) not in fresh.links:
        raise TransientError("the link disappeared during the push")
    return fresh


def _failed(job: _Job, error: BundleError) -> _Outcome:
    log.warning("outbound.failed", extra={**job.extra(), "error": type(error).__name__})
    reason: FailureReason = ("permission_refused" if isinstance(error, AdoAuthError | IdentityInvalid)
              else "work_item_deleted" if isinstance(error, AdoNotFound) else "other")
    return _Outcome(_activity(job, f"outbound_{job.msg.kind}_failed",
                              {"error": type(error).__name__, "detail": error.message}), failure=reason)


def _activity(job: _Job, kind: str, data: dict[str, Any]) -> Activity:
    return Activity(kind=kind, data={"integration_id": job.msg.integration_id, "key": job.msg.key, **data},
                    created=job.svc.clock())


def _finish(job: _Job, state: GroupState, token: str, outcome: _Outcome | None) -> None:
    """Release the lease in one transaction with the result: the version pushed (only when the push
    completed), the revision written marked as the bundle's own, and the activity."""
    pushed_version = state.group.version
    newer: list[Link] = []

    def decide(current: GroupState | None) -> GroupChange:
        newer.clear()
        if current is None:
            return GroupChange()
        push = current.pushes.get(job.push_key)
        if push is None or push.lease != token:
            return GroupChange()  # our lease expired and another push took over
        link = current.links.get((job.msg.integration_id, job.msg.key))
        group = current.group
        source = group.status_source if job.msg.kind == "status" else group.assignment_source
        if outcome is not None and link is not None and group.version > pushed_version \
                and source != job.msg.integration_id:
            newer.append(link)
        done = replace(push, lease=None, lease_until=0.0, planned=None,
                       pushed=max(push.pushed, pushed_version) if outcome is not None else push.pushed)
        change = GroupChange(pushes=[done])
        if outcome is not None:
            change.activity += [outcome.activity] if outcome.activity else []
            if outcome.failure and outcome.activity:
                data = outcome.activity.data
                detail = data.get("detail") or data.get("reason") or outcome.failure
                change.events.append(events.sync_failed(
                    job.msg.organization_id, job.msg.group_id, outcome.failure, str(detail), field=job.msg.kind,
                    source="tracker", integration_id=job.msg.integration_id, work_item=job.msg.key,
                    now=job.svc.clock()))
            if link is not None and outcome.rev is not None:
                marked = sync.pushed(link, "state" if job.msg.kind == "status" else "assignee", outcome.rev,
                                     outcome.value)
                change.links = [marked] if marked != link else []
        return change

    after = flow_events.change_group(job.svc, job.msg.organization_id, job.msg.group_id, decide, known=state)
    if newer and after is not None:
        # The group changed while this push held the lease (that change's message waits for the lease's
        # end): push it now rather than minutes later; the delayed message then finds nothing to do.
        try:
            job.svc.send(plan.QUEUE, plan.message(job.msg.kind, newer[0], after.group.version))
        except TransientError:
            log.warning("outbound.follow_up_not_sent", extra=job.extra())
