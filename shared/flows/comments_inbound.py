"""Azure DevOps comments to the tracker: `workitem.commented` deliveries, and a Comments API scan.

A new comment on a linked work item becomes a comment of every linked group whose organization
syncs comments (`sync_comments`), converted from ADO's HTML to markdown (mentions as `@Name`), with
a `group.comment_added` event in the same transaction. A newer version of a comment brought in
before is an edit (sent again as `group.comment_added`, same `comment_id`).

Our own comments never come back: a comment is the bundle's when one of the linked groups stored
its ADO comment id for a post (`cref` rows, origin "tracker"), or, while a create on that work
item has not recorded its answer yet, when that create is pending with the same text mark. The
same comment delivered twice is stored once: each group creates its `cref` row for the comment in
the transaction that stores it, and a second writer meets that row.

A comment made with the work item itself (revision 1) is not brought in: when the bundle created the
item, that is the description it wrote as `System.History`; otherwise it predates every link.

Service hooks have no event for edits or deletes (docs/comments.md), so `reconcile` also lists the
newest comments of linked work items (one Comments API call each) and applies the edits and deletes
of comments brought in before. Comments it does not know are left alone: they predate the link, or
their delivery is still to come (Azure DevOps retries failed deliveries).
Storage round trips per delivered comment: one query for the integration and the linked groups, then
per linked group one read and one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from shared.adapters import ado_comments
from shared.adapters.comment_rows import COMMENT, comment_row, ref_row, refs_prefix, targets_prefix
from shared.compose import Services
from shared.core import commentsync as cs
from shared.core.comments import MAX_INBOUND_MARKDOWN, CommentDelivery, comment_mark, inbound_markdown
from shared.core.errors import AdoError, IdentityInvalid, InvalidInput
from shared.core.keys import join
from shared.core.models import GroupChange, GroupState, Integration, OrgLink
from shared.flows import events as flow_events

log = logging.getLogger(__name__)

SCAN_TOP = 200  # comments read per work item by a scan (the newest ones)
LOOKUP_TOP = 20


def receive(svc: Services, delivery: CommentDelivery, integration: Integration, org_links: list[OrgLink],
            linked: list[tuple[str, str]]) -> int:
    """Apply one `workitem.commented` delivery to the linked groups; how many groups changed."""
    key = str(delivery.work_item_id)
    context = {"account_id": integration.account_id, "work_item": key}
    targets = _syncing(org_links, linked)
    if not targets:
        log.info("comment_in.ignored.not_synced", extra=context)
        return 0
    if delivery.rev <= 1:
        # Made with the work item itself: the description the bundle wrote when it created the item
        # (as `System.History`), or a comment older than any link. Neither is brought in.
        log.info("comment_in.ignored.creation", extra=context)
        return 0
    ado_id, version = delivery.comment_id, delivery.comment_version or 1
    if ado_id is None:
        found = _look_up(svc, integration, delivery)
        if found is None:
            log.warning("comment_in.ignored.comment_not_found", extra=context)
            return 0
        ado_id, version = found
    author = delivery.author
    unique = author.unique_name if author else None
    incoming = cs.Incoming(
        account_id=integration.account_id, key=key, ado_comment_id=ado_id, version=version,
        markdown=inbound_markdown(delivery.text_html), mark=comment_mark(delivery.text_html),
        author_name=author.display_name if author else "", author_email=unique if unique and "@" in unique else None,
        actor=unique or (author.display_name if author else None), rev=delivery.rev)
    rows = [ref_row(integration.account_id, key, ado_id),
            comment_row(cs.inbound_comment_id(integration.account_id, key, ado_id))]
    return apply(svc, [incoming], targets, rows=rows, ranges=[targets_prefix(integration.account_id, key)])


def apply(svc: Services, incoming: list[cs.Incoming], targets: list[tuple[str, str]], *, rows: list[str],
          ranges: list[str], known_only: bool = False) -> int:
    """Apply comments of one work item (oldest first) to its linked groups; how many group changes.
    `known_only`: only comments some group brought in before (edits and deletes)."""
    states: list[tuple[str, str, GroupState | None]] = [
        (org, group, svc.store.groups.read(org, group, rows=rows, ranges=ranges)) for org, group in targets]
    changes = 0
    for comment in incoming:
        extra = {"account_id": comment.account_id, "work_item": comment.key, "ado_comment_id": comment.ado_comment_id}
        present = [s for _, _, s in states if s is not None]
        if cs.is_own(present, comment):
            log.info("comment_in.ignored.own", extra=extra)
            continue
        ref = (comment.account_id, comment.key, comment.ado_comment_id)
        if known_only and not any(ref in s.comment_refs for s in present):
            continue
        for n, (org, group, state) in enumerate(states):
            if state is None:
                continue
            changed: list[bool] = []

            def decide(current: GroupState | None, comment: cs.Incoming = comment,
                       changed: list[bool] = changed) -> GroupChange:
                change = cs.receive(current, comment, svc.clock())
                changed[:] = [bool(change)]
                return change

            states[n] = (org, group, flow_events.change_group(svc, org, group, decide, known=state, rows=rows,
                                                              ranges=ranges))
            changes += bool(changed and changed[0])
        log.info("comment_in.applied", extra={**extra, "groups": len(states)})
    return changes


def _syncing(org_links: Iterable[OrgLink], linked: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    syncing = {link.org_id for link in org_links if link.status == "active" and link.flag(cs.FLAG)}
    return [(org, group) for org, group in linked if org in syncing]


def _look_up(svc: Services, integration: Integration, delivery: CommentDelivery) -> tuple[int, int] | None:
    """The id and version of a delivered comment whose payload has no `commentVersionRef`: the newest
    comment with the same visible text (made at `System.ChangedDate` when ADO says so)."""
    mark = comment_mark(delivery.text_html)
    try:
        found = ado_comments.newest(svc.ado(integration), delivery.project_id, delivery.work_item_id,
                                    top=LOOKUP_TOP)
    except (AdoError, IdentityInvalid) as error:
        log.warning("comment_in.lookup_failed", extra={"account_id": integration.account_id,
                                                       "error": type(error).__name__})
        return None
    for comment in found:
        ident, version = comment.get("id", comment.get("commentId")), comment.get("version", 1)
        if isinstance(ident, int) and isinstance(version, int) and comment_mark(str(comment.get("text") or "")) == mark:
            return ident, version
    return None


# --- the Comments API scan ----------------------------------------------------------------------


def reconcile(svc: Services, integration: Integration, org_links: list[OrgLink],
              linked: dict[str, list[tuple[str, str]]]) -> int:
    """Scan the comments of every linked work item of organizations that sync comments; changes made."""
    changes = 0
    for key, groups in sorted(linked.items()):
        targets = _syncing(org_links, groups)
        if targets:
            changes += scan(svc, integration, key, targets)
    return changes


def scan(svc: Services, integration: Integration, key: str, targets: list[tuple[str, str]]) -> int:
    """List the newest comments of work item `key` (one call) and apply edits and deletes of known ones."""
    account_id = integration.account_id
    ranges = [targets_prefix(account_id, key), refs_prefix(account_id, key),
              join(COMMENT, cs.inbound_comment_prefix(account_id, key))]
    project = next((s.links[(account_id, key)].project_id
                    for s in (svc.store.groups.read(o, g) for o, g in targets[:1])
                    if s is not None and (account_id, key) in s.links), None)
    client = svc.ado(integration)
    if not project:
        fields = client.get_work_item(key).get("fields") or {}
        project = str(fields.get("System.TeamProject") or "")
    found = ado_comments.newest(client, project, key, top=SCAN_TOP, include_deleted=True)
    incoming = [c for c in (_incoming(account_id, key, raw) for raw in reversed(found)) if c is not None]
    return apply(svc, incoming, targets, rows=[], ranges=ranges, known_only=True) if incoming else 0


def _incoming(account_id: str, key: str, raw: dict[str, object]) -> cs.Incoming | None:
    ident, version, text = raw.get("id", raw.get("commentId")), raw.get("version", 1), raw.get("text")
    if not isinstance(ident, int) or isinstance(ident, bool) or not isinstance(version, int):
        return None
    text = text if isinstance(text, str) else ""
    author = raw.get("createdBy")
    author = author if isinstance(author, dict) else {}
    name, unique = str(author.get("displayName") or ""), author.get("uniqueName")
    unique = unique if isinstance(unique, str) and unique else None
    try:
        markdown = (text[:MAX_INBOUND_MARKDOWN] if str(raw.get("format", "")).lower() == "markdown"
                    else inbound_markdown(text))
    except InvalidInput:
        return None
    return cs.Incoming(account_id=account_id, key=key, ado_comment_id=ident, version=version, markdown=markdown,
                       mark=comment_mark(text), author_name=name, author_email=unique if unique and "@" in unique
                       else None, actor=unique or name or None, rev=None, deleted=bool(raw.get("isDeleted")))
