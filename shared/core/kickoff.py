"""The six-hourly kickoff, decided without I/O: which links are due, and how checks are batched.

A link is due when its integration is active with a service hook that was never checked, or not
in the last six hours (a little less, so a check that ran a few minutes into the previous slot does
not make the link skip a whole slot). Checks travel as `{"items": [...]}` batches under the 64 KiB
queue message limit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from shared.core.models import Integration, OrgLink

SLOT = 6 * 3600
DUE_AFTER = SLOT - 600
BATCH_ITEMS = 100
BATCH_BYTES = 45_000  # base64 grows it to ~60 KB, under the 64 KiB queue message limit


def slot_of(now: float) -> int:
    """The start (unix seconds) of the six-hour slot `now` falls in."""
    return int(now // SLOT) * SLOT


def due(integration: Integration, link: OrgLink, now: float) -> bool:
    if integration.status != "active" or link.status != "active" or not integration.subscription_id:
        return False
    return integration.last_checked is None or float(integration.last_checked) <= now - DUE_AFTER


def check_message(link: OrgLink) -> dict[str, str]:
    return {"integration_id": link.account_id, "organization_id": link.org_id}


@dataclass
class Batch:
    """Items waiting to be sent as one message."""

    items: list[dict[str, Any]] = field(default_factory=list)
    size: int = 0

    def fits(self, item: dict[str, Any], *, max_items: int = BATCH_ITEMS) -> bool:
        return not self.items or (len(self.items) < max_items and self.size + _size(item) <= BATCH_BYTES)

    def add(self, item: dict[str, Any]) -> None:
        self.items.append(item)
        self.size += _size(item)

    def message(self) -> dict[str, Any]:
        return self.items[0] if len(self.items) == 1 else {"items": self.items}


def _size(item: dict[str, Any]) -> int:
    return len(json.dumps(item, separators=(",", ":"))) + 1
