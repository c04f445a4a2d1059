"""Changes that tell the tracker: group changes whose events are committed with them, then relayed.

An event is written in the same transaction as the change it describes (the group's outbox), so no
change is lost and none is invented. After the commit, one `tracker-events` message asks the relay to
deliver the group's outbox in order; if that message cannot be sent, the events wait in the outbox
for the group's next change or the next sweep.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from shared.adapters.groups import Decide
from shared.compose import Services
from shared.core.errors import TransientError
from shared.core.models import GroupChange, GroupState

log = logging.getLogger(__name__)

QUEUE = "tracker-events"


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
    try:
        svc.send(QUEUE, {"organization_id": org_id, "group_id": group_id})
    except TransientError:
        log.warning("events.notify_failed", extra={"organization_id": org_id, "group_id": group_id})
