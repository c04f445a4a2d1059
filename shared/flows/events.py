"""Changes that tell the tracker: changes whose events are committed with them, then relayed.

An event is written in the same transaction as the change it describes (the group's outbox, or for
`integration.subscription_changed` the integration's), so no change is lost and none is invented.
After the commit, one `tracker-events` message asks the relay (`shared.flows.relay`) to deliver the
outbox in order; if that message cannot be sent, the events wait in the outbox for the next change
or the sweep.

Notices are coalesced: a worker sends one per group per `NOTICE_WINDOW`, visible only at the end of
the window, and skips the notices of later changes inside it. The relay runs after every change the
window covers was committed, so it delivers them all, and a burst of changes to one group costs one
queue write instead of one per change.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from shared.adapters.groups import Decide
from shared.compose import Services
from shared.core.errors import TransientError
from shared.core.models import GroupChange, GroupState

log = logging.getLogger(__name__)

QUEUE = "tracker-events"
NOTICE_WINDOW = 2.0  # seconds
MAX_NOTICES_KEPT = 10_000
_noticed: dict[tuple[str, str], float] = {}
_lock = threading.Lock()


def change_group(svc: Services, org_id: str, group_id: str, decide: Decide, *, create: bool = False,
                 known: GroupState | None = None, rows: Sequence[str] = (),
                 ranges: Sequence[str] = ()) -> GroupState | None:
    """`svc.store.groups.change`, then a relay notice when the committed change carried events."""
    emitted: list[bool] = []

    def deciding(state: GroupState | None) -> GroupChange:
        change = decide(state)
        emitted[:] = [bool(change.events)]
        return change

    state = svc.store.groups.change(org_id, group_id, deciding, create=create, known=known, rows=rows,
                                    ranges=ranges)
    if emitted and emitted[0]:
        notify(svc, org_id, group_id)
    return state


def notify(svc: Services, org_id: str, group_id: str) -> None:
    """Ask the relay to deliver the group's outbox (best effort: the outbox keeps the events)."""
    now = svc.clock()
    with _lock:
        due = _noticed.get((org_id, group_id))
        if due is not None and now < due:
            return  # a notice visible at `due` is on its way and will find this change committed
        if len(_noticed) >= MAX_NOTICES_KEPT:
            _noticed.clear()
        _noticed[(org_id, group_id)] = now + NOTICE_WINDOW
    try:
        svc.send(QUEUE, {"organization_id": org_id, "group_id": group_id}, delay=NOTICE_WINDOW)
    except TransientError:
        with _lock:
            _noticed.pop((org_id, group_id), None)
        log.warning("events.notify_failed", extra={"organization_id": org_id, "group_id": group_id})


def notify_integration(svc: Services, account_id: str) -> None:
    """Ask the relay to deliver the integration's outbox (best effort: the outbox keeps the events)."""
    try:
        svc.send(QUEUE, {"integration_id": account_id})
    except TransientError:
        log.warning("events.notify_failed", extra={"account_id": account_id})
