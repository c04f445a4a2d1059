"""When to try a tracker webhook delivery again, and when to give up.

The schedule follows the Standard Webhooks guidance (exponential backoff with random jitter, see
https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md#deliverability-and-reliability)
but is cut to one day: the first attempt is immediate, then retries follow after

    5 s, 5 min, 30 min, 2 h, 5 h, 8 h, 8 h

so the eighth and last attempt comes about 23 h 35 min after the first. (Svix waits 10 h twice at the
end, 27.6 h in total; two 8 h waits keep the whole schedule inside 24 h.) Jitter only ever shortens a
wait, by up to 20 %, so retries of many events spread out but the total never exceeds the schedule.
A receiver's Retry-After can lengthen a wait. No wait exceeds the 7-day limit of a queue message's
visibility timeout.

Pure: no storage or network access.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
from collections.abc import Callable
from datetime import UTC

SCHEDULE: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 28800.0, 28800.0)
MAX_ATTEMPTS = len(SCHEDULE) + 1  # the first attempt, then one per entry of SCHEDULE
JITTER = 0.2  # a wait is shortened by up to this fraction
MAX_DELAY = 7 * 24 * 3600.0  # Azure Storage queues: visibility timeout at most 7 days

_DELTA_SECONDS = re.compile(r"^\d{1,10}$")


def clamp_delay(seconds: float) -> float:
    """A wait bounded to 0 s - 7 days (NaN counts as the longest wait)."""
    if math.isnan(seconds):
        return MAX_DELAY
    return min(MAX_DELAY, max(0.0, seconds))


def next_delay(
    attempt: int,
    *,
    retry_after: float | None = None,
    rng: Callable[[], float] = random.random,
) -> float | None:
    """Seconds to wait after failed attempt number `attempt` (1 = the first), or None to give up.

    `retry_after` (seconds, from the receiver's Retry-After) makes the wait at least that long;
    it never brings back a delivery that has used up its attempts.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if attempt > len(SCHEDULE):
        return None
    draw = min(1.0, max(0.0, rng()))
    delay = SCHEDULE[attempt - 1] * (1.0 - JITTER * draw)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return clamp_delay(delay)


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta seconds or an HTTP date (None if absent or unreadable)."""
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.match(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC by RFC 5322
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
