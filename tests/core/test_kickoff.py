"""shared.core.kickoff: six-hour slots, which links are due a check, and how checks are batched."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.core.kickoff import BATCH_BYTES, BATCH_ITEMS, DUE_AFTER, SLOT, Batch, check_message, due, slot_of
from shared.core.models import Integration, OrgLink

T0 = 1_763_985_600  # a slot boundary: 2025-11-24T12:00:00Z


@pytest.mark.parametrize(
    ("now", "slot"),
    [
        pytest.param(T0, T0, id="boundary"),
        pytest.param(T0 + 1, T0, id="just-after"),
        pytest.param(T0 + 0.5, T0, id="fractional"),
        pytest.param(T0 + SLOT - 1, T0, id="last-second"),
        pytest.param(T0 + SLOT, T0 + SLOT, id="next-boundary"),
        pytest.param(0, 0, id="epoch"),
    ],
)
def test_slot_of(now: float, slot: int) -> None:
    assert slot_of(now) == slot
    assert isinstance(slot_of(now), int)


def _integration(**fields: Any) -> Integration:
    return Integration(**{"account_id": "acc", "account_name": "a", "domain_name": "https://dev.azure.com/a/",
                          "subscription_id": "sub", **fields})


NOW = float(T0 + 3600)


@pytest.mark.parametrize(
    ("integration", "link_status", "expected"),
    [
        pytest.param(_integration(last_checked=None), "active", True, id="never-checked"),
        pytest.param(_integration(last_checked=NOW - SLOT), "active", True, id="checked-a-slot-ago"),
        pytest.param(_integration(last_checked=NOW - DUE_AFTER), "active", True, id="checked-exactly-due-after-ago"),
        pytest.param(_integration(last_checked=NOW - DUE_AFTER + 1), "active", False, id="checked-just-too-recently"),
        pytest.param(_integration(last_checked=NOW - 60), "active", False, id="checked-a-minute-ago"),
        pytest.param(_integration(status="disabled"), "active", False, id="integration-inactive"),
        pytest.param(_integration(), "disabled", False, id="org-link-inactive"),
        pytest.param(_integration(subscription_id=None), "active", False, id="no-service-hook"),
        pytest.param(_integration(subscription_id=""), "active", False, id="empty-service-hook-id"),
    ],
)
def test_due(integration: Integration, link_status: str, expected: bool) -> None:
    assert due(integration, OrgLink(account_id="acc", org_id="org", status=link_status), NOW) is expected


def test_a_check_a_few_minutes_into_the_previous_slot_is_due_in_the_next() -> None:
    checked = T0 + 300  # ran 5 minutes into the slot
    assert due(_integration(last_checked=checked), OrgLink("acc", "org"), T0 + SLOT)


def test_check_message() -> None:
    assert check_message(OrgLink("acc", "org")) == {"integration_id": "acc", "organization_id": "org"}


def _item(n: int, pad: int = 0) -> dict[str, Any]:
    return {"integration_id": f"acc-{n}", "organization_id": "org" + "x" * pad}


def _fill(items: list[dict[str, Any]], max_items: int = BATCH_ITEMS) -> list[Batch]:
    """Batches the way the kickoff fills them: start a new one when the next item does not fit."""
    batches = [Batch()]
    for item in items:
        if not batches[-1].fits(item, max_items=max_items):
            batches.append(Batch())
        batches[-1].add(item)
    return batches


@pytest.mark.parametrize(
    ("count", "pad", "max_items", "sizes"),
    [
        pytest.param(1, 0, BATCH_ITEMS, [1], id="one"),
        pytest.param(BATCH_ITEMS, 0, BATCH_ITEMS, [BATCH_ITEMS], id="exactly-full"),
        pytest.param(BATCH_ITEMS + 1, 0, BATCH_ITEMS, [BATCH_ITEMS, 1], id="one-over-item-limit"),
        pytest.param(5, 0, 2, [2, 2, 1], id="smaller-item-limit"),
        pytest.param(10, 10_000, BATCH_ITEMS, [4, 4, 2], id="byte-limit-first"),
        pytest.param(2, BATCH_BYTES, BATCH_ITEMS, [1, 1], id="oversized-item-alone"),
    ],
)
def test_batches_respect_item_and_byte_limits(count: int, pad: int, max_items: int, sizes: list[int]) -> None:
    batches = _fill([_item(n, pad) for n in range(count)], max_items)
    assert [len(b.items) for b in batches] == sizes
    for batch in batches:
        if len(batch.items) > 1:
            assert len(json.dumps(batch.message(), separators=(",", ":"))) <= BATCH_BYTES


def test_size_counts_the_compact_json_of_each_item() -> None:
    batch = Batch()
    item = _item(1)
    batch.add(item)
    assert batch.size == len(json.dumps(item, separators=(",", ":"))) + 1


def test_an_empty_batch_takes_any_item() -> None:
    assert Batch().fits(_item(1, pad=BATCH_BYTES * 2))
    assert Batch().fits(_item(1), max_items=0)


@pytest.mark.parametrize(
    ("count", "expected"),
    [
        pytest.param(1, {"integration_id": "acc-0", "organization_id": "org"}, id="single-is-the-item-itself"),
        pytest.param(2, {"items": [{"integration_id": "acc-0", "organization_id": "org"},
                                   {"integration_id": "acc-1", "organization_id": "org"}]}, id="several-are-items"),
    ],
)
def test_message_shape(count: int, expected: dict[str, Any]) -> None:
    batch = Batch()
    for n in range(count):
        batch.add(_item(n))
    assert batch.message() == expected
