"""Large cached values: split over several properties of one row, or not cached at all (real Azurite)."""

from __future__ import annotations

import pytest

from shared.adapters import cache
from shared.adapters.cache import CacheStore

pytestmark = pytest.mark.usefixtures("azurite")


def test_a_value_larger_than_one_property_round_trips(uid: str) -> None:
    store = CacheStore()
    users = [{"display_name": f"User {n}", "email": f"user{n}@example.com"} for n in range(3000)]

    store.put(uid, "disc|users", users, ttl=60)

    assert store.get(uid, "disc|users") == users


def test_a_value_too_large_for_a_row_is_not_cached(uid: str) -> None:
    store = CacheStore()
    store.put(uid, "big", "x" * (cache.PART * cache.MAX_PARTS + 1), ttl=60)
    assert store.get(uid, "big") is None
    store.put(uid, "small", ["ok"], ttl=60)
    assert store.get(uid, "small") == ["ok"]


def test_expired_values_are_absent(uid: str) -> None:
    now = [1000.0]
    store = CacheStore(clock=lambda: now[0])
    store.put(uid, "k", {"a": 1}, ttl=10)
    assert store.get(uid, "k") == {"a": 1}
    now[0] += 10
    assert store.get(uid, "k") is None
