"""Tracker comments to Azure DevOps: the comment routes, and the `sync-outbound` push of kind "comment".

`PUT`/`DELETE /api/manage/organizations/{org_id}/groups/{group_id}/comments/{comment_id}` store the
comment in the group's partition (one transaction), then queue one message per linked work item
whose organization syncs comments. The push writes the comment's current state to one work item
with the Work Item Comments API: a create (`POST`), an edit (`PATCH`) or a delete (`DELETE`) of the
ADO comment whose id the work item's copy (`CommentTarget`) stored. That is one Azure DevOps call
per push.

No comment is posted twice: before the `POST`, the copy is marked "pending" under a lease, with the
mark of the text it posts. A retry that finds it pending (the answer was lost, or never recorded)
lists the work item's newest comments and adopts the one the interrupted attempt made (by the
bundle's identity, same visible text, not anyone's copy yet) before it posts again. A message
meeting another push's lease is sent again for after that lease, never failed.
Storage round trips per push: the integration, the group (with the comment rows), the lease, the result.
Design notes: docs/comments.md. Comments API:
https://learn.microsoft.com/rest/api/azure/devops/wit/comments?view=azure-devops-rest-7.1
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from shared.adapters import ado_comments
from shared.adapters.ado_client import AdoClient
from shared.adapters.comment_rows import comment_row, ref_row, refs_prefix, target_row
from shared.compose import Services
from shared.core import commentsync as cs
from shared.core import events
from shared.core.comments import comment_mark, outbound_html
from shared.core.errors import AdoAuthError, AdoNotFound, BundleError, IdentityInvalid, NotFound, TransientError
from shared.core.events import FailureReason
from shared.core.keys import check_id
from shared.core.models import Activity, Comment, CommentRef, CommentTarget, GroupChange, GroupState, Link
from shared.core.reply import Reply
from shared.flows import events as flow_events

log = logging.getLogger(__name__)

QUEUE = "sync-outbound"
LEASE = 120.0
MAX_STEPS = 4  # e.g. recover an interrupted create, then edit it to the current text


# --- the management routes ----------------------------------------------------------------------


def put_comment(svc: Services, org_id: str, group_id: str, comment_id: str, body: dict[str, Any]) -> Reply:
    """Create or edit a tracker comment; queue its push to every linked work item that syncs comments."""
    _ids(org_id, group_id, comment_id)
    written = cs.parse_put(body)
    now = svc.clock()

    def decide(state: GroupState | None) -> GroupChange:
        assert state is not None
        changed = cs.put(state.comments.get(comment_id), comment_id, written, now)
        return GroupChange(comments=[changed]) if changed else GroupChange()

    state = svc.store.groups.change(org_id, group_id, decide, rows=[comment_row(comment_id)])
    if state is None:
        raise NotFound("Group not found")
    _queue(svc, state, state.comments[comment_id])
    return get_comment(svc, org_id, group_id, comment_id)


def delete_comment(svc: Services, org_id: str, group_id: str, comment_id: str) -> Reply:
    """Delete a tracker comment; queue the delete of its copies (a repeated DELETE queues them again)."""
    _ids(org_id, group_id, comment_id)
    now = svc.clock()

    def decide(state: GroupState | None) -> GroupChange:
        assert state is not None
        existing = state.comments.get(comment_id)
        if existing is None:
            raise NotFound("Comment not found")
        deleted = cs.delete(existing, now)
        return GroupChange(comments=[deleted]) if deleted else GroupChange()

    state = svc.store.groups.change(org_id, group_id, decide, rows=[comment_row(comment_id)])
    if state is None:
        raise NotFound("Group not found")
    _queue(svc, state, state.comments[comment_id])
    return get_comment(svc, org_id, group_id, comment_id)


def get_comment(svc: Services, org_id: str, group_id: str, comment_id: str) -> Reply:
    """The comment with its copies on the group's linked work items."""
    _ids(org_id, group_id, comment_id)
    state = svc.store.groups.read(org_id, group_id)
    if state is None:
        raise NotFound("Group not found")
    rows = [comment_row(comment_id)] + [target_row(a, k, comment_id) for a, k in state.links]
    state = svc.store.groups.read(org_id, group_id, rows=rows)
    comment = state.comments.get(comment_id) if state else None
    if state is None or comment is None:
        raise NotFound("Comment not found")
    return Reply(body=cs.view(state, comment))


