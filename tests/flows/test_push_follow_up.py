"""Pushes that must not stall (sandbox ADO + Azurite): a tracker change made while a push of the same
link holds the lease reaches Azure DevOps when that push ends, not only when its delayed message
comes back; a link knowing a revision the work item never reached does not make every write 412."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from conftest import Intercepted
from test_outbound import Setup, ado  # noqa: F401  (the `ado` fixture)

from shared.core import outbound


def test_a_change_during_a_push_is_pushed_when_the_lease_ends(ado: Setup) -> None:  # noqa: F811
    ado.link_through_the_api()
    (first,) = ado.change(status="resolved")
    during: list[dict[str, Any]] = []

    def change_meanwhile(real: Any, *args: Any) -> Any:
        written = real(*args)
        if not during:  # the tracker unresolves while the first push is in flight
            during.extend(ado.change(status="unresolved"))
            ado.sync(during[0])  # meets the lease: sent again for when it ends
        return written

    ado.sync(first, replace(ado.svc, ado=Intercepted(ado.svc.ado, update_work_item=change_meanwhile)))

    queued = ado.resent()
    (delayed, delay), (follow_up, now) = queued
    assert delay is not None and delay > 60, "the message that met the lease waits for its end"
    assert now is None and follow_up["version"] == ado.state().group.version, "the follow-up goes at once"
    ado.sync(follow_up)
    assert ado.work_item()["System.State"] == "Active"
    ado.svc.send.sent.clear()  # type: ignore[attr-defined]
    ado.sandbox.reset_calls()
    ado.sync(delayed)  # comes back after the lease: nothing left to do
    assert ado.patches() == [] and ado.resent() == []


def test_no_follow_up_when_nothing_changed_during_the_push(ado: Setup) -> None:  # noqa: F811
    ado.link_through_the_api()
    (message,) = ado.change(status="resolved")

    ado.sync(message)

    assert ado.resent() == []
    assert [m for q, m, _ in ado.svc.send.sent if q == outbound.QUEUE] == []  # type: ignore[attr-defined]


def test_a_revision_the_work_item_never_reached_does_not_block_pushes(ado: Setup) -> None:  # noqa: F811
    from shared.core.models import GroupChange

    link = ado.link_through_the_api()
    bogus = replace(link, state_rev=link.state_rev + 5, state_value="Closed")  # from a delivery ADO never sent
    ado.svc.store.groups.change(ado.org_id, ado.group_id, lambda s: GroupChange(links=[bogus]))
    (message,) = ado.change(status="resolved")

    ado.sync(message)  # 412 on the bogus revision; the work item read resets the link, then the write lands

    assert ado.work_item()["System.State"] == "Resolved"
    assert ado.state().links[(ado.account_id, ado.key)].state_rev == ado.rev()
