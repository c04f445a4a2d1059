"""Which hook secrets are accepted while a hook is replaced (shared/core/overlap.py)."""

from __future__ import annotations

from shared.core import overlap

NOW = 1_800_000_000.0
WINDOW = overlap.OVERLAP_SECONDS


def test_a_pending_secret_is_accepted_besides_the_current_one() -> None:
    others = overlap.with_pending({}, "new", NOW)
    assert overlap.accepted("old", others, NOW + 1) == ["old", "new"]


def test_after_the_swap_the_old_secret_is_accepted_for_the_overlap_only() -> None:
    others = overlap.after_swap("old", overlap.with_pending({}, "new", NOW), "new", NOW + 5)
    assert others == {"old": NOW + 5 + WINDOW}
    assert overlap.accepted("new", others, NOW + 5 + WINDOW - 1) == ["new", "old"]
    assert overlap.accepted("new", others, NOW + 5 + WINDOW) == ["new"]


def test_a_swap_to_the_same_hash_accepts_nothing_more() -> None:
    assert overlap.after_swap("same", {}, "same", NOW) == {}


def test_two_rotations_in_a_row_keep_both_old_secrets_for_their_overlap() -> None:
    first = overlap.after_swap("s1", overlap.with_pending({}, "s2", NOW), "s2", NOW)
    second = overlap.after_swap("s2", overlap.with_pending(first, "s3", NOW + 60), "s3", NOW + 60)
    assert overlap.accepted("s3", second, NOW + 61) == ["s3", "s2", "s1"]
    assert overlap.accepted("s3", second, NOW + WINDOW + 1) == ["s3", "s2"]


def test_expired_entries_are_dropped_and_the_list_stays_small() -> None:
    many = {f"h{i}": NOW + i for i in range(1, 20)}
    kept = overlap.pruned({**many, "gone": NOW - 1}, NOW)
    assert len(kept) == overlap.MAX_OTHERS and "gone" not in kept
    assert set(kept) == {"h19", "h18", "h17", "h16"}


def test_a_withdrawn_pending_secret_is_no_longer_accepted() -> None:
    others = overlap.without(overlap.with_pending({"old": NOW + 10}, "new", NOW), "new", NOW)
    assert overlap.accepted("cur", others, NOW) == ["cur", "old"]


def test_a_retired_hook_is_due_after_it_drained_and_before_its_secret_expires() -> None:
    retired = overlap.retire({}, "sub-old", NOW)
    assert overlap.due(retired, NOW + overlap.DRAIN_SECONDS - 1) == []
    assert overlap.due(retired, NOW + overlap.DRAIN_SECONDS) == ["sub-old"]
    # Its secret outlives it by the retry window of Azure DevOps.
    assert overlap.OVERLAP_SECONDS - overlap.DRAIN_SECONDS == overlap.RETRY_SECONDS >= 183
    assert overlap.retire(retired, "sub-old", NOW + 60) == retired
    assert overlap.retire(retired, None, NOW) == retired