def _ids(org_id: str, group_id: str, comment_id: str) -> None:
    check_id(org_id, "org_id")
    check_id(group_id, "group_id")
    check_id(comment_id, "comment_id")


def _queue(svc: Services, state: GroupState, comment: Comment) -> list[dict[str, Any]]:
    """One message per linked work item whose organization link is active and syncs comments."""
    if comment.origin != cs.TRACKER:
        return []  # a comment from Azure DevOps is never posted anywhere
    org_id = state.group.org_id
    org_links = {account_id: svc.store.integrations.get_org_link(account_id, org_id)
                 for account_id in {link.account_id for link in state.links.values()}}
    messages = []
    for link in state.links.values():
        org_link = org_links.get(link.account_id)
        if org_link is not None and org_link.status == "active" and org_link.flag(cs.FLAG):
            messages.append(cs.message(link, comment.comment_id, comment.version))
    for message in messages:
        svc.send(QUEUE, message)
    return messages


# --- the push (queue `sync-outbound`, kind "comment") -------------------------------------------


@dataclass
class _Job:
    svc: Services
    msg: cs.CommentMessage
    client: Callable[[], AdoClient]

    @property
    def target_key(self) -> tuple[str, str, str]:
        return (self.msg.integration_id, self.msg.key, self.msg.comment_id)

    def extra(self) -> dict[str, Any]:
        m = self.msg
        return {"integration_id": m.integration_id, "group_id": m.group_id, "key": m.key, "comment_id": m.comment_id}


def push(svc: Services, message: dict[str, Any]) -> None:
    """Handle one `sync-outbound` message of kind "comment" (see the module docstring)."""
    msg = cs.parse_message(message)
    found = svc.store.integrations.read(msg.integration_id)
    integration, org_link = found.integration, found.org_link(msg.organization_id)
    if integration is None or integration.status != "active" or org_link is None or org_link.status != "active":
        log.warning("comment_push.target_missing", extra={"integration_id": msg.integration_id, "key": msg.key})
        return
    job = _Job(svc, msg, functools.cache(lambda: svc.ado(integration)))
    if not org_link.flag(cs.FLAG):
        log.info("comment_push.disabled", extra=job.extra())
        return
    state = svc.store.groups.read(msg.organization_id, msg.group_id, rows=_rows(msg))
    for _ in range(MAX_STEPS):
        comment = state.comments.get(msg.comment_id) if state else None
        if state is None or comment is None or comment.origin != cs.TRACKER or _link(state, job) is None:
            log.info("comment_push.nothing_to_push", extra=job.extra())
            return
        target = state.comment_targets.get(job.target_key) or CommentTarget(*job.target_key)
        action = cs.next_action(comment, target, svc.clock())
        if action == "none":
            return
        if action == "wait":
            delay = max(1.0, target.lease_until - svc.clock() + 1.0)
            svc.send(QUEUE, message, delay=delay)
            log.info("comment_push.lease_held", extra={**job.extra(), "delay": round(delay, 1)})
            return
        state = _step(job, state, action)
    log.warning("comment_push.too_many_steps", extra=job.extra())
    raise TransientError(f"comment {msg.comment_id} kept changing during its push; retrying later")


def _rows(msg: cs.CommentMessage) -> list[str]:
    return [comment_row(msg.comment_id), target_row(msg.integration_id, msg.key, msg.comment_id)]


def _link(state: GroupState, job: _Job) -> Link | None:
    return state.links.get((job.msg.integration_id, job.msg.key))


