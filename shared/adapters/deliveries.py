"""Deliveries of tracker events that did not succeed at once: table `Deliveries`.

One partition per tracker organization, one row per event (RowKey = event id, so rows sort by the
event's creation): its status (`retrying`, `failed`, `delivered` after a retry, `queued` after a
replay), attempts, and the last answer. The relay writes a row only when an attempt fails, or
succeeds after one failed; the outbox row stays the source of the retry schedule.
"""

from __future__ import annotations

from azure.data.tables import TableEntity, UpdateMode

from shared.adapters import storage, tables
from shared.core.delivery import Delivery

TABLE = "Deliveries"


def _entity(delivery: Delivery) -> dict[str, object]:
    return {
        "PartitionKey": delivery.org_id,
        "RowKey": delivery.event_id,
        "event_type": delivery.event_type,
        "group_id": delivery.group_id,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_reason": delivery.last_reason,
        "last_attempt": delivery.last_attempt,
        "next_attempt": delivery.next_attempt,
        "replays": delivery.replays,
    }


def _delivery(row: TableEntity) -> Delivery:
    last_status = row.get("last_status")
    return Delivery(
        org_id=row["PartitionKey"],
        event_id=row["RowKey"],
        event_type=row.get("event_type", ""),
        group_id=row.get("group_id"),
        status=row.get("status", "failed"),
        attempts=int(row.get("attempts") or 0),
        last_status=int(last_status) if last_status is not None else None,
        last_reason=row.get("last_reason"),
        last_attempt=row.get("last_attempt"),
        next_attempt=row.get("next_attempt"),
        replays=int(row.get("replays") or 0),
    )


class DeliveryStore:
    def record(self, delivery: Delivery) -> None:
        """Create or replace the delivery's row."""
        tables.upsert(TABLE, _entity(delivery))

    def update(self, delivery: Delivery) -> None:
        """Write an attempt's result, keeping the row's count of replays."""
        entity = _entity(delivery)
        entity.pop("replays")
        with storage.translated():
            tables.table(TABLE).upsert_entity(entity, mode=UpdateMode.MERGE)

    def get(self, org_id: str, event_id: str) -> Delivery | None:
        row = tables.get(TABLE, org_id, event_id)
        return _delivery(row) if row is not None else None

    def page(self, org_id: str, status: str | None, after: str | None, limit: int) -> list[Delivery]:
        """Up to `limit` deliveries of the organization after event id `after`, oldest event first."""
        flt = "PartitionKey eq @pk and RowKey gt @after"
        params = {"pk": org_id, "after": after or ""}
        if status is not None:
            flt += " and status eq @status"
            params["status"] = status
        found: list[Delivery] = []
        for row in tables.query(TABLE, flt, page_size=limit, params=params):
            found.append(_delivery(row))
            if len(found) >= limit:
                break
        return found
