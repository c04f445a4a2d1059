"""The tracker-events relay on Azurite with a real local receiver: feed, order, retries, failures, replay, sweep."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import RecordingSend

from devhost.receiver import Receiver
from shared import compose
from shared.adapters import outbox as outbox_rows
from shared.adapters import tables
from shared.adapters.outbox import Outbox
from shared.adapters.tracker_webhook import new_secret
from shared.compose import Services
from shared.core import backoff, event_json, events
from shared.core.events import Event
from shared.core.models import Group, GroupChange
from shared.flows import event_api, relay

pytestmark = pytest.mark.usefixtures("azurite")

SECRET = new_secret()


class Clock:
    """Real time plus an offset a test can move (signatures stay within the receiver's 5-minute window
    unless a test jumps further on purpose)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class World:
    def __init__(self, uid: str, receiver: Receiver) -> None:
        self.clock = Clock()
        self.sent = RecordingSend()
        self.svc: Services = compose.build(clock=self.clock, send=self.sent)
        self.org = f"org-{uid}"
        self.receiver = receiver
        self.svc.store.feed.put_config(self.org, receiver.url, SECRET, keep_secret=False)

    def group(self, group_id: str = "g1") -> str:
        self.svc.store.groups.put(Group(org_id=self.org, group_id=group_id, project_id="p", title="t"))
        return group_id

    def emit(self, group_id: str = "g1", count: int = 1) -> list[Event]:
        made = [events.status_changed(self.org, group_id, "unresolved", "resolved", source="azure_devops",
                                      rev=n, now=self.clock()) for n in range(count)]
        self.svc.store.groups.change(self.org, group_id, lambda state: GroupChange(events=list(made)))
        return made

    def relay(self, group_id: str = "g1") -> None:
        relay.relay(self.svc, {"organization_id": self.org, "group_id": group_id})

    def outbox(self, group_id: str = "g1") -> list[Any]:
        return self.svc.store.outbox.pending(relay.outbox_of({"organization_id": self.org, "group_id": group_id}))

    def feed(self) -> list[str]:
        return [e["id"] for e in event_api.events(self.svc, self.org, {"limit": "500"}).body["events"]]

    def wakes(self) -> list[float | None]:
        return [delay for queue, _, delay in self.sent.sent if queue == "tracker-events"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver(SECRET) as running:
        yield running


@pytest.fixture
def world(uid: str, receiver: Receiver) -> World:
    return World(uid, receiver)


def ids(items: list[Any]) -> list[str]:
    return [item.id if isinstance(item, Event) else item["id"] for item in items]


def test_events_reach_the_feed_and_the_endpoint_in_order_and_leave_the_outbox(world: World) -> None:
    world.group()
    made = world.emit(count=3)
    world.relay()
    assert ids(world.receiver.events) == ids(made)
    assert world.receiver.events[0] == event_json.to_payload(made[0])
    assert world.feed() == ids(made)
    assert world.outbox() == []
    assert world.svc.store.deliveries.page(world.org, None, None, 10) == []  # success at once: no record


def test_a_second_relay_of_the_same_outbox_sends_and_appends_nothing_again(world: World) -> None:
    world.group()
    made = world.emit(count=2)
    world.relay()
    world.relay()
    # The feed append is idempotent even when the outbox still holds the events (a crash before the drop).
    world.svc.store.feed.append(world.org, made)
    assert ids(world.receiver.events) == ids(made)
    assert world.feed() == ids(made)


def test_a_failing_endpoint_holds_the_group_in_order_until_the_retry(world: World) -> None:
    world.group()
    world.receiver.down = True
    first = world.emit()
    world.relay()
    [waiting] = world.outbox()
    assert (waiting.event.id, waiting.attempts) == (first[0].id, 1)
    [wake] = world.wakes()
    assert wake is not None and backoff.SCHEDULE[0] * (1 - backoff.JITTER) - 1 <= wake <= backoff.SCHEDULE[0]
    [record] = world.svc.store.deliveries.page(world.org, "retrying", None, 10)
    assert (record.event_id, record.attempts, record.last_status) == (first[0].id, 1, 503)

    later = world.emit()  # a new change: its notice comes before the retry is due
    world.receiver.down = False
    world.relay()
    assert world.receiver.events == []  # nothing jumps the queue
    assert world.feed() == ids(first + later)  # but the feed has both already

    world.clock.offset = backoff.SCHEDULE[0]  # the retry is due
    world.relay()
    assert ids(world.receiver.events) == ids(first + later)
    assert world.outbox() == []
    [record] = world.svc.store.deliveries.page(world.org, None, None, 10)
    assert (record.status, record.attempts, record.last_status) == ("delivered", 2, 204)


def test_a_delivery_that_keeps_failing_is_marked_failed_after_the_schedule_and_the_group_moves_on(
        world: World) -> None:
    world.group()
    world.receiver.down = True
    first, second = world.emit(count=2)
    for attempt in range(1, backoff.MAX_ATTEMPTS + 1):
        world.relay()
        if attempt < backoff.MAX_ATTEMPTS:
            [head, _] = world.outbox()
            assert (head.event.id, head.attempts) == (first.id, attempt)
            world.clock.offset = head.next_at - time.time() + 1
    [failed] = world.svc.store.deliveries.page(world.org, "failed", None, 10)
    assert (failed.event_id, failed.attempts) == (first.id, backoff.MAX_ATTEMPTS)
    # The next event got its first attempt right after: it waits on its own schedule now.
    [head] = world.outbox()
    assert (head.event.id, head.attempts) == (second.id, 1)


def test_a_refused_payload_fails_at_once_and_a_replay_sends_the_same_event_again(
        world: World, receiver: Receiver) -> None:
    world.group()
    refused = world.emit()
    calls: list[int] = []
    original = receiver._receive

    def refuse_once(body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        calls.append(1)
        return (422, {}) if len(calls) == 1 else original(body, headers)

    receiver._receive = refuse_once  # type: ignore[method-assign]
    world.relay()
    later = world.emit()
    world.relay()
    assert ids(receiver.events) == ids(later)  # the refused one did not hold the group
    [failed] = event_api.deliveries(world.svc, world.org, {"status": "failed"}).body["deliveries"]
    assert (failed["id"], failed["type"], failed["attempts"], failed["last_status"]) == (
        refused[0].id, "group.status_changed", 1, 422)

    answer = event_api.replay(world.svc, world.org, refused[0].id)
    assert answer.status == 202 and answer.body["delivery"]["status"] == "queued"
    world.relay()
    assert ids(receiver.events) == ids(later + refused)
    assert receiver.events[-1] == event_json.to_payload(refused[0])
    [record] = world.svc.store.deliveries.page(world.org, None, None, 10)
    assert (record.status, record.replays) == ("delivered", 1)
    assert world.feed() == ids(refused + later)  # the feed is not touched by a replay


def test_gone_stops_delivery_until_the_endpoint_is_configured_again(world: World, receiver: Receiver) -> None:
    world.group()
    original = receiver._receive
    receiver._receive = lambda body, headers: (410, {})  # type: ignore[method-assign,assignment]
    gone = world.emit()
    world.relay()
    receiver._receive = original  # type: ignore[method-assign]
    quiet = world.emit()
    world.relay()
    assert receiver.events == [] and world.outbox() == []
    assert world.feed() == ids(gone + quiet)
    assert event_api.get_config(world.svc, world.org).body["endpoint_gone"] is True
    with pytest.raises(Exception, match="410"):
        event_api.replay(world.svc, world.org, gone[0].id)

    event_api.put_config(world.svc, world.org, {"tracker_webhook_url": receiver.url})  # same URL, kept secret
    assert event_api.get_config(world.svc, world.org).body["endpoint_gone"] is False
    after = world.emit()
    world.relay()
    assert ids(receiver.events) == ids(after)


def test_without_an_endpoint_events_go_to_the_feed_only(uid: str, receiver: Receiver,
                                                        env: pytest.MonkeyPatch) -> None:
    env.delenv("TRACKER_WEBHOOK_URL", raising=False)
    world = World(uid, receiver)
    event_api.put_config(world.svc, world.org, {"tracker_webhook_url": None})
    world.group()
    made = world.emit(count=2)
    world.relay()
    assert receiver.events == [] and world.outbox() == []
    assert world.feed() == ids(made)
    assert event_api.get_config(world.svc, world.org).body["delivery"] == "none"


def test_the_settings_endpoint_is_used_when_the_organization_has_none(uid: str, receiver: Receiver,
                                                                     env: pytest.MonkeyPatch) -> None:
    env.setenv("TRACKER_WEBHOOK_URL", receiver.url)
    env.setenv("TRACKER_WEBHOOK_SECRET", SECRET)
    world = World(uid, receiver)
    event_api.put_config(world.svc, world.org, {"tracker_webhook_url": None})
    world.group()
    made = world.emit()
    world.relay()
    assert ids(receiver.events) == ids(made)
    assert event_api.get_config(world.svc, world.org).body == {
        "organization_id": world.org, "tracker_webhook_url": None, "tracker_webhook_secret_set": False,
        "delivery": "settings", "endpoint_gone": False}


def test_a_malformed_settings_secret_is_retried_and_visible_not_lost(uid: str, receiver: Receiver,
                                                                    env: pytest.MonkeyPatch) -> None:
    env.setenv("TRACKER_WEBHOOK_URL", receiver.url)
    env.setenv("TRACKER_WEBHOOK_SECRET", "not-a-secret")
    world = World(uid, receiver)
    event_api.put_config(world.svc, world.org, {"tracker_webhook_url": None})
    world.group()
    made = world.emit()
    world.relay()
    [record] = world.svc.store.deliveries.page(world.org, "retrying", None, 10)
    assert record.event_id == made[0].id and "TRACKER_WEBHOOK_SECRET" in (record.last_reason or "")
    assert "not-a-secret" not in str(record)
    assert [p.event.id for p in world.outbox()] == ids(made)


def test_the_sweep_relays_outboxes_whose_notice_was_lost(world: World) -> None:
    world.group("old")
    world.group("new")
    # An event made before the grace period (ids carry their time; this process's id clock has passed it).
    made = world.clock() - relay.SWEEP_GRACE - 60
    fresh = events.status_changed(world.org, "old", "unresolved", "resolved", source="tracker", now=made)
    old_id = "evt_" + events._base32(events.millis(made), 10) + fresh.id[14:]
    stale = events.Event(old_id, fresh.type, made, world.org, "old", fresh.data)
    world.svc.store.groups.change(world.org, "old", lambda state: GroupChange(events=[stale]))
    world.emit("new")
    world.sent.sent.clear()
    relay.sweep(world.svc)
    mine = [m for m in world.sent.messages("tracker-events") if m.get("organization_id") == world.org]
    assert mine == [{"organization_id": world.org, "group_id": "old"}]


def test_integration_events_are_relayed_to_each_organization(world: World, uid: str) -> None:
    other = f"other-{uid}"
    told = [events.subscription_changed(org, integration_id=f"acct-{uid}", old="enabled", new="disabledBySystem",
                                        now=world.clock()) for org in (world.org, other)]
    outbox = Outbox("Integrations", f"acct-{uid}")
    for event in told:  # as the integration's change writes them (see test_lifecycle)
        tables.upsert(outbox.table, outbox_rows.entity(outbox.partition, event))
    relay.relay(world.svc, {"integration_id": f"acct-{uid}"})
    assert ids(world.receiver.events) == [told[0].id]  # the other organization has no endpoint
    assert world.feed() == [told[0].id]
    assert [e["id"] for e in event_api.events(world.svc, other, {}).body["events"]] == [told[1].id]
    assert world.svc.store.outbox.pending(outbox) == []
