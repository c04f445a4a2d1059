"""Webhook deliveries of tracker events: what one attempt's outcome means for the event, and the record kept.

The relay makes one attempt per event at a time. `decide` turns the outcome into what happens next:
done (delivered, or nothing to deliver to), again later (after the backoff schedule's wait), or
failed for good (the receiver refused the payload, the endpoint is gone, or the schedule ran out).
A `Delivery` is the record of an event whose delivery did not succeed at once: it is what the
failed-deliveries list shows and what a replay starts from. Deliveries that succeed at the first
attempt leave no record (the feed has the event), so the common case costs no extra write.

Pure: no storage or network access.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from shared.core import backoff
from shared.core.times import iso_time

Status = Literal["queued", "retrying", "failed", "delivered"]
STATUSES: tuple[str, ...] = ("queued", "retrying", "failed", "delivered")
OutcomeKind = Literal["delivered", "retry", "gone", "failed"]


@dataclass(frozen=True)
class Next:
    """What to do with an event after an attempt: `status`, and for a retry the time of the next attempt."""

    status: Status
    next_at: float | None = None


def decide(kind: OutcomeKind, attempt: int, now: float, *, retry_after: float | None = None,
           rng: Callable[[], float] | None = None) -> Next:
    """The event's fate after attempt number `attempt` (1 = the first) ended with `kind`."""
    if kind == "delivered":
        return Next("delivered")
    if kind in ("gone", "failed"):
        return Next("failed")
    delay = (backoff.next_delay(attempt, retry_after=retry_after) if rng is None
             else backoff.next_delay(attempt, retry_after=retry_after, rng=rng))
    if delay is None:
        return Next("failed")
    return Next("retrying", now + delay)


@dataclass(frozen=True)
class Delivery:
    """The delivery of one event to one tracker organization's endpoint (its id is the event id)."""

    org_id: str
    event_id: str
    event_type: str
    group_id: str | None
    status: Status
    attempts: int = 0
    last_status: int | None = None
    last_reason: str | None = None
    last_attempt: float | None = None
    next_attempt: float | None = None
    replays: int = 0

    def view(self) -> dict[str, Any]:
        """The management API's JSON form."""
        return {
            "id": self.event_id,
            "event_id": self.event_id,
            "type": self.event_type,
            "group_id": self.group_id,
            "status": self.status,
            "attempts": self.attempts,
            "last_status": self.last_status,
            "last_reason": self.last_reason,
            "last_attempt": iso_time(self.last_attempt),
            "next_attempt": iso_time(self.next_attempt),
            "replays": self.replays,
        }
