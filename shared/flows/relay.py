"""The `tracker-events` relay: from an outbox to the organization's feed and webhook endpoint.

A message names one outbox: `{"organization_id", "group_id"}` (a group's) or `{"integration_id"}`
(an integration's). The relay reads it oldest first and, per tracker organization:

1. appends its events to the organization's feed (idempotent: an event already there is left out);
2. delivers them one at a time to the organization's endpoint (its own config, else the settings),
   in order: a delivery that fails stops that organization's later events in this outbox, so a
   group's events arrive in the order they were made;
3. drops from the outbox what is done: delivered, refused for good (400/413/415/422, 410, or the
   retry schedule ran out, each recorded in `Deliveries` as failed so it can be replayed), or with
   nowhere to go (no endpoint configured, or it answered 410).

A failed attempt that may succeed later stays in the outbox with its attempt count and the time of
the next attempt (`shared.core.backoff`: 5 s, 5 min, 30 min, 2 h, 5 h, 8 h, 8 h); the relay run that
recorded it queues the outbox's message again with that delay. Runs that come earlier (a new
change's notice) append the new events to the feed and deliver nothing before that time.

Duplicates are harmless: feed entries are idempotent, outbox rows are dropped under their ETags, and
two runs of one outbox in one process are serialised (a notice for an outbox being relayed makes the
running relay go round once more). Two runs in different processes can deliver an event twice; each
event is delivered after the one before it, so its first arrivals stay in order.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from shared.adapters import groups, integrations, tracker_webhook
from shared.adapters.feed import OrgConfig
from shared.adapters.outbox import READ_LIMIT, Outbox, Pending
from shared.compose import Services
from shared.config import settings
from shared.core import delivery
from shared.core.delivery import Delivery
from shared.core.errors import BundleError, InvalidInput
from shared.core.events import Event, id_time
from shared.core.keys import SEP, check_id
from shared.flows.events import QUEUE

log = logging.getLogger(__name__)

RUN_BUDGET = 120.0  # seconds of deliveries per run; then the relay queues itself for the rest
MAX_ROUNDS = 10  # runs of one outbox in one invocation (notices that came while it was relayed)


@dataclass(frozen=True)
class Endpoint:
    """Where an organization's events go. `problem` (a safe text) when its settings are unusable."""

    url: str
    secret: str
    fingerprint: str
    problem: str | None = None

    def __repr__(self) -> str:
        return f"Endpoint(fingerprint={self.fingerprint!r}, problem={self.problem!r})"


