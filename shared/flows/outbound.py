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
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from shared.adapters.ado_client import AdoClient
from shared.adapters.ado_endpoints import is_server
from shared.compose import Services
from shared.core import commentsync, events, sync
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
from shared.flows import ado_users, comments, server_users
from shared.flows import events as flow_events
from shared.flows.inbound import apply_observation

log = logging.getLogger(__name__)

LEASE = 180.0
MAX_REPLANS = 3
NO_ADO_USER = "No matching Azure DevOps user found."
Client = Callable[[], AdoClient]


# --- the queue handler --------------------------------------------------------------------------


@dataclass
class _Job:
    svc: Services
    msg: plan.OutboundMessage
    integration: Integration
    org_link: OrgLink
    client: Client
    latest: GroupState | None = None  # the group as last written or read by the push (its ETags are current)

    @property
    def push_key(self) -> tuple[str, str, str]:
        return (self.msg.integration_id, self.msg.key, self.msg.kind)

    def extra(self) -> dict[str, Any]:
        m = self.msg
        return {"integration_id": m.integration_id, "group_id": m.group_id, "key": m.key, "kind": m.kind}


def handle(svc: Services, message: dict[str, Any]) -> None:
    """One `sync-outbound` message: kind "comment" is a comment push (`shared.flows.comments`)."""
    if message.get("kind") == commentsync.KIND:
        comments.push(svc, message)
    else:
        sync_work_item(svc, message)


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
    version = msg.version if msg.version is not None else state.group.version
    pushed = state.pushes.get(job.push_key)
    if pushed is not None and pushed.pushed >= version:
        log.info("outbound.stale", extra=job.extra())
        return
    first = _prepare(job, state, None)
    if isinstance(first, _Outcome):  # nothing to write to Azure DevOps: record the outcome, no lease needed
        _finish(job, state, None, first, version)
        return
    claimed = _claim(job, state, version, first)
    if claimed is None:
        return
    state, token = claimed
    job.latest = state
    outcome: _Outcome | None = None
    try:
        outcome = _push(job, state, token, first)
    finally:
        _finish(job, job.latest or state, token, outcome, version)


@dataclass(frozen=True)
class _Planned:
    """A write ready to send: its plan, and the revision it is conditional on."""

    plan: plan.Plan
    value: str
    base: int


def _prepare(job: _Job, state: GroupState, read_rev: int | None) -> _Outcome | _Planned:
    """What the group's current state asks for: an outcome with nothing to write, or a planned write."""
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
    return _Planned(planned, planned.value, plan.base_rev(link) if read_rev is None else read_rev)


def _claim(job: _Job, state: GroupState, version: int, first: _Planned) -> tuple[GroupState, str] | None:
    """Take the lease of this link and kind, recording the write it is about to make, in one transaction.

    None: nothing to do (pushed meanwhile), or another push holds the lease (the message is sent
    again for when that lease ends, rather than failed towards the poison queue)."""
    now, token = job.svc.clock(), uuid.uuid4().hex
    blocked: list[Push] = []

    def decide(current: GroupState | None) -> GroupChange:
        blocked.clear()
        if current is None or (job.msg.integration_id, job.msg.key) not in current.links:
            return GroupChange()
        push = current.pushes.get(job.push_key) or Push(*job.push_key)
        if push.pushed >= version or push.held(now):
            blocked.append(push)
            return GroupChange()
        return GroupChange(pushes=[replace(push, lease=token, lease_until=now + LEASE, base_rev=first.base,
                                           planned=plan.planned_value(job.msg.kind, first.value))])

    claimed = job.svc.store.groups.change(job.msg.organization_id, job.msg.group_id, decide, known=state)
    link = claimed.links.get((job.msg.integration_id, job.msg.key)) if claimed else None
    if claimed is None or link is None:
        log.info("outbound.link_missing", extra=job.extra())
        return None
    if not blocked:
        return claimed, token
    if blocked[0].pushed >= version:
        log.info("outbound.stale", extra=job.extra())
        return None
    # Another push holds the lease: come back when it ends, rather than fail towards the poison queue.
    delay = blocked[0].lease_until - now
    job.svc.send(plan.QUEUE, plan.message(job.msg.kind, link, version), delay=clamp_retry_after(delay + 1.0))
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


