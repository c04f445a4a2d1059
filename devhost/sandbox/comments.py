"""Work item comments of the sandbox (the Comments API, v3/v4 shape): add, list, get, edit, delete.

No I/O. `Comments` is a mixin of `State`. Adding a comment (through this API, or a `System.History`
patch) makes a new work item revision (`rev`, `System.CommentCount`, `System.History`) and fires
`workitem.updated` and `workitem.commented`; editing or deleting one changes only the comment, and
fires nothing: service hooks have no event for either.
https://learn.microsoft.com/rest/api/azure/devops/wit/comments
https://learn.microsoft.com/azure/devops/service-hooks/events#work-item-commented-on
"""

from __future__ import annotations

import html
import threading
from typing import TYPE_CHECKING, Any

from devhost.sandbox.errors import ApiError
from devhost.sandbox.model import Comment, CommentVersion, Org, User, WorkItem, later_than

FORMATS = ("html", "markdown")


class Comments:
    lock: threading.RLock
    base_url: str

    if TYPE_CHECKING:  # provided by State and its other mixins

        def org(self, name: str) -> Org:
            raise NotImplementedError

        def item(self, org: Org, work_item_id: int) -> WorkItem:
            raise NotImplementedError

        def instance(self, org: Org) -> str:
            raise NotImplementedError

        def revise(
            self, org: Org, item: WorkItem, fields: dict[str, Any], actor: User, *, history: str | None = None
        ) -> dict[str, Any]:
            raise NotImplementedError

        def emit(
            self,
            org: Org,
            event_type: str,
            item: WorkItem,
            changes: dict[str, Any] | None,
            actor: User,
            *,
            comment: Comment | None = None,
        ) -> None:
            raise NotImplementedError

    # -- writes ----------------------------------------------------------------------------------

    def record_comment(self, org: Org, item: WorkItem, text: str, actor: User, fmt: str = "html") -> Comment:
        """Store a comment made with the item's current revision (no event: the caller emits)."""
        when = str(item.fields.get("System.ChangedDate") or later_than(""))
        comment = Comment(
            id=org.next_comment_id,
            work_item_id=item.id,
            created_by=actor,
            created_date=when,
            format=fmt,
            versions=[CommentVersion(1, text, actor, when)],
        )
        org.next_comment_id += 1
        item.comments.append(comment)
        return comment

    def add_comment(self, org_name: str, work_item_id: int, text: Any, actor: User | None, fmt: str) -> Comment:
        with self.lock:
            org = self.org(org_name)
            item = self.item(org, work_item_id)
            if not isinstance(text, str) or not text.strip():
                raise ApiError(400, "The comment text cannot be empty.", "ArgumentException")
            if fmt not in FORMATS:
                raise ApiError(400, f"The comment format '{fmt}' is not valid.", "ArgumentException")
            actor = actor or org.integration
            fields = dict(item.fields)
            fields["System.CommentCount"] = int(fields.get("System.CommentCount", 0)) + 1
            changes = self.revise(org, item, fields, actor, history=text)
            comment = self.record_comment(org, item, text, actor, fmt)
            self.emit(org, "workitem.updated", item, changes, actor)
            self.emit(org, "workitem.commented", item, None, actor, comment=comment)
            return comment

    def edit_comment(
        self, org_name: str, work_item_id: int, comment_id: int, text: Any, actor: User | None
    ) -> Comment:
        with self.lock:
            org = self.org(org_name)
            comment = self.comment(org, work_item_id, comment_id)
            if not isinstance(text, str) or not text.strip():
                raise ApiError(400, "The comment text cannot be empty.", "ArgumentException")
            actor = actor or org.integration
            when = later_than(comment.current.modified_date)
            comment.versions.append(CommentVersion(comment.current.version + 1, text, actor, when))
            return comment

    def delete_comment(self, org_name: str, work_item_id: int, comment_id: int, actor: User | None) -> None:
        with self.lock:
            org = self.org(org_name)
            comment = self.comment(org, work_item_id, comment_id)
            actor = actor or org.integration
            last = comment.current
            when = later_than(last.modified_date)
            comment.versions.append(CommentVersion(last.version + 1, last.text, actor, when, is_deleted=True))

    # -- reads -----------------------------------------------------------------------------------

    def comment(self, org: Org, work_item_id: int, comment_id: int, *, include_deleted: bool = False) -> Comment:
        item = self.item(org, work_item_id)
        for comment in item.comments:
            if comment.id == comment_id and (include_deleted or not comment.current.is_deleted):
                return comment
        raise ApiError(
            404,
            f"The comment {comment_id} does not exist on work item {work_item_id}.",
            "CommentNotFoundException",
        )

    def comment_page(
        self,
        org: Org,
        work_item_id: int,
        *,
        top: int,
        token: int,
        include_deleted: bool,
        descending: bool,
    ) -> tuple[list[Comment], int, int | None]:
        """One page of comments: (page, total non-deleted, next continuation token)."""
        item = self.item(org, work_item_id)
        visible = [c for c in item.comments if include_deleted or not c.current.is_deleted]
        ordered = sorted(visible, key=lambda c: c.id, reverse=descending)
        page = ordered[token : token + top]
        total = len([c for c in item.comments if not c.current.is_deleted])
        return page, total, token + top if token + top < len(ordered) else None


def render(instance: str, project_id: str, comment: Comment, *, rendered: bool) -> dict[str, Any]:
    """A comment as `GET .../workItems/{id}/comments/{commentId}` answers it (IdentityRefs, ISO dates)."""
    last = comment.current
    url = f"{instance}{project_id}/_apis/wit/workItems/{comment.work_item_id}/comments/{comment.id}"
    body: dict[str, Any] = {
        "workItemId": comment.work_item_id,
        "id": comment.id,
        "version": last.version,
        "text": last.text,
        "createdBy": comment.created_by.identity_ref(instance),
        "createdDate": comment.created_date,
        "modifiedBy": last.modified_by.identity_ref(instance),
        "modifiedDate": last.modified_date,
        "isDeleted": last.is_deleted,
        "format": comment.format,
        "mentions": [],
        "reactions": [],
        "url": url,
    }
    if rendered:
        body["renderedText"] = last.text if comment.format == "html" else _markdown_html(last.text)
    return body


def version_ref(instance: str, project_id: str, comment: Comment) -> dict[str, Any]:
    """`resource.commentVersionRef` of `workitem.commented` (seen in captured deliveries)."""
    base = f"{instance}{project_id}/_apis/wit/workItems/{comment.work_item_id}/comments/{comment.id}"
    return {
        "commentId": comment.id,
        "version": comment.current.version,
        "url": f"{base}/versions/{comment.current.version}",
    }


def _markdown_html(text: str) -> str:
    """A minimal Markdown rendering: escaped paragraphs (the sandbox does not format Markdown)."""
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()]
    return "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
