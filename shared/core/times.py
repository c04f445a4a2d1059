"""Timestamps in JSON: ISO 8601 in UTC out; ISO 8601 or unix seconds in."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from shared.core import validate as v

MAX_UNIX = 253402300800  # year 10000


def iso_time(timestamp: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC (`2026-11-24T08:00:00Z`), the form every JSON timestamp takes."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: Any, name: str) -> float | None:
    """ISO 8601 (UTC when no offset is given) or unix seconds → unix seconds; 422 naming `name` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise v.invalid(name, "must be an ISO 8601 time or unix seconds")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise v.invalid(name, "is out of range") from None
        if not math.isfinite(seconds) or not 0 <= seconds < MAX_UNIX:
            raise v.invalid(name, "is out of range")
        return seconds
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise v.invalid(name, "must be an ISO 8601 time or unix seconds") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parse_time(parsed.timestamp(), name)
    raise v.invalid(name, "must be an ISO 8601 time or unix seconds")
