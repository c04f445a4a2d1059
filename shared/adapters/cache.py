"""Short-lived copies of Azure DevOps lookups, and the kickoff's progress, in table `Cache`.

Lookups are kept per integration (PartitionKey = account id, RowKey = `<kind>|<key>`) with an
expiry; the kickoff records how far it got in each six-hour slot under partition `~kickoff`.
A value's JSON is split over properties `value`, `value1`, ... (a string property holds 32K
characters); a value too large for one row (about 450K characters of JSON) is simply not cached.
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
PART = 30_000  # characters per property
MAX_PARTS = 15  # an entity holds 1 MiB, and strings are stored as UTF-16


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
        parts = int(entity.get("parts") or 1)
        return tables.loads("".join(str(entity.get(_part(n)) or "") for n in range(parts)), None)

    def put(self, account_id: str, key: str, value: Any, *, ttl: float) -> None:
        self.put_many(account_id, {key: value}, ttl=ttl)

    def put_many(self, account_id: str, values: dict[str, Any], *, ttl: float) -> None:
        """Cache values of one integration, one round trip per 100."""
        expires = self._clock() + ttl
        rows = [row for key, value in values.items()
                if (row := _row(account_id, key, tables.dumps(value), expires)) is not None]
        if not rows:
            return
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


def _part(n: int) -> str:
    return f"value{n}" if n else "value"


def _row(account_id: str, key: str, text: str, expires: float) -> dict[str, Any] | None:
    """The cache row of one value, its JSON split over properties; None when it is too large to cache."""
    chunks = [text[start:start + PART] for start in range(0, len(text), PART)] or [""]
    if len(chunks) > MAX_PARTS:
        return None
    row: dict[str, Any] = {"PartitionKey": account_id, "RowKey": escape(key), "expires": expires}
    row.update({_part(n): chunk for n, chunk in enumerate(chunks)})
    if len(chunks) > 1:
        row["parts"] = len(chunks)
    return row
