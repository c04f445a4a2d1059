"""What one delivery attempt's outcome means for the event, and the delivery record's JSON form."""

from __future__ import annotations

import pytest

from shared.core import backoff
from shared.core.delivery import Delivery, Next, decide

NOW = 1714566600.0


def test_delivered_is_done_and_refusals_fail_at_once() -> None:
    assert decide("delivered", 3, NOW) == Next("delivered")
    assert decide("failed", 1, NOW) == Next("failed")
    assert decide("gone", 1, NOW) == Next("failed")


@pytest.mark.parametrize("attempt", range(1, backoff.MAX_ATTEMPTS))
def test_a_retry_follows_the_schedule_without_jitter_at_its_longest(attempt: int) -> None:
    assert decide("retry", attempt, NOW, rng=lambda: 0.0) == Next("retrying", NOW + backoff.SCHEDULE[attempt - 1])


def test_the_last_attempt_fails_for_good_whatever_the_receiver_asks() -> None:
    assert decide("retry", backoff.MAX_ATTEMPTS, NOW, retry_after=5.0) == Next("failed")


def test_retry_after_lengthens_a_wait() -> None:
    assert decide("retry", 1, NOW, retry_after=60.0, rng=lambda: 0.0) == Next("retrying", NOW + 60.0)


def test_the_view_names_the_event_and_the_last_answer() -> None:
    record = Delivery("org-1", "evt_01HWT245HTZWJT25GYCPMF7QDY", "group.linked", "g1", "failed", attempts=8,
                      last_status=503, last_reason="HTTP 503", last_attempt=NOW)
    assert record.view() == {
        "id": "evt_01HWT245HTZWJT25GYCPMF7QDY", "event_id": "evt_01HWT245HTZWJT25GYCPMF7QDY",
        "type": "group.linked", "group_id": "g1", "status": "failed", "attempts": 8, "last_status": 503,
        "last_reason": "HTTP 503", "last_attempt": "2024-05-01T12:30:00Z", "next_attempt": None, "replays": 0}
