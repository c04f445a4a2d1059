"""The numbered feed in Table Storage: each event once, numbers in append order, across processes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from shared import compose
from shared.adapters.feed import FeedStore
from shared.core import events

pytestmark = pytest.mark.usefixtures("azurite")


def made(org: str, count: int, group: str = "g") -> list[events.Event]:
    return [events.linked(org, group, integration_id="a", work_item=str(n), source="tracker") for n in range(count)]


def entries(store: FeedStore, org: str) -> list[tuple[str, str]]:
    return [(key, event.id) for key, event in store.page(org, None, 500)]


def test_two_processes_appending_with_stale_numbers_neither_lose_nor_repeat(uid: str) -> None:
    org = f"org-{uid}"
    one, two = FeedStore(compose.token_cipher), FeedStore(compose.token_cipher)  # two processes' stores
    first, second, third = made(org, 3), made(org, 2, "h"), made(org, 4, "k")
    stale = one.head(org)
    assert one.append(org, first, stale) == 3
    assert two.append(org, second, stale) == 2  # its number was taken meanwhile: it reads again
    assert one.append(org, third) == 4  # this process's own last number is stale too
    found = entries(one, org)
    assert [event_id for _, event_id in found] == [e.id for e in first + second + third]
    assert [key for key, _ in found] == [f"feed|{n:020d}" for n in range(1, 10)]


def test_appending_events_already_there_adds_only_the_new_ones(uid: str) -> None:
    org = f"org-{uid}"
    store = FeedStore(compose.token_cipher)
    old, new = made(org, 3), made(org, 2)
    store.append(org, old)
    assert store.append(org, [*old, *new]) == 2
    assert [event_id for _, event_id in entries(store, org)] == [e.id for e in old + new]
    assert store.find(org, new[1].id) == new[1]


def test_concurrent_appends_of_one_organization_number_every_event_once(uid: str) -> None:
    org = f"org-{uid}"
    stores = [FeedStore(compose.token_cipher) for _ in range(4)]
    batches = [made(org, 5, f"g{n}") for n in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: stores[n % 4].append(org, batches[n]), range(8)))
    found = entries(stores[0], org)
    assert sorted(event_id for _, event_id in found) == sorted(e.id for batch in batches for e in batch)
    assert [key for key, _ in found] == [f"feed|{n:020d}" for n in range(1, 41)]
