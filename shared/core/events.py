"""Events the bundle tells the tracker about: one record per change, with one builder per type.

Every change the bundle makes or observes becomes an `Event`. The same JSON payload (`event_json`) is
the body of a signed webhook (https://www.standardwebhooks.com/) and an entry of the pull feed. Builders below make
one event type each, with a fixed set of `data` keys per type (unknown values are null), so a tracker
can rely on one schema per type.

Event ids are `evt_` followed by a 26-character ULID (48-bit millisecond time, then 80 random bits,
Crockford base32): they sort by creation time, and ids made by one process sort in the order they
were made, even within one millisecond. `created` is kept at millisecond precision so the JSON form
round-trips exactly; `id_time` reads the creation time back from an id.

Pure: no storage or network access.
"""

from __future__ import annotations

import math
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from shared.core.errors import InvalidInput

EventType = Literal[
    "group.status_changed",
    "group.assignee_changed",
    "group.linked",
    "group.unlinked",
    "group.comment_added",
    "sync.failed",
    "integration.subscription_changed",
]
Source = Literal["tracker", "azure_devops"]
FailureReason = Literal["no_ado_user", "no_state_mapping", "permission_refused", "work_item_deleted", "other"]

SOURCES: Final = frozenset({"tracker", "azure_devops"})
FAILURE_REASONS: Final = frozenset(
    {"no_ado_user", "no_state_mapping", "permission_refused", "work_item_deleted", "other"}
)

# The keys of `data` per event type, in the order they are written.
DATA_KEYS: Final[dict[str, tuple[str, ...]]] = {
    "group.status_changed": (
        "old", "new", "source", "integration_id", "work_item", "rev", "actor", "resolution_strategy",
    ),
    "group.assignee_changed": ("old", "new", "source", "integration_id", "work_item", "rev", "actor"),
    "group.linked": ("integration_id", "work_item", "url", "title", "new_work_item", "source", "actor"),
    "group.unlinked": ("integration_id", "work_item", "work_item_deleted", "source", "actor"),
    "group.comment_added": (
        "text", "truncated", "source", "integration_id", "work_item", "comment_id", "rev", "actor",
    ),
    "sync.failed": ("reason", "detail", "field", "source", "integration_id", "work_item"),
    "integration.subscription_changed": ("integration_id", "old", "new", "problem"),
}
EVENT_TYPES: Final = frozenset(DATA_KEYS)

MAX_COMMENT_CHARS = 4000  # longer comments are cut (`truncated: true`); payloads should stay small
MAX_DETAIL_CHARS = 1000

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_EVENT_ID = re.compile(r"^evt_[0-7][0-9A-HJKMNP-TV-Z]{25}$")
_MAX_CREATED = 253402300800.0  # 10000-01-01T00:00:00Z: the ISO form has four year digits


# --- ids ----------------------------------------------------------------------------------------


