"""Groups in Table Storage: a tracker issue with its links, outbound pushes, creation claims and activity.

One partition per group (PartitionKey `<org id>|<group id>`) in table `Groups`:

| RowKey                           | holds                                                   |
|----------------------------------|---------------------------------------------------------|
| `group`                          | status, assignee, project, version                      |
| `link|<account id>|<wi id>`      | a linked work item, with the revisions applied per field |
| `push|<account id>|<wi id>|<kind>` | the version pushed to it, and the lease of a push     |
| `creation|<account id>`          | a claim on creating the group's work item               |
| `activity|<time ns>|<nonce>`     | the group's history, oldest first                       |
| `comment|…`, `ctarget|…`, `cref|…` | comments and their copies (`comment_rows`)            |

Everything but the activity is read in one query (`read`), and every change, with its activity,
is one ETag-guarded transaction (`change`): nothing is ever half-applied.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from azure.data.tables import TableEntity

from shared.adapters import comment_rows, tables
from shared.adapters.integrations import IntegrationStore
from shared.core import event_json, events
from shared.core.errors import Conflict
from shared.core.events import Event
from shared.core.keys import join
from shared.core.models import Activity, Creation, Group, GroupChange, GroupState, Link, Push

TABLE = "Groups"
RK_GROUP = "group"
LINK = "link"
PUSH = "push"
CREATION = "creation"
ACTIVITY = "activity"
EVENT = "event"
MAX_TEXT = 8000  # characters of free text kept on a row (a property holds at most 32K)
# The SDK substitutes `@name` only as a whole space-separated word: keep a space before each `)`.
READ_FILTER = ("PartitionKey eq @pk and ((RowKey ge @clow and RowKey lt @chigh ) or (RowKey eq @group ) or "
               "(RowKey ge @llow and RowKey lt @lhigh ) or (RowKey ge @plow and RowKey lt @phigh ) )")

Decide = Callable[[GroupState | None], GroupChange]


def partition(org_id: str, group_id: str) -> str:
    return join(org_id, group_id)


def _group_entity(group: Group) -> dict[str, Any]:
    return {
        "PartitionKey": partition(group.org_id, group.group_id),
        "RowKey": RK_GROUP,
        "project_id": group.project_id,
        "title": group.title,
        "status": group.status,
        "assignee": group.assignee,
        "assignment_source": group.assignment_source,
        "status_source": group.status_source,
        "version": group.version,
    }


def _group(org_id: str, group_id: str, entity: TableEntity) -> Group:
    return Group(
        org_id=org_id,
        group_id=group_id,
        project_id=entity.get("project_id", ""),
        title=entity.get("title", ""),
        status=entity.get("status", "unresolved"),
        assignee=entity.get("assignee"),
        assignment_source=entity.get("assignment_source"),
        status_source=entity.get("status_source"),
        version=int(entity.get("version", 0)),
    )


def _link_entity(link: Link) -> dict[str, Any]:
    return {
        "PartitionKey": partition(link.org_id, link.group_id),
        "RowKey": join(LINK, link.account_id, link.key),
        "url": link.url[:MAX_TEXT],
        "title": link.title[:MAX_TEXT],
        # A copy for display only: cut so a long work item description always fits the row.
        "description": link.description[:MAX_TEXT],
        "display_name": link.display_name[:MAX_TEXT],
        "project_id": link.project_id,
        "work_item_type": link.work_item_type,
        "state_rev": link.state_rev,
        "state_delivery": link.state_delivery,
        "assignee_rev": link.assignee_rev,
        "assignee_delivery": link.assignee_delivery,
        "state_value": link.state_value,
        "assignee_value": link.assignee_value,
    }


def _link(org_id: str, group_id: str, entity: TableEntity) -> Link:
    _, account_id, key = entity["RowKey"].split("|", 2)
    return Link(
        org_id=org_id,
        group_id=group_id,
        account_id=account_id,
        key=key,
        url=entity.get("url", ""),
        title=entity.get("title", ""),
        description=entity.get("description", ""),
        display_name=entity.get("display_name", ""),
        project_id=entity.get("project_id"),
        work_item_type=entity.get("work_item_type"),
        state_rev=int(entity.get("state_rev", 0)),
        state_delivery=entity.get("state_delivery", ""),
        assignee_rev=int(entity.get("assignee_rev", 0)),
        assignee_delivery=entity.get("assignee_delivery", ""),
        state_value=entity.get("state_value"),
        assignee_value=entity.get("assignee_value"),
    )


def _push_entity(pk: str, push: Push) -> dict[str, Any]:
    return {"PartitionKey": pk, "RowKey": join(PUSH, push.account_id, push.key, push.kind), "pushed": push.pushed,
            "lease": push.lease, "lease_until": push.lease_until, "base_rev": push.base_rev,
            "planned": push.planned}


def _push(entity: TableEntity) -> Push:
    _, account_id, key, kind = entity["RowKey"].split("|", 3)
    return Push(account_id=account_id, key=key, kind=kind, pushed=int(entity.get("pushed", 0)),
                lease=entity.get("lease") or None, lease_until=float(entity.get("lease_until") or 0.0),
                base_rev=int(entity.get("base_rev") or 0), planned=entity.get("planned"))


def _event_entity(pk: str, event: Event) -> dict[str, Any]:
    """An event waiting in the group's outbox, oldest first (event ids sort by creation)."""
    return {"PartitionKey": pk, "RowKey": join(EVENT, event.id), "payload": event_json.to_json(event)}