def _step(job: _Job, state: GroupState | None, action: cs.Action) -> GroupState | None:
    """Take the lease for `action`, do its one Azure DevOps call, record the result."""
    token, now = uuid.uuid4().hex, job.svc.clock()
    claimed: list[tuple[Comment, CommentTarget]] = []

    def claim(current: GroupState | None) -> GroupChange:
        claimed.clear()
        comment = current.comments.get(job.msg.comment_id) if current else None
        if current is None or comment is None or _link(current, job) is None:
            return GroupChange()
        target = current.comment_targets.get(job.target_key) or CommentTarget(*job.target_key)
        if cs.next_action(comment, target, now) != action:
            return GroupChange()  # someone else moved it: the caller plans again from the new state
        leased = replace(target, lease=token, lease_until=now + LEASE)
        if action == "create":
            leased = replace(leased, state="pending", started=now, planned=comment.version,
                             mark=comment_mark(outbound_html(comment.author_name, comment.body)), problem=None)
        claimed.append((comment, leased))
        return GroupChange(comment_targets=[leased])

    # Recovery needs the work item's known ADO comment ids too: read them with the claim.
    recovering = action == "recover"
    leased = job.svc.store.groups.change(
        job.msg.organization_id, job.msg.group_id, claim, known=None if recovering else state, rows=_rows(job.msg),
        ranges=[refs_prefix(job.msg.integration_id, job.msg.key)] if recovering else [])
    if not claimed or leased is None:
        return leased
    comment, target = claimed[0]
    result: _Result | None = None
    try:
        result = _call(job, leased, comment, target, action)
    finally:
        after = _finish(job, leased, token, result or _Result(target, transient=True))
    return after


@dataclass
class _Result:
    """The copy after a call (lease not yet released), with the activity, failure and reference to record."""

    target: CommentTarget
    activity: Activity | None = None
    failure: FailureReason | None = None
    ref: CommentRef | None = None
    transient: bool = False


def _call(job: _Job, state: GroupState, comment: Comment, target: CommentTarget, action: cs.Action) -> _Result:
    link = _link(state, job)
    assert link is not None
    try:
        project = link.project_id or _project_of(job, link)
        if action == "recover":
            return _recover(job, state, project, comment, target)
        if action == "create":
            answer = ado_comments.add(job.client(), project, link.key, outbound_html(comment.author_name, comment.body))
            ado_id = answer.get("id", answer.get("commentId"))
            if not isinstance(ado_id, int) or isinstance(ado_id, bool):
                raise TransientError("Azure DevOps created the comment but returned no id; it is looked up on retry")
            return _done(job, replace(target, state="posted", ado_comment_id=ado_id, version=target.planned),
                         "create", ref=True)
        assert target.ado_comment_id is not None
        if action == "update":
            html = outbound_html(comment.author_name, comment.body)
            ado_comments.update(job.client(), project, link.key, target.ado_comment_id, html)
            return _done(job, replace(target, version=comment.version), "update")
        ado_comments.delete(job.client(), project, link.key, target.ado_comment_id)
        return _done(job, replace(target, state="deleted", version=comment.version), "delete")
    except TransientError:
        raise
    except AdoNotFound as error:
        if action in ("update", "delete"):  # the ADO comment is gone already: nothing left to write to
            return _done(job, replace(target, state="deleted", version=comment.version, problem=error.message),
                         f"{action}_gone")
        return _failed(job, comment, target, error)
    except BundleError as error:
        return _failed(job, comment, target, error)


def _project_of(job: _Job, link: Link) -> str:
    """The work item's project (links made before projects were recorded do not know it)."""
    fields = job.client().get_work_item(link.key).get("fields") or {}
    project = fields.get("System.TeamProject")
    if not isinstance(project, str) or not project:
        raise AdoNotFound(f"Work item {link.key} has no project")
    return project