def _push(job: _Job, state: GroupState, token: str, first: _Planned) -> _Outcome:
    """Send the planned write; after a conflicting edit in Azure DevOps, plan again from what it holds now."""
    planned: _Outcome | _Planned = first
    for attempt in range(MAX_REPLANS):
        if isinstance(planned, _Outcome):
            return planned
        if attempt:
            state = _mark_planned(job, state, token, planned.base, plan.planned_value(job.msg.kind, planned.value))
        link = _link_of(state, job)
        assert planned.plan.ops is not None
        try:
            written = job.client().update_work_item(link.key, plan.conditional(planned.plan.ops, planned.base))
        except AdoRevisionMismatch:
            state, read_rev = _observe_conflict(job, state)
            planned = _prepare(job, state, read_rev)
            continue
        except TransientError:
            raise
        except BundleError as error:
            return _failed(job, error)
        rev = written.get("rev")
        return _Outcome(_activity(job, f"outbound_{job.msg.kind}", planned.plan.detail),
                        rev if isinstance(rev, int) and not isinstance(rev, bool) else None, planned.value)
    raise TransientError(f"work item {job.msg.key} kept changing during the push; retrying later")


def _plan(job: _Job, state: GroupState, link: Link) -> plan.Plan:
    group = state.group
    if job.msg.kind == "status":
        return plan.status_plan(job.org_link.config, link, group)
    ado_user = None
    if group.assignee is not None:
        user = job.svc.store.users.get(group.org_id, group.assignee)
        # Azure DevOps Server has no graph: its identities API gives the domain account to write.
        find = server_users.find_user if is_server(job.integration) else ado_users.find_ado_user
        ado_user = find(job.client, job.svc.store.cache, job.msg.integration_id, user.emails if user else [])
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
    job.latest = new
    return new


def _observe_conflict(job: _Job, state: GroupState) -> tuple[GroupState, int]:
    """After a 412: read the work item, apply a change of the synced field to the group, read the group again.

    Returns the group and the revision read (the link may claim a newer one that Azure DevOps never had,
    e.g. from a forged delivery signed with the secret: testing against that would fail for ever)."""
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
    job.latest = fresh
    return fresh, rev


def _failed(job: _Job, error: BundleError) -> _Outcome:
    log.warning("outbound.failed", extra={**job.extra(), "error": type(error).__name__})
    reason: FailureReason = ("permission_refused" if isinstance(error, AdoAuthError | IdentityInvalid)
              else "work_item_deleted" if isinstance(error, AdoNotFound) else "other")
    return _Outcome(_activity(job, f"outbound_{job.msg.kind}_failed",
                              {"error": type(error).__name__, "detail": error.message}), failure=reason)


def _activity(job: _Job, kind: str, data: dict[str, Any]) -> Activity:
    return Activity(kind=kind, data={"integration_id": job.msg.integration_id, "key": job.msg.key, **data},
                    created=job.svc.clock())


def _finish(job: _Job, state: GroupState, token: str | None, outcome: _Outcome | None, version: int) -> None:
    """Record the result in one transaction: the version pushed (only when the push completed), the
    revision written marked as the bundle's own, the activity and events, and the lease released.

    `token` is the lease held (None: a result reached without writing to Azure DevOps, no lease)."""
    pushed_version = state.group.version
    newer: list[Link] = []

    def decide(current: GroupState | None) -> GroupChange:
        newer.clear()
        if current is None:
            return GroupChange()
        push = current.pushes.get(job.push_key) or Push(*job.push_key)
        if token is not None and push.lease != token:
            return GroupChange()  # our lease expired and another push took over
        link = current.links.get((job.msg.integration_id, job.msg.key))
        group = current.group
        source = group.status_source if job.msg.kind == "status" else group.assignment_source
        if outcome is not None and link is not None and group.version > pushed_version \
                and source != job.msg.integration_id:
            newer.append(link)
        released = replace(push, lease=None, lease_until=0.0, planned=None) if token is not None else push
        done = replace(released, pushed=max(push.pushed, pushed_version) if outcome is not None else push.pushed)
        change = GroupChange(pushes=[done] if done != push else [])
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

    # `state` is the claimed group: the mark and the reads after a conflict replaced its ETags since.
    after = flow_events.change_group(job.svc, job.msg.organization_id, job.msg.group_id, decide,
                                     known=job.latest or state)
    if newer and after is not None:
        # The group changed while this push held the lease (that change's message waits for the lease's
        # end): push it now rather than minutes later; the delayed message then finds nothing to do.
        try:
            job.svc.send(plan.QUEUE, plan.message(job.msg.kind, newer[0], after.group.version))
        except TransientError:
            log.warning("outbound.follow_up_not_sent", extra=job.extra())