class _UlidClock:
    """ULIDs that never go backwards within one process (same millisecond: random part + 1)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def next(self, ms: int) -> tuple[int, int]:
        with self._lock:
            if ms <= self._last_ms:
                ms, random_part = self._last_ms, self._last_random + 1
                if random_part >= 1 << 80:  # 2^80 ids in one millisecond: borrow the next one
                    ms, random_part = ms + 1, secrets.randbits(79)
            else:
                random_part = secrets.randbits(80)
            self._last_ms, self._last_random = ms, random_part
            return ms, random_part


_clock = _UlidClock()


def _base32(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(_CROCKFORD[digit])
    return "".join(reversed(chars))


def new_event_id(now: float | None = None) -> str:
    """A fresh `evt_<ULID>` id for an event created at `now` (unix seconds; default: the clock)."""
    ms = millis(time.time() if now is None else now)
    ms, random_part = _clock.next(ms)
    return "evt_" + _base32(ms, 10) + _base32(random_part, 16)


def id_time(event_id: str) -> float:
    """The creation time (unix seconds, to the millisecond) an event id carries; ValueError if it is not one."""
    if not isinstance(event_id, str) or not _EVENT_ID.match(event_id):
        raise ValueError("not an event id")
    ms = 0
    for char in event_id[4:14]:
        ms = ms * 32 + _CROCKFORD.index(char)
    return ms / 1000


def millis(seconds: float) -> int:
    """Whole milliseconds of `seconds` (unix time); InvalidInput(field="created") when not a valid time."""
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not math.isfinite(seconds):
        raise InvalidInput("created must be a finite number of unix seconds", field="created")
    if seconds < 0 or seconds >= _MAX_CREATED:
        raise InvalidInput("created is out of range", field="created")
    return round(seconds * 1000)


# --- the record ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """One change the tracker is told about. `created` is unix seconds, kept to the millisecond."""

    id: str
    type: str
    created: float
    organization_id: str
    group_id: str | None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _EVENT_ID.match(self.id):
            raise InvalidInput("id must be evt_ followed by a 26-character ULID", field="id")
        if not isinstance(self.type, str) or self.type not in EVENT_TYPES:
            raise InvalidInput(f"unknown event type {str(self.type)[:64]!r}", field="type")
        object.__setattr__(self, "created", millis(self.created) / 1000)
        if not isinstance(self.organization_id, str) or not self.organization_id:
            raise InvalidInput("organization_id must be a non-empty string", field="organization_id")
        if self.group_id is not None and (not isinstance(self.group_id, str) or not self.group_id):
            raise InvalidInput("group_id must be a non-empty string or null", field="group_id")
        if self.group_id is None and self.type.startswith("group."):
            raise InvalidInput(f"{self.type} needs a group_id", field="group_id")
        if self.group_id is not None and self.type.startswith("integration."):
            raise InvalidInput(f"{self.type} has no group_id", field="group_id")
        if not isinstance(self.data, dict):
            raise InvalidInput("data must be an object", field="data")
        missing = [key for key in DATA_KEYS[self.type] if key not in self.data]
        if missing:
            raise InvalidInput(f"data of {self.type} lacks {', '.join(missing)}", field="data")


def _event(event_type: str, org_id: str, group_id: str | None, data: dict[str, Any], now: float | None) -> Event:
    created = time.time() if now is None else now
    return Event(
        id=new_event_id(created),
        type=event_type,
        created=created,
        organization_id=org_id,
        group_id=group_id,
        data=data,
    )


def _source(source: str) -> str:
    if source not in SOURCES:
        raise InvalidInput(f"source must be one of {sorted(SOURCES)}", field="source")
    return source


def _rev(rev: int | None) -> int | None:
    if rev is not None and (not isinstance(rev, int) or isinstance(rev, bool) or rev < 0):
        raise InvalidInput("rev must be a non-negative integer", field="rev")
    return rev


# --- builders -----------------------------------------------------------------------------------


def status_changed(
    org_id: str,
    group_id: str,
    old: str,
    new: str,
    *,
    source: Source,
    integration_id: str | None = None,
    work_item: str | None = None,
    rev: int | None = None,
    actor: str | None = None,
    resolution_strategy: str | None = None,
    now: float | None = None,
) -> Event:
    """The group's status went from `old` to `new` (e.g. unresolved → resolved).

    `source` says where the change was made; `work_item` and `rev` are the Azure DevOps work item
    and revision that carried it (or that it was pushed to), `actor` who made it.
    """
    return _event("group.status_changed", org_id, group_id, {
        "old": old,
        "new": new,
        "source": _source(source),
        "integration_id": integration_id,
        "work_item": work_item,
        "rev": _rev(rev),
        "actor": actor,
        "resolution_strategy": resolution_strategy,
    }, now)


def assignee_changed(
    org_id: str,
    group_id: str,
    old: str | None,
    new: str | None,
    *,
    source: Source,
    integration_id: str | None = None,
    work_item: str | None = None,
    rev: int | None = None,
    actor: str | None = None,
    now: float | None = None,
) -> Event:
    """The group's assignee went from `old` to `new` (None: unassigned)."""
    return _event("group.assignee_changed", org_id, group_id, {
        "old": old,
        "new": new,
        "source": _source(source),
        "integration_id": integration_id,
        "work_item": work_item,
        "rev": _rev(rev),
        "actor": actor,
    }, now)


