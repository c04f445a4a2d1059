"""shared.core.sync: what an Azure DevOps change does to a linked group (pure, literal inputs only)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from shared.core.models import Group, GroupChange, GroupState, Link, Push
from shared.core.outbound import planned_value
from shared.core.sync import (
    OWN_WRITE,
    Observed,
    change_mark,
    decide_inbound,
    done_states,
    inbound_change,
    pushed,
    status_action,
)

DONE = ["Resolved", "Closed"]
ACC = "acc"
KEY = "7"
NOW = 1_000_000.0


# --- status_action ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "done", "expected"),
    [
        pytest.param("Active", "Resolved", DONE, "resolve", id="active-to-done-resolves"),
        pytest.param("New", "Closed", DONE, "resolve", id="new-to-closed-resolves"),
        pytest.param("Resolved", "Active", DONE, "unresolve", id="reopened-unresolves"),
        pytest.param("Active", "New", DONE, "unresolve", id="not-done-to-not-done-unresolves"),
        pytest.param(None, "New", DONE, "unresolve", id="new-item-not-done-unresolves"),
        pytest.param(None, "Resolved", DONE, "noop", id="new-item-created-done-is-noop"),
        pytest.param(None, "Closed", DONE, "noop", id="new-item-created-closed-is-noop"),
        pytest.param("Resolved", "Closed", DONE, "noop", id="done-to-done-is-noop"),
        pytest.param("Resolved", "Resolved", DONE, "noop", id="done-unchanged-is-noop"),
        pytest.param("Active", None, DONE, "noop", id="no-new-state-is-noop"),
        pytest.param("Active", "", DONE, "noop", id="empty-new-state-is-noop"),
        pytest.param("Active", "Resolved", [], "unresolve", id="no-done-states-known-unresolves"),
        pytest.param("Active", "resolved", DONE, "unresolve", id="state-names-are-case-sensitive"),
    ],
)
def test_status_action_from_done_states(old: str | None, new: str | None, done: list[str], expected: str) -> None:
    assert status_action(old, new, done) == expected


OVERRIDE = {"resolve": ["Done", "Shipped"], "unresolve": ["Doing"]}


@pytest.mark.parametrize(
    ("old", "new", "override", "expected"),
    [
        pytest.param("Doing", "Done", OVERRIDE, "resolve", id="listed-resolve-state"),
        pytest.param("Done", "Shipped", OVERRIDE, "resolve", id="listed-resolve-even-from-resolve-state"),
        pytest.param("Done", "Doing", OVERRIDE, "unresolve", id="listed-unresolve-state"),
        pytest.param("Doing", "Resolved", OVERRIDE, "noop", id="done-category-state-not-listed-is-noop"),
        pytest.param("Resolved", "Active", OVERRIDE, "noop", id="unlisted-reopen-is-noop"),
        pytest.param("Doing", None, OVERRIDE, "noop", id="no-new-state-is-noop"),
        pytest.param("X", "Both", {"resolve": ["Both"], "unresolve": ["Both"]}, "resolve", id="resolve-wins-a-tie"),
        pytest.param("X", "Done", {"resolve": None, "unresolve": None}, "noop", id="null-lists-are-empty"),
        pytest.param("X", "Done", {"unresolve": ["Doing"]}, "noop", id="missing-resolve-list"),
    ],
)
def test_status_action_with_a_project_override(old: str | None, new: str | None, override: dict[str, Any],
                                               expected: str) -> None:
    assert status_action(old, new, DONE, override) == expected


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        pytest.param([{"name": "Resolved", "category": "Resolved"}, {"name": "Closed", "category": "Completed"},
                      {"name": "Active", "category": "InProgress"}], ["Closed", "Resolved"], id="done-categories"),
        pytest.param([{"name": "Removed", "category": "Removed"}], [], id="removed-is-not-done"),
        pytest.param([{"name": "Shut", "category": "Closed"}], ["Shut"], id="closed-category"),
        pytest.param([{"category": "Completed"}, {"name": "", "category": "Completed"}], [], id="nameless-skipped"),
        pytest.param([], [], id="no-states"),
    ],
)
def test_done_states_by_category(states: list[dict[str, Any]], expected: list[str]) -> None:
    assert done_states(states) == expected


# --- change_mark --------------------------------------------------------------------------------


def test_change_mark_is_a_short_stable_digest() -> None:
    mark = change_mark("Active", "Resolved")
    assert mark == change_mark("Active", "Resolved")
    assert len(mark) == 16 and all(c in "0123456789abcdef" for c in mark)
    assert mark != OWN_WRITE


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(("Active", "Resolved"), ("Resolved", "Active"), id="direction-matters"),
        pytest.param((None, "Active"), ("", "Active"), id="none-differs-from-empty"),
        pytest.param(("Active", "Resolved"), ("Active", "Closed"), id="new-value-matters"),
        pytest.param(("a <a@x.example>", None), ("b <b@x.example>", None), id="old-value-matters"),
    ],
)
def test_different_changes_have_different_marks(a: tuple[Any, Any], b: tuple[Any, Any]) -> None:
    assert change_mark(*a) != change_mark(*b)


def test_change_mark_ignores_key_order_of_identity_objects() -> None:
    one = {"displayName": "A", "uniqueName": "a@x.example"}
    two = {"uniqueName": "a@x.example", "displayName": "A"}
    assert change_mark(None, one) == change_mark(None, two)


# --- pushed -------------------------------------------------------------------------------------


def _link(**fields: Any) -> Link:
    return Link(**{"org_id": "o", "group_id": "g", "account_id": ACC, "key": KEY, **fields})


@pytest.mark.parametrize(
    ("field", "rev", "value", "before", "after"),
    [
        pytest.param("state", 6, "Resolved", {"state_rev": 5, "state_delivery": "m"},
                     {"state_rev": 6, "state_delivery": OWN_WRITE, "state_value": "Resolved"}, id="state-newer"),
        pytest.param("state", 5, "Resolved", {"state_rev": 5, "state_delivery": "m"},
                     {"state_rev": 5, "state_delivery": OWN_WRITE, "state_value": "Resolved"}, id="state-same-rev"),
        pytest.param("state", 4, "Resolved", {"state_rev": 5, "state_delivery": "m"},
                     {"state_rev": 5, "state_delivery": "m", "state_value": None}, id="state-older-unchanged"),
        pytest.param("assignee", 9, "a@x.example", {"assignee_rev": 3},
                     {"assignee_rev": 9, "assignee_delivery": OWN_WRITE, "assignee_value": "a@x.example"},
                     id="assignee-newer"),
        pytest.param("assignee", 2, "", {"assignee_rev": 3, "assignee_delivery": "m"},
                     {"assignee_rev": 3, "assignee_delivery": "m", "assignee_value": None}, id="assignee-older"),
    ],
)
def test_pushed_marks_the_bundles_own_revision(field: Any, rev: int, value: str, before: dict[str, Any],
                                               after: dict[str, Any]) -> None:
    link = _link(**before)
    result = pushed(link, field, rev, value)
    assert {name: getattr(result, name) for name in after} == after


def test_pushed_leaves_the_other_field_alone() -> None:
    link = _link(state_rev=5, state_delivery="s", assignee_rev=5, assignee_delivery="a", assignee_value="x")
    result = pushed(link, "state", 6, "Done")
    assert (result.assignee_rev, result.assignee_delivery, result.assignee_value) == (5, "a", "x")


# --- decide_inbound / inbound_change ------------------------------------------------------------


def _group(**fields: Any) -> Group:
    return Group(org_id="o", group_id="g", project_id="p", title="t", **{"version": 3, **fields})


def _state(link: Link | None = None, group: Group | None = None, pushes: list[Push] | None = None) -> GroupState:
    link = link or _link(state_rev=5, state_delivery="m5", state_value="Active",
                         assignee_rev=5, assignee_delivery="a5", assignee_value="")
    return GroupState(group=group or _group(), links={(ACC, KEY): link}, etags={},
                      pushes={(p.account_id, p.key, p.kind): p for p in pushes or []})


def _push(kind: str, base: int, value: str, *, lease_until: float = NOW + 60) -> Push:
    return Push(ACC, KEY, kind, pushed=0, lease="token", lease_until=lease_until, base_rev=base,
                planned=planned_value(kind, value))


def _decide(state: GroupState | None, observed: Observed, action: Any = "resolve", assignee: Any = False,
            note: str | None = None) -> GroupChange:
    return decide_inbound(ACC, KEY, observed, action, assignee, note, NOW, state)


def _state_obs(rev: int, mark: str, new: str = "Resolved") -> Observed:
    return Observed(rev=rev, state=new, state_old="Active", state_mark=mark)


@pytest.mark.parametrize(
    ("observed", "pushes", "link_changes", "resolved"),
    [
        pytest.param(_state_obs(4, "m4"), [], {}, False, id="older-revision-ignored"),
        pytest.param(_state_obs(5, "m5"), [], {}, False, id="same-change-redelivered-ignored"),
        pytest.param(_state_obs(5, "other"), [], {}, True, id="different-change-same-revision-applied"),
        pytest.param(_state_obs(6, "m6"), [], {}, True, id="newer-revision-applied"),
        pytest.param(_state_obs(5, "other"), [], {"state_delivery": OWN_WRITE}, False,
                     id="own-write-mark-blocks-same-revision"),
        pytest.param(_state_obs(6, "m6"), [], {"state_delivery": OWN_WRITE}, True,
                     id="own-write-mark-does-not-block-newer-revision"),
        pytest.param(_state_obs(6, "m6"), [_push("status", 5, "Resolved")], {}, False,
                     id="push-in-flight-rev-n-plus-1-planned-value-is-own"),
        pytest.param(_state_obs(6, "m6", new="RESOLVED "), [_push("status", 5, "Resolved")], {}, False,
                     id="push-in-flight-value-compared-trimmed-and-case-insensitive"),
        pytest.param(_state_obs(6, "m6", new="Closed"), [_push("status", 5, "Resolved")], {}, True,
                     id="push-in-flight-rev-n-plus-1-other-value-applied"),
        pytest.param(_state_obs(7, "m7"), [_push("status", 5, "Resolved")], {}, True,
                     id="push-in-flight-rev-n-plus-2-applied"),
        pytest.param(_state_obs(6, "m6"), [_push("status", 5, "Resolved", lease_until=NOW - 1)], {}, True,
                     id="expired-push-lease-is-not-own"),
        pytest.param(_state_obs(6, "m6"), [_push("assignee", 5, "Resolved")], {}, True,
                     id="assignee-push-does-not-claim-state"),
    ],
)
def test_inbound_state_change(observed: Observed, pushes: list[Push], link_changes: dict[str, Any],
                              resolved: bool) -> None:
    base = _link(state_rev=5, state_delivery="m5", state_value="Active")
    state = _state(replace(base, **link_changes), pushes=pushes)
    change = _decide(state, observed)
    if resolved:
        assert change.group is not None
        assert (change.group.status, change.group.status_source, change.group.version) == ("resolved", ACC, 4)
        assert [a.kind for a in change.activity] == ["set_resolved"]
        assert change.activity[0].data == {"provider": "Azure DevOps", "provider_key": "vsts",
                                           "integration_id": ACC, "key": KEY, "rev": observed.rev}
        [link] = change.links
        assert (link.state_rev, link.state_delivery, link.state_value) == (observed.rev, observed.state_mark,
                                                                         observed.state)
    else:
        assert change.group is None
        assert change.activity == []


def test_own_write_of_a_push_in_flight_is_recorded_on_the_link() -> None:
    state = _state(pushes=[_push("status", 5, "Resolved")])
    change = _decide(state, _state_obs(6, "m6"))
    [link] = change.links
    assert (link.state_rev, link.state_delivery, link.state_value) == (6, OWN_WRITE, "Resolved")
    again = _decide(replace(state, links={(ACC, KEY): link}), _state_obs(6, "m6"))
    assert not again, "the echo of the bundle's own write, delivered again, must change nothing"


@pytest.mark.parametrize(
    ("action", "status", "expected_status", "activity"),
    [
        pytest.param("resolve", "unresolved", "resolved", ["set_resolved"], id="resolve"),
        pytest.param("unresolve", "resolved", "unresolved", ["set_unresolved"], id="unresolve"),
        pytest.param("resolve", "resolved", None, [], id="already-resolved"),
        pytest.param("noop", "unresolved", None, [], id="noop"),
        pytest.param(None, "unresolved", None, [], id="state-not-synced"),
    ],
)
def test_status_actions_on_the_group(action: Any, status: str, expected_status: str | None,
                                     activity: list[str]) -> None:
    state = _state(group=_group(status=status))
    change = _decide(state, _state_obs(6, "m6"), action=action)
    assert (change.group.status if change.group else None) == expected_status
    assert [a.kind for a in change.activity] == activity


def test_noop_still_records_the_revision_but_a_state_not_synced_does_not() -> None:
    noop = _decide(_state(), _state_obs(6, "m6"), action="noop")
    assert [(link.state_rev, link.state_delivery) for link in noop.links] == [(6, "m6")]
    assert not _decide(_state(), _state_obs(6, "m6"), action=None)


def _assignee_obs(rev: int, mark: str, email: str = "a@x.example") -> Observed:
    return Observed(rev=rev, assignee=email, assignee_mark=mark)


@pytest.mark.parametrize(
    ("observed", "assignee", "current", "expected_assignee", "activity"),
    [
        pytest.param(_assignee_obs(6, "n6"), "u1", None, "u1", ["assigned"], id="assign"),
        pytest.param(_assignee_obs(6, "n6", ""), None, "u1", None, ["unassigned"], id="deassign"),
        pytest.param(_assignee_obs(6, "n6"), "u1", "u1", "u1", [], id="already-assigned"),
        pytest.param(_assignee_obs(4, "n4"), "u1", None, None, [], id="older-revision-ignored"),
        pytest.param(_assignee_obs(5, "a5"), "u1", None, None, [], id="same-change-redelivered-ignored"),
        pytest.param(_assignee_obs(5, "other"), "u1", None, "u1", ["assigned"],
                     id="different-change-same-revision-applied"),
        pytest.param(_assignee_obs(6, "n6"), False, None, None, [], id="assignee-not-synced"),
    ],
)
def test_inbound_assignee_change(observed: Observed, assignee: Any, current: str | None,
                                 expected_assignee: str | None, activity: list[str]) -> None:
    state = _state(group=_group(assignee=current))
    change = _decide(state, observed, action=None, assignee=assignee)
    group = change.group or state.group
    assert group.assignee == expected_assignee
    assert [a.kind for a in change.activity] == activity
    if activity:
        assert group.assignment_source == ACC
        assert change.activity[0].data["assignee"] == assignee


@pytest.mark.parametrize(
    ("observed", "pushes", "applied"),
    [
        pytest.param(_assignee_obs(6, "n6", "me@x.example"), [_push("assignee", 5, "Me@X.example")], False,
                     id="push-in-flight-rev-n-plus-1-planned-value-is-own"),
        pytest.param(_assignee_obs(6, "n6", ""), [_push("assignee", 5, "")], False,
                     id="push-in-flight-removal-is-own"),
        pytest.param(_assignee_obs(6, "n6", "other@x.example"), [_push("assignee", 5, "me@x.example")], True,
                     id="push-in-flight-rev-n-plus-1-other-value-applied"),
        pytest.param(_assignee_obs(6, "n6", "me@x.example"), [_push("status", 5, "me@x.example")], True,
                     id="status-push-does-not-claim-assignee"),
    ],
)
def test_assignee_push_in_flight(observed: Observed, pushes: list[Push], applied: bool) -> None:
    state = _state(pushes=pushes)
    change = _decide(state, observed, action=None, assignee="u1")
    assert (change.group is not None) == applied
    [link] = change.links
    assert link.assignee_rev == 6
    assert link.assignee_delivery == (observed.assignee_mark if applied else OWN_WRITE)


NOTE = "No user with this verified e-mail is a member of the group's project."


@pytest.mark.parametrize(
    ("observations", "notes"),
    [
        pytest.param([_assignee_obs(6, "n6")], 1, id="noted-once"),
        pytest.param([_assignee_obs(6, "n6"), _assignee_obs(6, "n6")], 1, id="redelivery-not-noted-again"),
        pytest.param([_assignee_obs(6, "n6"), _assignee_obs(6, "x6")], 1,
                     id="other-change-same-revision-not-noted-again"),
        pytest.param([_assignee_obs(6, "n6"), _assignee_obs(7, "n7")], 2, id="next-revision-noted-again"),
        pytest.param([_assignee_obs(5, "n5")], 0, id="different-change-at-applied-revision-not-noted"),
        pytest.param([_assignee_obs(4, "n4")], 0, id="older-revision-not-noted"),
    ],
)
def test_assignee_note_once_per_revision(observations: list[Observed], notes: int) -> None:
    state = _state()
    found = []
    for observed in observations:
        change = _decide(state, observed, action=None, assignee=False, note=NOTE)
        assert change.group is None, "a note never changes the group"
        found += [a for a in change.activity if a.kind == "assignee_not_synced"]
        state = replace(state, links={(ACC, KEY): change.links[0]} if change.links else state.links)
    assert len(found) == notes
    assert all(a.data["reason"] == NOTE for a in found)


def test_state_and_assignee_in_one_observation() -> None:
    observed = Observed(rev=6, state="Resolved", state_old="Active", state_mark="s6",
                        assignee="a@x.example", assignee_mark="a6")
    change = _decide(_state(), observed, action="resolve", assignee="u1")
    assert change.group is not None
    assert (change.group.status, change.group.assignee, change.group.version) == ("resolved", "u1", 4)
    assert [a.kind for a in change.activity] == ["set_resolved", "assigned"]
    [link] = change.links
    assert (link.state_rev, link.assignee_rev, link.assignee_value) == (6, 6, "a@x.example")


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(None, id="group-gone"),
        pytest.param(GroupState(group=_group(), links={}, etags={}), id="group-not-linked"),
        pytest.param(GroupState(group=_group(), links={(ACC, "8"): _link(key="8")}, etags={}),
                     id="linked-to-another-item"),
    ],
)
def test_unlinked_group_changes_nothing(state: GroupState | None) -> None:
    assert not _decide(state, _state_obs(6, "m6"), assignee="u1")


def test_inbound_change_is_the_same_decision_without_pushes() -> None:
    state = _state()
    link = state.links[(ACC, KEY)]
    change = inbound_change(state, link, observed=_state_obs(6, "m6"), integration_id=ACC, action="resolve",
                            assignee=False)
    decided = _decide(state, _state_obs(6, "m6"))
    # Event ids are unique per decision; everything else is the same decision.
    assert [(e.type, e.data) for e in change.events] == [(e.type, e.data) for e in decided.events]
    assert [e.type for e in change.events] == ["group.status_changed"]
    assert replace(change, events=[]) == replace(decided, events=[])
