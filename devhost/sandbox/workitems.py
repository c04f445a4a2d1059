"""Work item writes of the sandbox: JSON Patch create and update, with ADO's rules and revisions.

No I/O. `WorkItems` is a mixin of `State`; every change bumps `rev`, `System.ChangedDate` (strictly
increasing per work item) and `System.ChangedBy`, and is published through `State.emit`.
https://learn.microsoft.com/rest/api/azure/devops/wit/work-items/update
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from devhost.sandbox.errors import ApiError
from devhost.sandbox.model import REASONS, Comment, Org, Project, User, WorkItem, later_than, now_iso

_PATCH_ERROR = "Microsoft.VisualStudio.Services.WebApi.Patch.{0}, Microsoft.VisualStudio.Services.WebApi"


class WorkItems:
    """Create and update work items; the validation rules live in `State.validate` (process.py)."""

    lock: threading.RLock

    if TYPE_CHECKING:  # provided by State and its other mixins

        def org(self, name: str) -> Org:
            raise NotImplementedError

        def _project(self, org: Org, ref: str) -> Project:
            raise NotImplementedError

        def work_item_type(self, proj: Project, ref: str) -> str:
            raise NotImplementedError

        def states(self, org: Org, proj: Project, wtype: str) -> list[dict[str, str]]:
            raise NotImplementedError

        def resolve_identity(self, org: Org, value: Any) -> str:
            raise NotImplementedError

        def validate(self, org: Org, proj: Project, fields: dict[str, Any], *, item_id: int) -> None:
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

        def record_comment(self, org: Org, item: WorkItem, text: str, actor: User, fmt: str = "html") -> Comment:
            raise NotImplementedError

    # -- reads -----------------------------------------------------------------------------------

    def item(self, org: Org, work_item_id: int) -> WorkItem:
        found = org.work_items.get(work_item_id)
        if found is None:
            raise ApiError(
                404,
                f"TF401232: Work item {work_item_id} does not exist, or you do not have permissions to read it.",
                "WorkItemUnauthorizedAccessException",
            )
        return found

    # -- writes ----------------------------------------------------------------------------------

    def create_work_item(
        self, org_name: str, project: str, type_ref: str, ops: Any, actor: User | None = None
    ) -> WorkItem:
        with self.lock:
            org = self.org(org_name)
            proj = self._project(org, project)
            wtype = self.work_item_type(proj, type_ref)
            actor = actor or org.integration
            given: dict[str, Any] = {}
            history, relations, multiline = self._apply(org, given, ops, rev=0)
            now = now_iso()
            state = str(given.get("System.State") or self.states(org, proj, wtype)[0]["name"])
            fields: dict[str, Any] = {
                "System.AreaPath": proj.name,
                "System.IterationPath": proj.name,
                "System.State": state,
                "System.Reason": REASONS.get(state, f"Moved to state {state}"),
                "System.CreatedDate": now,
                "System.CreatedBy": actor.unique,
                "System.ChangedDate": now,
                "System.ChangedBy": actor.unique,
                "System.CommentCount": len(history),
                "Microsoft.VSTS.Common.StateChangeDate": now,
                "Microsoft.VSTS.Common.Priority": 2,
                **given,
                "System.TeamProject": proj.name,
                "System.WorkItemType": wtype,
            }
            self.validate(org, proj, fields, item_id=-1)
            item = WorkItem(org.next_id, proj.id, 1, fields, relations, multiline)
            org.next_id += 1
            org.watermark += 1
            org.work_items[item.id] = item
            if history:
                item.fields["System.History"] = history[-1]
                comment = self.record_comment(org, item, history[-1], actor)
            self.emit(org, "workitem.created", item, None, actor)
            if history:
                self.emit(org, "workitem.commented", item, None, actor, comment=comment)
            return item

    def update_work_item(self, org_name: str, work_item_id: int, ops: Any, actor: User | None = None) -> WorkItem:
        with self.lock:
            org = self.org(org_name)
            item = self.item(org, work_item_id)
            actor = actor or org.integration
            fields = dict(item.fields)
            history, relations, multiline = self._apply(org, fields, ops, rev=item.rev)
            proj = org.projects[item.project_id]
            fields["System.TeamProject"] = proj.name
            self.validate(org, proj, fields, item_id=item.id)
            changed = [k for k in set(fields) | set(item.fields) if fields.get(k) != item.fields.get(k)]
            if not changed and not history and not relations and multiline.items() <= item.multiline.items():
                return item
            if "System.State" in changed:
                state = str(fields["System.State"])
                fields["System.Reason"] = REASONS.get(state, f"Moved to state {state}")
            fields["System.CommentCount"] = int(item.fields.get("System.CommentCount", 0)) + len(history)
            changes = self.revise(org, item, fields, actor, history=history[-1] if history else None)
            item.relations.extend(relations)
            item.multiline.update(multiline)
            comment = self.record_comment(org, item, history[-1], actor) if history else None
            self.emit(org, "workitem.updated", item, changes, actor)
            if comment is not None:
                self.emit(org, "workitem.commented", item, None, actor, comment=comment)
            return item

    def revise(
        self, org: Org, item: WorkItem, fields: dict[str, Any], actor: User, *, history: str | None = None
    ) -> dict[str, Any]:
        """Make `fields` the item's next revision; returns the `workitem.updated` change records."""
        now = later_than(str(item.fields.get("System.ChangedDate") or ""))
        if fields.get("System.State") != item.fields.get("System.State"):
            fields["Microsoft.VSTS.Common.StateChangeDate"] = now
        fields["System.ChangedDate"] = now
        fields["System.ChangedBy"] = actor.unique
        org.watermark += 1
        fields.pop("System.History", None)  # History is the comment of one revision, never carried over
        changes = changes_between({k: v for k, v in item.fields.items() if k != "System.History"}, fields)
        changes["System.Rev"] = {"oldValue": item.rev, "newValue": item.rev + 1}
        changes["System.AuthorizedDate"] = {"oldValue": item.fields.get("System.ChangedDate"), "newValue": now}
        changes["System.RevisedDate"] = {"oldValue": now, "newValue": "9999-01-01T00:00:00Z"}
        changes["System.Watermark"] = {"oldValue": org.watermark - 1, "newValue": org.watermark}
        if history:
            fields["System.History"] = history
            changes["System.History"] = {"newValue": history}
        item.fields = fields
        item.rev += 1
        return changes

    def _apply(
        self, org: Org, fields: dict[str, Any], ops: Any, *, rev: int
    ) -> tuple[list[str], list[dict[str, Any]], dict[str, str]]:
        """Apply a JSON Patch document to `fields` in order; returns history, relations and formats.

        A failed `test` op (on `/rev` or `/fields/...`) raises 412 before anything is stored.
        """
        if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
            message = "You must pass a valid patch document in the body of the request."
            raise ApiError(400, message, "VssPropertyValidationException")
        history: list[str] = []
        relations: list[dict[str, Any]] = []
        multiline: dict[str, str] = {}
        for op in ops:
            kind, path, value = str(op.get("op", "")).lower(), str(op.get("path", "")), op.get("value")
            if kind not in ("add", "replace", "remove", "test"):
                raise ApiError(400, f"Unsupported JSON Patch operation '{kind}'.", "PatchOperationFailedException")
            if kind == "test":
                _test(path, value, rev, fields)
            elif path.lower() == "/fields/system.history" and kind in ("add", "replace"):
                if value:
                    history.append(str(value))
            elif path.lower().startswith("/fields/") and len(path) > len("/fields/"):
                name = path[len("/fields/") :]
                if kind == "remove" or (name == "System.AssignedTo" and value in (None, "")):
                    fields.pop(name, None)
                elif name == "System.AssignedTo":
                    fields[name] = self.resolve_identity(org, value)
                else:
                    fields[name] = value
            elif path == "/relations/-" and kind == "add" and isinstance(value, dict):
                relations.append(dict(value))
            elif path.startswith("/multilineFieldsFormat/") and kind == "add":
                multiline[path.split("/", 2)[2]] = str(value)
            else:
                raise ApiError(400, f"The path '{path}' is not supported for operation '{kind}'.", "PatchException")
        return history, relations, multiline