def fingerprint(url: str) -> str:
    """A short stable name of an endpoint URL that does not reveal it (for the 410 mark)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


# --- messages ------------------------------------------------------------------------------------


def outbox_of(message: dict[str, Any]) -> Outbox:
    """The outbox a relay message names; InvalidInput when it names none."""
    if "group_id" in message:
        org_id = check_id(message.get("organization_id"), "organization_id")
        return Outbox(groups.TABLE, groups.partition(org_id, check_id(message.get("group_id"), "group_id")))
    if "integration_id" in message:
        return Outbox(integrations.TABLE, check_id(message.get("integration_id"), "integration_id"))
    raise InvalidInput("a tracker-events message names a group or an integration")


def message_of(outbox: Outbox) -> dict[str, str]:
    if outbox.table == groups.TABLE:
        org_id, group_id = outbox.partition.split(SEP, 1)
        return {"organization_id": org_id, "group_id": group_id}
    return {"integration_id": outbox.partition}


# --- the handler ---------------------------------------------------------------------------------

_guard = threading.Lock()
_running: set[Outbox] = set()
_again: set[Outbox] = set()


def relay(svc: Services, message: dict[str, Any]) -> None:
    """Relay one outbox (queue trigger of `tracker-events`)."""
    outbox = outbox_of(message)
    with _turn(outbox) as mine:
        if not mine:
            return  # a relay of this outbox is running in this process; it goes round once more
        for _ in range(MAX_ROUNDS):
            if _run(svc, outbox):
                svc.send(QUEUE, message_of(outbox))  # more than one run's worth: continue in a new message
                return
            with _guard:
                if outbox not in _again:
                    return
                _again.discard(outbox)
        svc.send(QUEUE, message_of(outbox))


@contextmanager
def _turn(outbox: Outbox) -> Iterator[bool]:
    with _guard:
        if outbox in _running:
            _again.add(outbox)
            mine = False
        else:
            _running.add(outbox)
            mine = True
    try:
        yield mine
    finally:
        if mine:
            with _guard:
                _running.discard(outbox)
                _again.discard(outbox)


def _run(svc: Services, outbox: Outbox) -> bool:
    """One pass over the outbox; True when it should be relayed again at once (more than one pass's worth)."""
    pending = svc.store.outbox.pending(outbox)
    if not pending:
        return False
    by_org: dict[str, list[Pending]] = {}
    for item in pending:
        by_org.setdefault(item.event.organization_id, []).append(item)
    endpoints: dict[str, Endpoint | None] = {}
    for org_id, items in by_org.items():
        head = svc.store.feed.head(org_id)
        # An event with a delivery record was attempted (or replayed) already, so it is in the feed.
        fresh = [item.event for item in items if not item.recorded]
        if fresh:
            svc.store.feed.append(org_id, fresh, head)
        endpoints[org_id] = endpoint(svc, org_id, head.config)
    done: list[Pending] = []
    blocked: set[str] = set()
    wake: float | None = None
    started = time.monotonic()
    out_of_time = False
    for item in pending:
        org_id = item.event.organization_id
        target = endpoints[org_id]
        if org_id in blocked:
            continue
        if target is None:
            if item.recorded:
                _record(svc, item, "failed", item.attempts, None, "no webhook endpoint is configured any more")
            done.append(item)
            continue
        if item.next_at > svc.clock():
            blocked.add(org_id)  # waiting for its next attempt; the run that scheduled it queued a wake-up
            continue
        if time.monotonic() - started > RUN_BUDGET:
            out_of_time = True
            break
        attempt = item.attempts + 1
        outcome = _deliver(svc, target, item.event)
        now = svc.clock()
        fate = delivery.decide(outcome.kind, attempt, now, retry_after=outcome.retry_after)
        if fate.status == "retrying":
            blocked.add(org_id)
            assert fate.next_at is not None
            if svc.store.outbox.reschedule(outbox, item, attempt, fate.next_at):
                _record(svc, item, "retrying", attempt, outcome, next_at=fate.next_at)
                wake = fate.next_at if wake is None else min(wake, fate.next_at)
            continue
        done.append(item)
        if fate.status == "failed":
            _record(svc, item, "failed", attempt, outcome)
            if outcome.kind == "gone":
                svc.store.feed.mark_gone(org_id, target.fingerprint)
                endpoints[org_id] = None
        elif item.recorded:
            _record(svc, item, "delivered", attempt, outcome)
    svc.store.outbox.drop(outbox, done)
    if wake is not None:
        svc.send(QUEUE, message_of(outbox), delay=max(1.0, wake - svc.clock()))
    return out_of_time or (len(pending) >= READ_LIMIT and bool(done))


def endpoint(svc: Services, org_id: str, config: OrgConfig) -> Endpoint | None:
    """The organization's endpoint (its config, else the settings); None when events only go to the feed."""
    try:
        if config.url is not None:
            url = config.url
            secret = svc.store.feed.open_secret(org_id, config) or ""
            tracker_webhook.check_secret(secret, setting="the organization's tracker_webhook_secret")
        else:
            url = settings().tracker_webhook_url or ""
            if not url:
                return None
            secret = tracker_webhook.check_secret(settings().tracker_webhook_secret)
            tracker_webhook.check_url(url)
    except BundleError as error:  # unusable settings: retried (and visible) until they are fixed
        return Endpoint(url="", secret="", fingerprint="", problem=error.message)
    target = Endpoint(url=url, secret=secret, fingerprint=fingerprint(url))
    return None if config.gone == target.fingerprint else target


def _deliver(svc: Services, target: Endpoint, event: Event) -> tracker_webhook.Outcome:
    if target.problem is not None:
        return tracker_webhook.Outcome("retry", None, target.problem[:300])
    try:
        return tracker_webhook.deliver(target.url, target.secret, event, session=svc.session, now=svc.clock)
    except BundleError as error:
        return tracker_webhook.Outcome("retry", None, error.message[:300])


def _record(svc: Services, item: Pending, status: delivery.Status, attempts: int,
            outcome: tracker_webhook.Outcome | None, reason: str | None = None, *,
            next_at: float | None = None) -> None:
    event = item.event
    svc.store.deliveries.update(Delivery(
        org_id=event.organization_id, event_id=event.id, event_type=event.type, group_id=event.group_id,
        status=status, attempts=attempts, last_status=outcome.status if outcome else None,
        last_reason=outcome.reason if outcome else reason, last_attempt=svc.clock() if outcome else None,
        next_attempt=next_at))
    log.info("relay.delivery", extra={"event_id": event.id, "event_type": event.type, "status": status,
                                      "attempts": attempts})


# --- replay --------------------------------------------------------------------------------------


def outbox_for(event: Event) -> Outbox:
    """The outbox an event is relayed from."""
    if event.group_id is not None:
        return Outbox(groups.TABLE, groups.partition(event.organization_id, event.group_id))
    return Outbox(integrations.TABLE, str(event.data.get("integration_id")))


def replay(svc: Services, event: Event) -> Delivery:
    """Queue an event's delivery again with a fresh schedule; the delivery record as it now stands."""
    outbox = outbox_for(event)
    current = svc.store.deliveries.get(event.organization_id, event.id)
    record = Delivery(org_id=event.organization_id, event_id=event.id, event_type=event.type,
                      group_id=event.group_id, status="queued")
    if current is not None:
        record = replace(current, status="queued", attempts=0, next_attempt=None, replays=current.replays + 1)
    else:
        record = replace(record, replays=1)
    svc.store.deliveries.record(record)
    svc.store.outbox.put_back(outbox, event)
    svc.send(QUEUE, message_of(outbox))
    return record


# --- sweep ---------------------------------------------------------------------------------------

SWEEP_GRACE = 120.0  # seconds an event may wait for its notice (or its wake-up) before the sweep steps in
SWEEP_BATCH = 100  # relay messages per queue message


def sweep(svc: Services) -> int:
    """Queue a relay for every outbox whose oldest event waits longer than it should; how many were queued.

    Notices are sent after the commit, so a crash or a queue outage in between leaves events in an
    outbox with no message to relay them; so does a poisoned relay message. Every outbox is found by
    one filtered scan per table (`OutboxStore.heads`), and only those whose oldest event is past its
    time (made, or due for a retry, more than SWEEP_GRACE ago) are queued, in batches.
    """
    now = svc.clock()
    items: list[dict[str, str]] = []
    queued = 0
    for table in (groups.TABLE, integrations.TABLE):
        for partition, row_key, next_at in svc.store.outbox.heads(table):
            try:
                due = next_at or id_time(row_key.split(SEP, 1)[1])
            except ValueError:
                continue
            if due + SWEEP_GRACE > now:
                continue
            items.append(message_of(Outbox(table, partition)))
            if len(items) >= SWEEP_BATCH:
                svc.send(QUEUE, {"items": items})
                queued, items = queued + len(items), []
    if items:
        svc.send(QUEUE, {"items": items})
        queued += len(items)
    log.info("relay.sweep", extra={"queued": queued})
    return queued
