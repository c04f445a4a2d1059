"""Comment rows of a group partition (table `Groups`), read and written with the group's other rows.

| RowKey                                  | holds                                                       |
|-----------------------------------------|-------------------------------------------------------------|
| `comment|<comment id>`                  | the comment: body (markdown), author, origin, version, deleted |
| `ctarget|<account>|<wi id>|<comment id>` | its copy on one linked work item: ADO comment id, state, lease |
| `cref|<account>|<wi id>|<ado comment id>` | an ADO comment known to the group → its group comment      |

A `cref` row is created (never replaced) in the transaction that learns the ADO comment id, so a
comment delivered twice, or posted and then delivered by its own service hook, meets the row and
changes nothing. Bodies longer than one property holds are split over `body`, `body_1`, ...
"""

from __future__ import annotations

from typing import Any

from azure.data.tables import TableEntity

from shared.adapters import tables
from shared.core.keys import join
from shared.core.models import Comment, CommentRef, CommentTarget, GroupChange, GroupState

COMMENT = "comment"
TARGET = "ctarget"
REF = "cref"
KINDS = (COMMENT, TARGET, REF)
# A string property holds at most 64 KiB of UTF-16: 15,000 characters fit even if all are astral.
CHUNK = 15_000
MAX_CHUNKS = 8
MAX_PROBLEM = 1000


def comment_row(comment_id: str) -> str:
    return join(COMMENT, comment_id)


def target_row(account_id: str, key: str, comment_id: str) -> str:
    return join(TARGET, account_id, key, comment_id)


def targets_prefix(account_id: str, key: str) -> str:
    """The RowKey prefix of every target row of one work item (ends with the separator)."""
    return join(TARGET, account_id, key, "")


def ref_row(account_id: str, key: str, ado_comment_id: int) -> str:
    return join(REF, account_id, key, str(ado_comment_id))


def refs_prefix(account_id: str, key: str) -> str:
    return join(REF, account_id, key, "")


def _body_properties(body: str) -> dict[str, str]:
    parts = [body[i:i + CHUNK] for i in range(0, len(body), CHUNK)][:MAX_CHUNKS] or [""]
    return {("body" if n == 0 else f"body_{n}"): part for n, part in enumerate(parts)}


def _body(entity: TableEntity) -> str:
    parts = [entity.get("body") or ""]
    for n in range(1, MAX_CHUNKS):
        part = entity.get(f"body_{n}")
        if not part:
            break
        parts.append(part)
    return "".join(parts)


def _comment_entity(pk: str, c: Comment) -> dict[str, Any]:
    return {"PartitionKey": pk, "RowKey": comment_row(c.comment_id), **_body_properties(c.body),
            "author_name": c.author_name, "author_email": c.author_email, "origin": c.origin,
            "version": c.version, "deleted": c.deleted, "created": c.created, "updated": c.updated,
            "account_id": c.account_id, "key": c.key, "ado_comment_id": c.ado_comment_id,
            "ado_version": c.ado_version}


def _comment(entity: TableEntity) -> Comment:
    ado_id = entity.get("ado_comment_id")
    return Comment(
        comment_id=entity["RowKey"].split("|", 1)[1], body=_body(entity),
        author_name=entity.get("author_name") or "", author_email=entity.get("author_email") or None,
        origin=entity.get("origin") or "tracker", version=int(entity.get("version") or 1),
        deleted=bool(entity.get("deleted")), created=float(entity.get("created") or 0.0),
        updated=float(entity.get("updated") or 0.0), account_id=entity.get("account_id") or None,
        key=entity.get("key") or None, ado_comment_id=int(ado_id) if ado_id is not None else None,
        ado_version=int(entity.get("ado_version") or 0))


def _target_entity(pk: str, t: CommentTarget) -> dict[str, Any]:
    return {"PartitionKey": pk, "RowKey": target_row(t.account_id, t.key, t.comment_id), "state": t.state,
            "ado_comment_id": t.ado_comment_id, "version": t.version, "lease": t.lease,
            "lease_until": t.lease_until, "started": t.started, "planned": t.planned, "mark": t.mark,
            "problem": (t.problem or "")[:MAX_PROBLEM] or None}


def _target(entity: TableEntity) -> CommentTarget:
    _, account_id, key, comment_id = entity["RowKey"].split("|", 3)
    ado_id = entity.get("ado_comment_id")
    return CommentTarget(
        account_id=account_id, key=key, comment_id=comment_id, state=entity.get("state") or "new",
        ado_comment_id=int(ado_id) if ado_id is not None else None, version=int(entity.get("version") or 0),
        lease=entity.get("lease") or None, lease_until=float(entity.get("lease_until") or 0.0),
        started=float(entity.get("started") or 0.0), planned=int(entity.get("planned") or 0),
        mark=entity.get("mark") or "", problem=entity.get("problem") or None)


def _ref_entity(pk: str, r: CommentRef) -> dict[str, Any]:
    return {"PartitionKey": pk, "RowKey": ref_row(r.account_id, r.key, r.ado_comment_id),
            "comment_id": r.comment_id, "origin": r.origin}


def _ref(entity: TableEntity) -> CommentRef:
    _, account_id, key, ado_id = entity["RowKey"].split("|", 3)
    return CommentRef(account_id=account_id, key=key, ado_comment_id=int(ado_id),
                      comment_id=entity.get("comment_id") or "", origin=entity.get("origin") or "azure_devops")


def parse_into(state: GroupState, kind: str, entity: TableEntity) -> None:
    """Add one comment row (of `kind` in KINDS) to `state`."""
    if kind == COMMENT:
        comment = _comment(entity)
        state.comments[comment.comment_id] = comment
    elif kind == TARGET:
        target = _target(entity)
        state.comment_targets[(target.account_id, target.key, target.comment_id)] = target
    elif kind == REF:
        ref = _ref(entity)
        state.comment_refs[(ref.account_id, ref.key, ref.ado_comment_id)] = ref


def ops(pk: str, etags: dict[str, str], change: GroupChange) -> list[tables.Op]:
    """The transaction operations writing a change's comment rows (each under the ETag it was read with)."""
    found: list[tables.Op] = []
    found += [tables.write(_comment_entity(pk, c), etags.get(comment_row(c.comment_id))) for c in change.comments]
    found += [tables.write(_target_entity(pk, t), etags.get(target_row(t.account_id, t.key, t.comment_id)))
              for t in change.comment_targets]
    # A reference is only ever created: meeting an existing one is a lost race, never an overwrite.
    found += [("create", _ref_entity(pk, r)) for r in change.comment_refs
              if ref_row(r.account_id, r.key, r.ado_comment_id) not in etags]
    return found


def merge(state: GroupState, change: GroupChange) -> None:
    """Fold a written change's comment rows into the state that comes out of the write."""
    state.comments.update({c.comment_id: c for c in change.comments})
    state.comment_targets.update({(t.account_id, t.key, t.comment_id): t for t in change.comment_targets})
    state.comment_refs.update({(r.account_id, r.key, r.ado_comment_id): r for r in change.comment_refs})