def _test(path: str, expected: Any, rev: int, fields: dict[str, Any]) -> None:
    """JSON Patch `test`: ADO answers 412 `TestPatchOperationFailedException` (VS403351) on a mismatch."""
    if path.lower() == "/rev":
        actual: Any = rev
        equal = not isinstance(expected, bool) and str(expected).strip() == str(rev)
    elif path.lower().startswith("/fields/") and len(path) > len("/fields/"):
        actual = fields.get(path[len("/fields/") :])
        equal = actual == expected or (actual is not None and str(actual) == str(expected))
    else:
        raise ApiError(400, f"The path '{path}' is not supported for operation 'test'.", "PatchException")
    if not equal:
        raise ApiError(
            412,
            f"VS403351: Test Operation for path {path} failed, value {actual} was not equal to test value {expected}.",
            "TestPatchOperationFailedException",
            type_name=_PATCH_ERROR.format("TestPatchOperationFailedException"),
        )


def changes_between(old: dict[str, Any], new: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """resourceVersion 1.0 change records: `oldValue` absent when it was empty, `newValue` when cleared."""
    records: dict[str, dict[str, Any]] = {}
    for name in sorted(set(old) | set(new)):
        if old.get(name) == new.get(name):
            continue
        record: dict[str, Any] = {}
        if old.get(name) not in (None, ""):
            record["oldValue"] = old[name]
        if new.get(name) not in (None, ""):
            record["newValue"] = new[name]
        records[name] = record
    return records