def linked(
    org_id: str,
    group_id: str,
    *,
    integration_id: str,
    work_item: str,
    source: Source,
    url: str | None = None,
    title: str | None = None,
    new_work_item: bool = False,
    actor: str | None = None,
    now: float | None = None,
) -> Event:
    """The group was linked to a work item; `new_work_item` is True when the link created it."""
    return _event("group.linked", org_id, group_id, {
        "integration_id": integration_id,
        "work_item": work_item,
        "url": url,
        "title": title,
        "new_work_item": bool(new_work_item),
        "source": _source(source),
        "actor": actor,
    }, now)


def unlinked(
    org_id: str,
    group_id: str,
    *,
    integration_id: str,
    work_item: str,
    source: Source,
    work_item_deleted: bool = False,
    actor: str | None = None,
    now: float | None = None,
) -> Event:
    """The group's link to a work item was removed; `work_item_deleted` when the item itself was deleted."""
    return _event("group.unlinked", org_id, group_id, {
        "integration_id": integration_id,
        "work_item": work_item,
        "work_item_deleted": bool(work_item_deleted),
        "source": _source(source),
        "actor": actor,
    }, now)


def comment_added(
    org_id: str,
    group_id: str,
    text: str,
    *,
    source: Source,
    integration_id: str | None = None,
    work_item: str | None = None,
    comment_id: str | None = None,
    rev: int | None = None,
    actor: str | None = None,
    now: float | None = None,
) -> Event:
    """A comment was added on either side; texts longer than MAX_COMMENT_CHARS are cut (`truncated`)."""
    truncated = len(text) > MAX_COMMENT_CHARS
    return _event("group.comment_added", org_id, group_id, {
        "text": text[:MAX_COMMENT_CHARS],
        "truncated": truncated,
        "source": _source(source),
        "integration_id": integration_id,
        "work_item": work_item,
        "comment_id": comment_id,
        "rev": _rev(rev),
        "actor": actor,
    }, now)


def sync_failed(
    org_id: str,
    group_id: str | None,
    reason: FailureReason,
    detail: str,
    *,
    field: str | None = None,
    source: Source | None = None,
    integration_id: str | None = None,
    work_item: str | None = None,
    now: float | None = None,
) -> Event:
    """A change could not be synced and will not be retried.

    `reason` is a code from FAILURE_REASONS, `detail` a short human sentence (cut to
    MAX_DETAIL_CHARS; it must never hold tokens or secrets), `field` what failed to sync
    (e.g. "status", "assignee") and `source` where the change that failed came from.
    """
    if reason not in FAILURE_REASONS:
        raise InvalidInput(f"reason must be one of {sorted(FAILURE_REASONS)}", field="reason")
    return _event("sync.failed", org_id, group_id, {
        "reason": reason,
        "detail": detail[:MAX_DETAIL_CHARS],
        "field": field,
        "source": None if source is None else _source(source),
        "integration_id": integration_id,
        "work_item": work_item,
    }, now)


def subscription_changed(
    org_id: str,
    *,
    integration_id: str,
    old: str | None,
    new: str,
    problem: str | None = None,
    now: float | None = None,
) -> Event:
    """The integration's Azure DevOps service hook changed status (e.g. enabled → disabledBySystem)."""
    return _event("integration.subscription_changed", org_id, None, {
        "integration_id": integration_id,
        "old": old,
        "new": new,
        "problem": problem,
    }, now)
