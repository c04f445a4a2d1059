"""Event outboxes: rows `event|<event id>` written in the same transaction as the change they describe.

A group's events wait in its partition of `Groups` (see `shared.adapters.groups`); an integration's
events (`integration.subscription_changed`) in its partition of `Integrations`, written with the
integration row. Row keys sort by event id, so an outbox reads oldest first. The relay reads an
outbox, delivers, and drops what it is done with; a delivery that failed keeps its row, with the
number of `attempts` so far and the time of the next one (`next_at`, unix seconds), so every relay
of that outbox, early or late, follows the same retry schedule.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from azure.data.tables import TableEntity

from shared.adapters import tables
from shared.core import event_json
from shared.core.events import Event
from shared.core.keys import join

PREFIX = "event"
READ_LIMIT = 100  # events read per relay run; the relay comes back for the rest
SCAN_FIELDS = ["PartitionKey", "RowKey", "next_at"]


@dataclass(frozen=True)
class Outbox:
    """Where an outbox lives: a table and a partition."""

    table: str
    partition: str


@dataclass(frozen=True)
class Pending:
    """An event waiting in an outbox, with its row's ETag and its delivery schedule."""

    event: Event
    etag: str
    attempts: int = 0
    next_at: float = 0.0
    tracked: bool = False  # it has a delivery record (a replay, or an attempt failed)

    @property
    def recorded(self) -> bool:
        """Whether its delivery record must follow what happens to it."""
        return self.tracked or self.attempts > 0


def row_key(event_id: str) -> str:
    return join(PREFIX, event_id)


def entity(partition: str, event: Event, *, attempts: int = 0, next_at: float = 0.0,
           tracked: bool = False) -> dict[str, Any]:
    """An outbox row (what `shared.adapters.groups` writes, plus the schedule once a delivery failed)."""
    row: dict[str, Any] = {"PartitionKey": partition, "RowKey": row_key(event.id),
                           "payload": event_json.to_json(event)}
    if attempts:
        row.update(attempts=attempts, next_at=float(next_at))
    if tracked or attempts:
        row["tracked"] = True
    return row


def _pending(row: TableEntity) -> Pending:
    return Pending(event=event_json.from_json(row["payload"]), etag=tables.etag(row),
                   attempts=int(row.get("attempts") or 0), next_at=float(row.get("next_at") or 0.0),
                   tracked=bool(row.get("tracked")))


class OutboxStore:
    """Reading, rescheduling and emptying outboxes; the sweep's scan for outboxes left waiting."""

    def pending(self, outbox: Outbox, limit: int = READ_LIMIT) -> list[Pending]:
        """The oldest `limit` events of the outbox, oldest first (one query)."""
        low, high = tables.prefix_range(PREFIX + "|")
        rows = tables.query(outbox.table, "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                            page_size=limit, pk=outbox.partition, low=low, high=high)
        found: list[Pending] = []
        for row in rows:
            found.append(_pending(row))
            if len(found) >= limit:
                break
        return found

    def reschedule(self, outbox: Outbox, pending: Pending, attempts: int, next_at: float) -> bool:
        """Record a failed attempt on the event's row (under its ETag); False when the row changed or went."""
        try:
            tables.transact(outbox.table, [tables.write(
                entity(outbox.partition, pending.event, attempts=attempts, next_at=next_at), pending.etag)])
        except tables.LostRace:
            return False
        return True

    def drop(self, outbox: Outbox, done: list[Pending]) -> None:
        """Remove events the relay is done with: one transaction, or row by row when one of them changed."""
        for start in range(0, len(done), tables.TRANSACTION_LIMIT):
            chunk = done[start:start + tables.TRANSACTION_LIMIT]
            try:
                tables.transact(outbox.table, [tables.remove(outbox.partition, row_key(p.event.id), p.etag)
                                               for p in chunk])
            except tables.LostRace:
                for pending in chunk:  # a replay or another relay changed a row: leave that one be
                    with contextlib.suppress(tables.LostRace):
                        tables.transact(outbox.table, [tables.remove(outbox.partition, row_key(pending.event.id),
                                                                     pending.etag)])

    def put_back(self, outbox: Outbox, event: Event) -> None:
        """Queue an event again with a fresh schedule (a replay), whether or not it is still waiting."""
        tables.upsert(outbox.table, entity(outbox.partition, event, tracked=True))

    def heads(self, table: str) -> Iterator[tuple[str, str, float]]:
        """(partition, oldest row key, its next_at) of every non-empty outbox of `table`.

        One filtered scan of the table that returns only outbox rows (three properties each): its
        cost grows with the table, so the sweep runs it every few minutes, not per change.
        """
        low, high = tables.prefix_range(PREFIX + "|")
        last = None
        for row in tables.query(table, "RowKey ge @low and RowKey lt @high", select=SCAN_FIELDS, page_size=1000,
                                low=low, high=high):
            if row["PartitionKey"] == last:
                continue
            last = row["PartitionKey"]
            yield last, row["RowKey"], float(row.get("next_at") or 0.0)