def _recover(job: _Job, state: GroupState, project: str, comment: Comment, target: CommentTarget) -> _Result:
    """Adopt the comment an interrupted create made, or go back to "new" so the next step posts."""
    known = {r.ado_comment_id for r in state.comment_refs.values()
             if (r.account_id, r.key) == (job.msg.integration_id, job.msg.key)}
    found = ado_comments.newest(job.client(), project, job.msg.key)
    caller = ado_comments.caller_id(job.client()) if found else ""
    adopted = cs.adoptable(found, caller=caller, mark=target.mark, started=target.started, known=known)
    log.info("comment_push.recovered", extra={**job.extra(), "adopted": adopted is not None})
    if adopted is None:
        return _Result(replace(target, state="new", version=min(target.version, comment.version - 1)))
    return _done(job, replace(target, state="posted", ado_comment_id=adopted, version=target.planned),
                 "adopt", ref=True)


def _done(job: _Job, target: CommentTarget, what: str, *, ref: bool = False) -> _Result:
    log.info("comment_push.done", extra={**job.extra(), "action": what, "ado_comment_id": target.ado_comment_id})
    activity = Activity(kind="outbound_comment", created=job.svc.clock(), data={
        "integration_id": job.msg.integration_id, "key": job.msg.key, "comment_id": job.msg.comment_id,
        "ado_comment_id": target.ado_comment_id, "action": what})
    made = CommentRef(job.msg.integration_id, job.msg.key, target.ado_comment_id, job.msg.comment_id, cs.TRACKER) \
        if ref and target.ado_comment_id is not None else None
    return _Result(replace(target, problem=None) if what in ("create", "update", "adopt") else target, activity,
                   ref=made)


def _failed(job: _Job, comment: Comment, target: CommentTarget, error: BundleError) -> _Result:
    """A permanent failure: this version is given up (a later edit tries again) and the tracker is told."""
    log.warning("comment_push.failed", extra={**job.extra(), "error": type(error).__name__})
    reason: FailureReason = ("permission_refused" if isinstance(error, AdoAuthError | IdentityInvalid)
                             else "work_item_deleted" if isinstance(error, AdoNotFound) else "other")
    state = "new" if target.state == "pending" else target.state
    given_up = replace(target, state=state, version=comment.version, problem=error.message)
    activity = Activity(kind="outbound_comment_failed", created=job.svc.clock(), data={
        "integration_id": job.msg.integration_id, "key": job.msg.key, "comment_id": job.msg.comment_id,
        "error": type(error).__name__, "detail": error.message})
    return _Result(given_up, activity, failure=reason)


def _finish(job: _Job, state: GroupState, token: str, result: _Result) -> GroupState | None:
    """Release the lease with the result, in one transaction (only while the lease is still ours).

    After a transient failure the copy keeps its state (a "pending" create stays pending, so the retry
    looks for it before posting) and the lease is released, so the retry need not wait for it."""
    msg = job.msg
    released = replace(result.target, lease=None, lease_until=0.0)

    def decide(current: GroupState | None) -> GroupChange:
        found = current.comment_targets.get(job.target_key) if current else None
        if current is None or found is None or found.lease != token:
            return GroupChange()  # the lease ran out and another push took over
        change = GroupChange(comment_targets=[released])
        if result.ref is not None and (msg.integration_id, msg.key, result.ref.ado_comment_id) \
                not in current.comment_refs:
            change.comment_refs.append(result.ref)
        change.activity += [result.activity] if result.activity else []
        if result.failure and result.activity:
            change.events.append(events.sync_failed(
                msg.organization_id, msg.group_id, result.failure, str(result.activity.data.get("detail")),
                field="comment", source="tracker", integration_id=msg.integration_id, work_item=msg.key,
                now=job.svc.clock()))
        return change

    ref = result.ref
    rows = _rows(msg) + ([ref_row(ref.account_id, ref.key, ref.ado_comment_id)] if ref else [])
    return flow_events.change_group(job.svc, msg.organization_id, msg.group_id, decide, known=state, rows=rows)
