"""Short-lived copies of Azure DevOps lookups, and the kickoff's progress, in table `Cache`.

Lookups are kept per integration (PartitionKey = account id, RowKey = `<kind>|<key>`) with an
expiry; the kickoff records how far it got in each six-hour slot under partition `~kickoff`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.adapters import tables
from shared.core.keys import escape

TABLE = "Cache"
KICKOFF_PARTITION = "~kickoff"  # `~` sorts after every account id and is never one


@dataclass(frozen=True)
class KickoffProgress:
    """How far the kickoff of one six-hour slot got: the last (account id, org id) queued, and done."""

    account_id: str
    org_id: str
    done: bool = False


class CacheStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def get(self, account_id: str, key: str) -> Any | None:
        """A cached value, or None when absent or expired."""
        entity = tables.get(TABLE, account_id, escape(key))
        if entity is None or float(entity.get("expires", 0)) <= self._clock():
            return None
        return tables.loads(entity.get("value"), None)

    def put(self, account_id: str, key: str, value: Any, *, ttl: float) -> None:
        self.put_many(account_id, {key: value}, ttl=ttl)

    def put_many(self, account_id: str, values: dict[str, Any], *, ttl: float) -> None:
        """Cache values of one integration, one round trip per 100."""
        expires = self._clock() + ttl
        rows = [{"PartitionKey": account_id, "RowKey": escape(key), "value": tables.dumps(value),
                 "expires": expires} for key, value in values.items()]
        if len(rows) == 1:
            tables.upsert(TABLE, rows[0])
            return
        for start in range(0, len(rows), tables.TRANSACTION_LIMIT):
            tables.transact(TABLE, [("upsert", row) for row in rows[start:start + tables.TRANSACTION_LIMIT]])

    def kickoff_progress(self, slot: int) -> KickoffProgress | None:
        entity = tables.get(TABLE, KICKOFF_PARTITION, str(slot))
        if entity is None:
            return None
        return KickoffProgress(account_id=entity.get("account_id", ""), org_id=entity.get("org_id", ""),
                               done=bool(entity.get("done")))

    def put_kickoff_progress(self, slot: int, progress: KickoffProgress) -> None:
        tables.upsert(TABLE, {"PartitionKey": KICKOFF_PARTITION, "RowKey": str(slot),
                              "account_id": progress.account_id, "org_id": progress.org_id,
                              "done": progress.done})