def _creation_entity(pk: str, creation: Creation) -> dict[str, Any]:
    return {"PartitionKey": pk, "RowKey": join(CREATION, creation.account_id), "started": creation.started,
            "attempted": creation.attempted, "key": creation.key}


def _creation(entity: TableEntity) -> Creation:
    return Creation(account_id=entity["RowKey"].split("|", 1)[1], started=float(entity.get("started") or 0.0),
                    attempted=bool(entity.get("attempted")), key=entity.get("key") or None)


class GroupStore:
    """Groups, their links, pushes, creation claims and activity."""

    def __init__(self, integrations: IntegrationStore, clock: Callable[[], float] = time.time) -> None:
        self._integrations = integrations
        self._clock = clock

    def read(self, org_id: str, group_id: str, *, rows: Sequence[str] = (),
             ranges: Sequence[str] = ()) -> GroupState | None:
        """The group with its links, pushes and creation claims (one query; activity excluded).

        `rows` (exact RowKeys) and `ranges` (RowKey prefixes ending in `|`) add comment rows to the
        same query (`shared.adapters.comment_rows`).
        """
        pk = partition(org_id, group_id)
        bounds: dict[str, str] = {}
        for name, prefix in (("c", CREATION), ("l", LINK), ("p", PUSH)):
            bounds[name + "low"], bounds[name + "high"] = tables.prefix_range(prefix + "|")
        flt = READ_FILTER
        if rows or ranges:
            extra = [f"(RowKey eq @row{n} )" for n in range(len(rows))]
            extra += [f"(RowKey ge @xlow{n} and RowKey lt @xhigh{n} )" for n in range(len(ranges))]
            flt = READ_FILTER[:-2] + " or " + " or ".join(extra) + " )"
            bounds.update({f"row{n}": row for n, row in enumerate(rows)})
            for n, prefix in enumerate(ranges):
                bounds[f"xlow{n}"], bounds[f"xhigh{n}"] = tables.prefix_range(prefix)
        group: Group | None = None
        state = GroupState(group=Group(org_id, group_id, "", ""), links={}, etags={})
        for entity in tables.query(TABLE, flt, params={"pk": pk, "group": RK_GROUP, **bounds}):
            row = entity["RowKey"]
            state.etags[row] = tables.etag(entity)
            kind = row.split("|", 1)[0]
            if row == RK_GROUP:
                group = _group(org_id, group_id, entity)
            elif kind == LINK:
                link = _link(org_id, group_id, entity)
                state.links[(link.account_id, link.key)] = link
            elif kind == PUSH:
                push = _push(entity)
                state.pushes[(push.account_id, push.key, push.kind)] = push
            elif kind == CREATION:
                creation = _creation(entity)
                state.creations[creation.account_id] = creation
            elif kind in comment_rows.KINDS:
                comment_rows.parse_into(state, kind, entity)
        if group is None:
            return None
        state.group = group
        return state

    def get(self, org_id: str, group_id: str) -> Group | None:
        entity = tables.get(TABLE, partition(org_id, group_id), RK_GROUP)
        return _group(org_id, group_id, entity) if entity else None

    def activity(self, org_id: str, group_id: str, limit: int = 200) -> list[Activity]:
        """The group's activity, oldest first (at most `limit` newest entries)."""
        low, high = tables.prefix_range(ACTIVITY + "|")
        rows = tables.query(TABLE, "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                            pk=partition(org_id, group_id), low=low, high=high)
        items = [Activity(kind=r.get("kind", ""), data=tables.loads(r.get("data"), {}),
                          created=r.get("created", 0.0)) for r in rows]
        return items[-limit:]

    def put(self, group: Group) -> Group:
        """Create or replace a group's tracker fields (keeps its links, activity and version counter)."""

        def decide(state: GroupState | None) -> GroupChange:
            version = state.group.version + 1 if state else 1
            # A field set from the tracker is no longer the integration's doing.
            same_assignee = state is not None and state.group.assignee == group.assignee
            source = state.group.assignment_source if state and same_assignee else None
            same_status = state is not None and state.group.status == group.status
            status_source = state.group.status_source if state and same_status else None
            return GroupChange(group=replace(group, version=version, assignment_source=source,
                                             status_source=status_source))

        state = self.change(group.org_id, group.group_id, decide, create=True)
        assert state is not None
        return state.group

    def change(self, org_id: str, group_id: str, decide: Decide, *, create: bool = False,
               known: GroupState | None = None, rows: Sequence[str] = (),
               ranges: Sequence[str] = ()) -> GroupState | None:
        """Apply `decide` to the current group in one transaction, retrying on concurrent writes.

        `decide` gets the current state (None when the group does not exist; then it is only called
        when `create` is set) and must be pure: it may run more than once. Returns the new state
        (with the ETags of the rows written, so a caller may write again without reading), or None
        when the group does not exist and `create` is not set. `known` is a state the caller has
        just read; the first attempt uses it instead of reading again. `rows` and `ranges` are the
        comment rows `decide` needs (see `read`).
        """
        first = [known]

        def attempt() -> GroupState | None:
            state = (first.pop() if first and first[0] is not None
                     else self.read(org_id, group_id, rows=rows, ranges=ranges))
            first.clear()
            if state is None and not create:
                return None
            change = decide(state)
            if not change:
                return state
            return self._write(org_id, group_id, state, change)

        return tables.optimistic(f"group {group_id}", attempt)

    def _write(self, org_id: str, group_id: str, state: GroupState | None, change: GroupChange) -> GroupState:
        pk = partition(org_id, group_id)
        etags = state.etags if state else {}
        ops: list[tables.Op] = []
        group = change.group or (state.group if state else None)
        if group is None:
            raise Conflict(f"group {group_id} does not exist")
        # The group row is always written under its ETag, so two writers of one partition never interleave.
        ops.append(tables.write(_group_entity(group), etags.get(RK_GROUP)))
        ops += [tables.write(_link_entity(link), etags.get(join(LINK, link.account_id, link.key)))
                for link in change.links]
        ops += [tables.write(_push_entity(pk, push), etags.get(join(PUSH, push.account_id, push.key, push.kind)))
                for push in change.pushes]
        ops += [tables.write(_creation_entity(pk, c), etags.get(join(CREATION, c.account_id)))
                for c in change.creations]
        for account_id in change.ended_creations:
            row = join(CREATION, account_id)
            if row in etags:
                ops.append(tables.remove(pk, row, etags[row]))
        gone = self._unlinked_rows(state, change)
        ops += [tables.remove(pk, row, etags[row]) for row in gone]
        ops += [("create", self._activity_entity(pk, a)) for a in change.activity]
        ops += [("create", _event_entity(pk, e)) for e in change.events]
        ops += comment_rows.ops(pk, etags, change)
        results = tables.transact(TABLE, ops)
        new = GroupState(
            group=group,
            links={**(state.links if state else {}), **{(lk.account_id, lk.key): lk for lk in change.links}},
            etags=dict(etags),
            pushes={**(state.pushes if state else {}),
                    **{(p.account_id, p.key, p.kind): p for p in change.pushes}},
            creations={**(state.creations if state else {}), **{c.account_id: c for c in change.creations}},
            comments=dict(state.comments) if state else {},
            comment_targets=dict(state.comment_targets) if state else {},
            comment_refs=dict(state.comment_refs) if state else {},
        )
        comment_rows.merge(new, change)
        for account_id in change.ended_creations:
            new.creations.pop(account_id, None)
            new.etags.pop(join(CREATION, account_id), None)
        for account_id, key in change.unlinked:
            new.links.pop((account_id, key), None)
            for push_key in [p for p in new.pushes if p[:2] == (account_id, key)]:
                new.pushes.pop(push_key)
        for row in gone:
            new.etags.pop(row, None)
        for op, result in zip(ops, results, strict=False):
            row = op[1]["RowKey"]
            tag = result.get("etag") if isinstance(result, dict) else None
            if op[0] == "delete":
                continue
            if tag:
                new.etags[row] = str(tag)
            else:
                new.etags.pop(row, None)
        return new

    @staticmethod
    def _unlinked_rows(state: GroupState | None, change: GroupChange) -> list[str]:
        """The stored link and push rows of the links `change` removes (rows never written are skipped)."""
        if state is None:
            return []
        rows = []
        for account_id, key in change.unlinked:
            rows.append(join(LINK, account_id, key))
            rows += [join(PUSH, *push) for push in state.pushes if push[:2] == (account_id, key)]
        return [row for row in rows if row in state.etags]

    def _activity_entity(self, pk: str, activity: Activity) -> dict[str, Any]:
        created = activity.created or self._clock()
        row = join(ACTIVITY, f"{int(created * 1e9):020d}", uuid.uuid4().hex[:8])
        return {"PartitionKey": pk, "RowKey": row, "kind": activity.kind, "data": tables.dumps(activity.data),
                "created": created}

    def outbox(self, org_id: str, group_id: str) -> list[tuple[Event, str]]:
        """The group's undelivered events, oldest first, each with its row's ETag."""
        low, high = tables.prefix_range(EVENT + "|")
        rows = tables.query(TABLE, "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                            pk=partition(org_id, group_id), low=low, high=high)
        return [(event_json.from_json(row["payload"]), tables.etag(row)) for row in rows]

    def drop_from_outbox(self, org_id: str, group_id: str, event_id: str, etag: str) -> None:
        """Remove a relayed event from the group's outbox (gone already: nothing to do)."""
        with contextlib.suppress(tables.LostRace):
            tables.transact(TABLE, [tables.remove(partition(org_id, group_id), join(EVENT, event_id), etag)])

    def add_link(self, link: Link, *, new_work_item: bool = False) -> GroupState:
        """Link a group to a work item: index first, so a failure leaves at most a dangling index row."""
        self._integrations.index_link(link.account_id, link.key, link.org_id, link.group_id)

        def attach(state: GroupState | None) -> GroupChange:
            assert state is not None
            existing = state.links.get((link.account_id, link.key))
            merged = link
            if existing is not None and existing.state_rev > link.state_rev:
                merged = replace(merged, state_rev=existing.state_rev, state_delivery=existing.state_delivery,
                                 state_value=existing.state_value)
            if existing is not None and existing.assignee_rev > link.assignee_rev:
                merged = replace(merged, assignee_rev=existing.assignee_rev,
                                 assignee_delivery=existing.assignee_delivery,
                                 assignee_value=existing.assignee_value)
            change = GroupChange(links=[merged], activity=[Activity(kind="link", data={
                "account_id": link.account_id, "key": link.key, "url": link.url})],
                ended_creations=[link.account_id] if link.account_id in state.creations else [])
            if existing is None:
                change.events.append(events.linked(
                    link.org_id, link.group_id, integration_id=link.account_id, work_item=link.key,
                    source="tracker", url=link.url or None, title=link.title or None,
                    new_work_item=new_work_item, now=self._clock()))
            return change

        state = self.change(link.org_id, link.group_id, attach)
        if state is None:
            raise Conflict(f"group {link.group_id} disappeared while linking")
        return state
