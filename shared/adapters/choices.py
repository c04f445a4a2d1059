"""The last work item choice per (integration, tracker organization, tracker project), in table `Integrations`.

Rows `choice|<org id>|<tracker project id>` of the integration's partition hold the project and work
item type the last create used (`shared.core.defaults`). The webhook's single-partition read selects
only the `integration`, `org|` and `wi|<key>|` rows, so these rows cost the hot path nothing; a
create reads one of them with a point read.
"""

from __future__ import annotations

from typing import Any

from shared.adapters import tables
from shared.adapters.integrations import TABLE
from shared.core.keys import join

PREFIX = "choice|"


def _row(org_id: str, project_id: str) -> str:
    return join("choice", org_id, project_id)


class ChoiceStore:
    def get(self, account_id: str, org_id: str, project_id: str) -> dict[str, Any] | None:
        entity = tables.get(TABLE, account_id, _row(org_id, project_id))
        value = tables.loads(entity.get("choice"), None) if entity else None
        return value if isinstance(value, dict) else None

    def remember(self, account_id: str, org_id: str, project_id: str, choice: dict[str, Any]) -> None:
        """Keep `choice` (the last one wins: two creates at once may each be the last)."""
        tables.upsert(TABLE, {"PartitionKey": account_id, "RowKey": _row(org_id, project_id),
                              "choice": tables.dumps(choice)})

    def forget(self, account_id: str, org_id: str) -> int:
        """Drop every choice of one organization link (when the link goes); how many were dropped."""
        low, high = tables.prefix_range(join("choice", org_id, ""))
        rows = list(tables.query(TABLE, "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
                                 select=["PartitionKey", "RowKey"], pk=account_id, low=low, high=high))
        for row in rows:
            tables.delete(TABLE, account_id, row["RowKey"])
        return len(rows)
