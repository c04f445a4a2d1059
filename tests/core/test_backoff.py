"""The webhook retry schedule: when each retry happens, when delivery gives up, Retry-After."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.core import backoff

HOUR = 3600.0


def no_jitter() -> float:
    return 0.0


def full_jitter() -> float:
    return 0.999999


@pytest.mark.parametrize(("attempt", "longest"), [
    (1, 5.0),
    (2, 5 * 60.0),
    (3, 30 * 60.0),
    (4, 2 * HOUR),
    (5, 5 * HOUR),
    (6, 8 * HOUR),
    (7, 8 * HOUR),
])
def test_each_retry_waits_its_scheduled_time_shortened_by_at_most_a_fifth(attempt: int, longest: float) -> None:
    assert backoff.next_delay(attempt, rng=no_jitter) == longest
    shortest = backoff.next_delay(attempt, rng=full_jitter)
    assert shortest is not None
    assert longest * 0.8 <= shortest < longest


@pytest.mark.parametrize("attempt", [8, 9, 100])
def test_delivery_gives_up_after_the_eighth_attempt(attempt: int) -> None:
    assert backoff.next_delay(attempt, rng=no_jitter) is None
    assert backoff.next_delay(attempt, retry_after=5.0) is None


def test_the_whole_schedule_fits_in_a_day() -> None:
    waits = [backoff.next_delay(n, rng=no_jitter) for n in range(1, backoff.MAX_ATTEMPTS)]
    assert backoff.MAX_ATTEMPTS == 8
    total = sum(w for w in waits if w is not None)
    assert 23 * HOUR < total <= 24 * HOUR


def test_waits_never_shrink_from_one_attempt_to_the_next() -> None:
    waits = [backoff.next_delay(n, rng=no_jitter) or 0.0 for n in range(1, backoff.MAX_ATTEMPTS)]
    assert waits == sorted(waits)


@pytest.mark.parametrize(("attempt", "retry_after", "expected"), [
    (1, 60.0, 60.0),  # the receiver asks for longer than the schedule
    (5, 60.0, 5 * HOUR),  # the schedule is already longer
    (1, 30 * 24 * HOUR, backoff.MAX_DELAY),  # never past the queue's 7-day visibility limit
])
def test_retry_after_lengthens_a_wait_but_never_past_seven_days(attempt: int, retry_after: float,
                                                               expected: float) -> None:
    assert backoff.next_delay(attempt, retry_after=retry_after, rng=no_jitter) == expected


@given(st.integers(min_value=1, max_value=20), st.floats(min_value=-1.0, max_value=2.0, allow_nan=False))
def test_any_draw_gives_a_wait_between_zero_and_seven_days(attempt: int, draw: float) -> None:
    delay = backoff.next_delay(attempt, rng=lambda: draw)
    assert delay is None or 0.0 <= delay <= backoff.MAX_DELAY


def test_attempts_count_from_one() -> None:
    with pytest.raises(ValueError):
        backoff.next_delay(0)


@pytest.mark.parametrize(("seconds", "expected"), [
    (-5.0, 0.0), (10.0, 10.0), (8 * 24 * HOUR, backoff.MAX_DELAY), (float("inf"), backoff.MAX_DELAY),
    (float("nan"), backoff.MAX_DELAY),
])
def test_clamp_delay(seconds: float, expected: float) -> None:
    assert backoff.clamp_delay(seconds) == expected


NOW = 1714566600.0


@pytest.mark.parametrize(("header", "expected"), [
    (None, None),
    ("", None),
    ("120", 120.0),
    (" 7 ", 7.0),
    (email.utils.formatdate(NOW + 90, usegmt=True), 90.0),
    (email.utils.formatdate(NOW - 90, usegmt=True), 0.0),  # a date in the past: retry now
    ("-5", None),
    ("1.5", None),
    ("nan", None),
    ("soon", None),
])
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert backoff.parse_retry_after(header, now=NOW) == expected
