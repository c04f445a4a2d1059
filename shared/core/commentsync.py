"""Comment sync decisions, without I/O: messages, the tracker's comment requests, what a push does next,
and what an Azure DevOps comment does to a group.

Design and sources: docs/comments.md. Our own comments are recognised by the ADO comment ids the
bundle stored (`CommentRef` rows with origin "tracker"), never by their text; the text mark is only
a tie-break inside the bundle's own unfinished attempt (a create whose answer was not recorded yet).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal

from shared.core import events
from shared.core import validate as v
from shared.core.comments import MAX_BODY_MARKDOWN, comment_mark
from shared.core.errors import InvalidInput
from shared.core.keys import check_id
from shared.core.models import Activity, Comment, CommentRef, CommentTarget, GroupChange, GroupState, Link
from shared.core.validate import is_number

KIND = "comment"
FLAG = "sync_comments"
TRACKER: Final = "tracker"
AZURE_DEVOPS: Final = "azure_devops"
MAX_AUTHOR_NAME = 256
MAX_EMAIL = 320
# How far before an interrupted create began a comment it may have made is looked for (clock skew).
RECOVERY_SKEW = 300.0

Action = Literal["none", "wait", "create", "recover", "update", "delete"]


# --- sync-outbound messages ---------------------------------------------------------------------


@dataclass(frozen=True)
class CommentMessage:
    """Push comment `comment_id` of a group to work item `key` (its current state, whatever the version)."""

    integration_id: str
    organization_id: str
    group_id: str
    key: str
    comment_id: str
    version: int | None


def message(link: Link, comment_id: str, version: int) -> dict[str, Any]:
    return {"kind": KIND, "integration_id": link.account_id, "organization_id": link.org_id,
            "group_id": link.group_id, "key": link.key, "comment_id": comment_id, "version": version}


def parse_message(message: dict[str, Any]) -> CommentMessage:
    """Validate a `sync-outbound` message of kind "comment" (InvalidInput when malformed)."""
    if message.get("kind") != KIND:
        raise InvalidInput(f"kind must be {KIND}", field="kind")
    key = message.get("key")
    key = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
    if not isinstance(key, str) or not is_number(key) or len(key) > 12:
        raise InvalidInput("key must be a work item id", field="key")
    version = message.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 0):
        raise InvalidInput("version must be a non-negative integer", field="version")
    return CommentMessage(
        integration_id=check_id(message.get("integration_id"), "integration_id"),
        organization_id=check_id(message.get("organization_id"), "organization_id"),
        group_id=check_id(message.get("group_id"), "group_id"),
        key=key,
        comment_id=check_id(message.get("comment_id"), "comment_id"),
        version=version,
    )


# --- the tracker's requests ---------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    """A comment as the tracker sent it: `PUT .../comments/{comment_id}`."""

    author_name: str
    author_email: str | None
    body: str


def parse_put(body: dict[str, Any]) -> Written:
    """`{"author": {"name", "email"?}, "body": "<markdown>"}`, validated (422 naming the field)."""
    author = v.mapping(body, "author", required=True) or {}
    try:
        name = v.required_text(author, "name", max_len=MAX_AUTHOR_NAME)
        email = v.text(author, "email", required=False, max_len=MAX_EMAIL)
    except InvalidInput as error:
        raise v.invalid(f"author.{error.field}", error.message.split(": ", 1)[-1]) from None
    if email is not None and "@" not in email:
        raise v.invalid("author.email", "must be an e-mail address")
    text = v.required_text(body, "body", max_len=MAX_BODY_MARKDOWN)
    unknown = sorted(set(body) - {"author", "body"})
    if unknown:
        raise v.invalid(unknown[0], "is not a known field")
    return Written(author_name=name.strip(), author_email=email.strip() if email else None, body=text)


def put(existing: Comment | None, comment_id: str, written: Written, now: float) -> Comment | None:
    """The comment after a tracker PUT; None when nothing changes. A comment that came from Azure DevOps
    or was deleted cannot be changed (InvalidInput 409); the same text again is not a change."""
    if existing is None:
        return Comment(comment_id=comment_id, body=written.body, author_name=written.author_name,
                       author_email=written.author_email, origin=TRACKER, version=1, created=now, updated=now)
    same = (existing.body, existing.author_name, existing.author_email) == (
        written.body, written.author_name, written.author_email)
    if existing.origin != TRACKER:
        if existing.body == written.body:
            return None  # the tracker's copy of a comment it was sent: nothing to do
        raise InvalidInput("This comment came from Azure DevOps; only its author can edit it there.",
                           field="comment_id", status=409)
    if existing.deleted:
        raise InvalidInput("This comment was deleted; write a new one.", field="comment_id", status=409)
    if same:
        return None
    return replace(existing, body=written.body, author_name=written.author_name,
                   author_email=written.author_email, version=existing.version + 1, updated=now)


def delete(existing: Comment, now: float) -> Comment | None:
    """The comment after a tracker DELETE (None: already deleted)."""
    if existing.deleted:
        return None
    return replace(existing, deleted=True, version=existing.version + 1, updated=now)


def view(state: GroupState, comment: Comment) -> dict[str, Any]:
    """The comment as the management API shows it, with its copies on work items."""
    copies = [t for t in state.comment_targets.values() if t.comment_id == comment.comment_id]
    return {
        "comment_id": comment.comment_id,
        "origin": comment.origin,
        "author": {"name": comment.author_name, "email": comment.author_email},
        "body": comment.body,
        "deleted": comment.deleted,
        "version": comment.version,
        "source": ({"account_id": comment.account_id, "key": comment.key, "ado_comment_id": comment.ado_comment_id}
                   if comment.origin == AZURE_DEVOPS else None),
        "work_items": [{"account_id": t.account_id, "key": t.key, "ado_comment_id": t.ado_comment_id,
                        "state": t.state, "version": t.version, "problem": t.problem}
                       for t in sorted(copies, key=lambda t: (t.account_id, t.key))],
    }


# --- pushes -------------------------------------------------------------------------------------


def next_action(comment: Comment, target: CommentTarget, now: float) -> Action:
    """What the push of `comment` to one work item does next, given that work item's copy."""
    if target.held(now):
        return "wait"
    if target.state == "pending":
        return "recover"  # an earlier create may have posted it: look before posting again
    if comment.deleted:
        return "delete" if target.state == "posted" else "none"
    if target.state == "posted":
        return "update" if target.version < comment.version else "none"
    if target.state == "new":
        return "create" if target.version < comment.version else "none"
    return "none"  # deleted in Azure DevOps: not brought back


def adoptable(found: list[dict[str, Any]], *, caller: str, mark: str, started: float, known: set[int]) -> int | None:
    """The id of the comment an interrupted create made: in `found` (newest first), the newest one by
    `caller` whose visible text has `mark`, made after the attempt began (less the skew), and not
    already the copy of another comment (`known`)."""
    for comment in found:
        ident = comment.get("id", comment.get("commentId"))
        author = comment.get("createdBy")
        author_id = author.get("id") if isinstance(author, dict) else None
        if not isinstance(ident, int) or isinstance(ident, bool) or ident in known:
            continue
        created = _timestamp(comment.get("createdDate"))
        if created is not None and created < started - RECOVERY_SKEW:
            break  # newest first: everything further is older still
        if caller and author_id != caller:
            continue
        if comment_mark(str(comment.get("text") or "")) == mark:
            return ident
    return None


def _timestamp(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


# --- inbound: an Azure DevOps comment -----------------------------------------------------------


@dataclass(frozen=True)
class Incoming:
    """One comment as Azure DevOps reported it (a `workitem.commented` delivery or the Comments API)."""

    account_id: str
    key: str
    ado_comment_id: int
    version: int
    markdown: str
    mark: str
    author_name: str
    author_email: str | None
    actor: str | None
    rev: int | None
    deleted: bool = False


def inbound_comment_id(account_id: str, key: str, ado_comment_id: int) -> str:
    """The id a comment from Azure DevOps has in the bundle (and in its `group.comment_added` event)."""
    return check_id(f"ado-{account_id}-{key}-{ado_comment_id}", "comment_id")


def inbound_comment_prefix(account_id: str, key: str) -> str:
    """What the ids of every comment brought in from one work item start with."""
    return f"ado-{account_id}-{key}-"


def is_own(states: list[GroupState], incoming: Incoming) -> bool:
    """Whether the bundle wrote this comment: its id is one the bundle stored for a post, or (before the
    post's answer was recorded) a create on this work item is unfinished and has the same text mark."""
    ref_key = (incoming.account_id, incoming.key, incoming.ado_comment_id)
    for state in states:
        ref = state.comment_refs.get(ref_key)
        if ref is not None and ref.origin == TRACKER:
            return True
        if any(t.account_id == incoming.account_id and t.key == incoming.key and t.state == "pending"
               and t.mark == incoming.mark for t in state.comment_targets.values()):
            return True
    return False


def receive(state: GroupState | None, incoming: Incoming, now: float) -> GroupChange:
    """A comment from Azure DevOps in one linked group: new → a group comment and a `group.comment_added`
    event; a newer version of one brought in before → the edit (sent again as `group.comment_added`
    with the same `comment_id`); the same or an older version, or one of ours → nothing."""
    if state is None or (incoming.account_id, incoming.key) not in state.links:
        return GroupChange()
    ref = state.comment_refs.get((incoming.account_id, incoming.key, incoming.ado_comment_id))
    if ref is not None:
        existing = state.comments.get(ref.comment_id)
        if ref.origin != AZURE_DEVOPS or existing is None or existing.deleted:
            return GroupChange()
        if incoming.deleted:
            gone = replace(existing, deleted=True, version=existing.version + 1, updated=now)
            return GroupChange(comments=[gone], activity=[_activity("comment_deleted_in_ado", incoming, gone, now)])
        if incoming.version <= existing.ado_version or incoming.markdown == existing.body:
            return GroupChange()
        edited = replace(existing, body=incoming.markdown, version=existing.version + 1,
                         ado_version=incoming.version, updated=now)
        return GroupChange(comments=[edited], activity=[_activity("comment_edited_in_ado", incoming, edited, now)],
                           events=[_event(state, incoming, edited, now)])
    if incoming.deleted or not incoming.markdown.strip():
        return GroupChange()
    comment = Comment(
        comment_id=inbound_comment_id(incoming.account_id, incoming.key, incoming.ado_comment_id),
        body=incoming.markdown, author_name=incoming.author_name, author_email=incoming.author_email,
        origin=AZURE_DEVOPS, version=1, created=now, updated=now, account_id=incoming.account_id,
        key=incoming.key, ado_comment_id=incoming.ado_comment_id, ado_version=incoming.version)
    new_ref = CommentRef(incoming.account_id, incoming.key, incoming.ado_comment_id, comment.comment_id, AZURE_DEVOPS)
    return GroupChange(comments=[comment], comment_refs=[new_ref],
                       activity=[_activity("comment_from_ado", incoming, comment, now)],
                       events=[_event(state, incoming, comment, now)])


def _activity(kind: str, incoming: Incoming, comment: Comment, now: float) -> Activity:
    return Activity(kind=kind, created=now, data={
        "source": AZURE_DEVOPS, "integration_id": incoming.account_id, "key": incoming.key,
        "comment_id": comment.comment_id, "ado_comment_id": incoming.ado_comment_id, "actor": incoming.actor})


def _event(state: GroupState, incoming: Incoming, comment: Comment, now: float) -> events.Event:
    group = state.group
    return events.comment_added(group.org_id, group.group_id, comment.body, source=AZURE_DEVOPS,
                                integration_id=incoming.account_id, work_item=incoming.key,
                                comment_id=comment.comment_id, rev=incoming.rev, actor=incoming.actor, now=now)
