"""shared.core.outbound: sync-outbound messages, what a push writes, and how its own echo is recognised."""

from __future__ import annotations

from typing import Any

import pytest

from shared.core.errors import InvalidInput
from shared.core.models import Group, GroupState, Link, OrgLink, Push
from shared.core.outbound import (
    OutboundMessage,
    assignee_plan,
    base_rev,
    conditional,
    is_own_write,
    parse_message,
    planned_messages,
    planned_value,
    status_plan,
)

NOW = 1_000_000.0
VALID = {"kind": "status", "integration_id": "acc", "organization_id": "org", "group_id": "g", "key": "7",
         "version": 3}


def _link(**fields: Any) -> Link:
    return Link(**{"org_id": "org", "group_id": "g", "account_id": "acc", "key": "7", **fields})


def _group(**fields: Any) -> Group:
    return Group(**{"org_id": "org", "group_id": "g", "project_id": "p", "title": "t", "version": 3, **fields})


# --- parse_message ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({}, OutboundMessage("status", "acc", "org", "g", "7", 3), id="status"),
        pytest.param({"kind": "assignee"}, OutboundMessage("assignee", "acc", "org", "g", "7", 3), id="assignee"),
        pytest.param({"key": 7}, OutboundMessage("status", "acc", "org", "g", "7", 3), id="int-key"),
        pytest.param({"key": "1" * 12}, OutboundMessage("status", "acc", "org", "g", "1" * 12, 3),
                     id="twelve-digit-key"),
        pytest.param({"version": None}, OutboundMessage("status", "acc", "org", "g", "7", None), id="no-version"),
        pytest.param({"version": 0}, OutboundMessage("status", "acc", "org", "g", "7", 0), id="version-zero"),
        pytest.param({"integration_id": 5}, OutboundMessage("status", "5", "org", "g", "7", 3), id="int-id"),
    ],
)
def test_valid_messages(changes: dict[str, Any], expected: OutboundMessage) -> None:
    assert parse_message({**VALID, **changes}) == expected


def test_message_without_version_key_is_valid() -> None:
    body = {k: v for k, v in VALID.items() if k != "version"}
    assert parse_message(body).version is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"kind": "comment"}, "kind", id="unknown-kind"),
        pytest.param({"kind": None}, "kind", id="missing-kind"),
        pytest.param({"key": "abc"}, "key", id="key-not-digits"),
        pytest.param({"key": ""}, "key", id="empty-key"),
        pytest.param({"key": "1" * 13}, "key", id="key-too-long"),
        pytest.param({"key": True}, "key", id="bool-key"),
        pytest.param({"key": -7}, "key", id="negative-key"),
        pytest.param({"key": 7.0}, "key", id="float-key"),
        pytest.param({"key": None}, "key", id="missing-key"),
        pytest.param({"key": "²"}, "key", id="superscript-digit-key"),
        pytest.param({"version": -1}, "version", id="negative-version"),
        pytest.param({"version": True}, "version", id="bool-version"),
        pytest.param({"version": "3"}, "version", id="string-version"),
        pytest.param({"version": 1.5}, "version", id="float-version"),
        pytest.param({"integration_id": None}, "integration_id", id="missing-integration"),
        pytest.param({"organization_id": "a/b"}, "organization_id", id="bad-organization-id"),
        pytest.param({"group_id": ".."}, "group_id", id="dot-segment-group-id"),
        pytest.param({"group_id": ""}, "group_id", id="empty-group-id"),
    ],
)
def test_malformed_messages_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_message({**VALID, **changes})
    assert caught.value.field == field
    assert caught.value.status == 400


# --- planned_messages ---------------------------------------------------------------------------


ALL_ON = {"sync_status_forward": {"p1": {"on_resolve": "Done", "on_unresolve": "Active"}},
          "sync_forward_assignment": True}


def _org_link(account: str, status: str = "active", **config: Any) -> OrgLink:
    return OrgLink(account_id=account, org_id="org", status=status, config=config)


def _two_links() -> GroupState:
    links = [_link(account_id="a1", key="1"), _link(account_id="a2", key="2")]
    return GroupState(group=_group(version=9), links={(x.account_id, x.key): x for x in links}, etags={})


@pytest.mark.parametrize(
    ("org_links", "kinds", "expected"),
    [
        pytest.param({"a1": _org_link("a1", **ALL_ON), "a2": _org_link("a2", **ALL_ON)}, ["status", "assignee"],
                     [("status", "a1", "1"), ("assignee", "a1", "1"), ("status", "a2", "2"), ("assignee", "a2", "2")],
                     id="every-link-every-kind"),
        pytest.param({"a1": _org_link("a1", **ALL_ON), "a2": _org_link("a2", **ALL_ON)}, ["assignee"],
                     [("assignee", "a1", "1"), ("assignee", "a2", "2")], id="only-requested-kinds"),
        pytest.param({"a1": _org_link("a1", sync_forward_assignment=True)}, ["status", "assignee"],
                     [("assignee", "a1", "1")], id="status-sync-off-and-unknown-integration"),
        pytest.param({"a1": _org_link("a1", sync_status_forward={})}, ["status"], [],
                     id="empty-status-mapping-is-off"),
        pytest.param({"a1": _org_link("a1", "disabled", **ALL_ON), "a2": None}, ["status", "assignee"], [],
                     id="inactive-link-and-missing-link"),
        pytest.param({}, ["status"], [], id="no-org-links"),
    ],
)
def test_planned_messages(org_links: dict[str, OrgLink | None], kinds: list[str],
                          expected: list[tuple[str, str, str]]) -> None:
    messages = planned_messages(_two_links(), org_links, kinds)
    assert [(m["kind"], m["integration_id"], m["key"]) for m in messages] == expected
    for m in messages:
        assert (m["organization_id"], m["group_id"], m["version"]) == ("org", "g", 9)
        assert parse_message(m).version == 9, "a planned message must pass its own validation"


# --- status_plan / assignee_plan ----------------------------------------------------------------


MAPPING = {"sync_status_forward": {"Proj-A": {"on_resolve": "Done", "on_unresolve": "Active"}}}


@pytest.mark.parametrize(
    ("config", "project", "status", "value"),
    [
        pytest.param(MAPPING, "Proj-A", "resolved", "Done", id="resolve"),
        pytest.param(MAPPING, "Proj-A", "unresolved", "Active", id="unresolve"),
        pytest.param(MAPPING, "proj-a", "resolved", "Done", id="project-id-case-insensitive"),
        pytest.param(MAPPING, "Proj-B", "resolved", None, id="unmapped-project"),
        pytest.param(MAPPING, None, "resolved", None, id="link-without-project"),
        pytest.param({"sync_status_forward": {"Proj-A": {"on_resolve": "Done"}}}, "Proj-A", "unresolved", None,
                     id="missing-on-unresolve"),
        pytest.param({"sync_status_forward": {"Proj-A": {"on_resolve": ""}}}, "Proj-A", "resolved", None,
                     id="empty-state"),
        pytest.param({"sync_status_forward": {"Proj-A": "Done"}}, "Proj-A", "resolved", None,
                     id="project-entry-not-an-object"),
        pytest.param({"sync_status_forward": True}, "Proj-A", "resolved", None, id="legacy-true"),
        pytest.param({}, "Proj-A", "resolved", None, id="no-config"),
    ],
)
def test_status_plan(config: dict[str, Any], project: str | None, status: str, value: str | None) -> None:
    plan = status_plan(config, _link(project_id=project), _group(status=status))
    assert plan.value == value
    if value is None:
        assert plan.ops is None
        assert plan.detail["reason"]
        assert plan.detail["status"] == status
        if project:
            when = "on_resolve" if status == "resolved" else "on_unresolve"
            assert f"No {when} state is configured for project {project}" in plan.detail["reason"]
    else:
        assert plan.ops == [{"op": "replace", "path": "/fields/System.State", "value": value}]
        assert plan.detail == {"state": value, "status": status}


@pytest.mark.parametrize(
    ("ado_user", "value", "ops"),
    [
        pytest.param({"mailAddress": "a@x.example", "principalName": "a@corp.example"}, "a@x.example",
                     [{"op": "add", "path": "/fields/System.AssignedTo", "value": "a@x.example"}],
                     id="by-mail-address"),
        pytest.param({"mailAddress": "", "principalName": "a@corp.example"}, "a@corp.example",
                     [{"op": "add", "path": "/fields/System.AssignedTo", "value": "a@corp.example"}],
                     id="principal-name-fallback"),
        pytest.param(None, "", [{"op": "remove", "path": "/fields/System.AssignedTo"}], id="remove"),
    ],
)
def test_assignee_plan(ado_user: dict[str, Any] | None, value: str, ops: list[dict[str, Any]]) -> None:
    plan = assignee_plan(ado_user, _group(assignee="u1"))
    assert (plan.value, plan.ops) == (value, ops)
    assert plan.detail["assignee"] == "u1"


# --- conditional / base_rev ---------------------------------------------------------------------


OPS = [{"op": "replace", "path": "/fields/System.State", "value": "Done"}]


@pytest.mark.parametrize(
    ("rev", "expected"),
    [
        pytest.param(5, [{"op": "test", "path": "/rev", "value": 5}, *OPS], id="known-rev-is-tested-first"),
        pytest.param(1, [{"op": "test", "path": "/rev", "value": 1}, *OPS], id="rev-one"),
        pytest.param(0, OPS, id="unknown-rev-unconditional"),
    ],
)
def test_conditional(rev: int, expected: list[dict[str, Any]]) -> None:
    result = conditional(OPS, rev)
    assert result == expected
    assert result is not OPS


@pytest.mark.parametrize(
    ("state_rev", "assignee_rev", "expected"),
    [
        pytest.param(0, 0, 0, id="nothing-known"),
        pytest.param(5, 3, 5, id="state-newer"),
        pytest.param(2, 8, 8, id="assignee-newer"),
    ],
)
def test_base_rev_is_the_newest_known_revision(state_rev: int, assignee_rev: int, expected: int) -> None:
    assert base_rev(_link(state_rev=state_rev, assignee_rev=assignee_rev)) == expected


# --- planned_value / is_own_write ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        pytest.param(("status", "Done"), ("status", " done "), True, id="trimmed-and-case-insensitive"),
        pytest.param(("assignee", "A@X.example"), ("assignee", "a@x.example"), True, id="email-case"),
        pytest.param(("status", "Done"), ("assignee", "Done"), False, id="kind-matters"),
        pytest.param(("status", "Done"), ("status", "Closed"), False, id="value-matters"),
        pytest.param(("assignee", ""), ("assignee", ""), True, id="removal"),
    ],
)
def test_planned_value(a: tuple[str, str], b: tuple[str, str], same: bool) -> None:
    assert (planned_value(*a) == planned_value(*b)) == same


def _push(**fields: Any) -> Push:
    defaults = {"account_id": "acc", "key": "7", "kind": "status", "lease": "token", "lease_until": NOW + 60,
                "base_rev": 5, "planned": planned_value("status", "Done")}
    return Push(**{**defaults, **fields})


@pytest.mark.parametrize(
    ("push", "kind", "rev", "value", "own"),
    [
        pytest.param(_push(), "status", 6, "Done", True, id="rev-n-plus-1-planned-value"),
        pytest.param(_push(), "status", 6, "DONE", True, id="case-insensitive"),
        pytest.param(_push(), "status", 6, "Closed", False, id="other-value"),
        pytest.param(_push(), "status", 5, "Done", False, id="base-revision-itself"),
        pytest.param(_push(), "status", 7, "Done", False, id="later-revision"),
        pytest.param(_push(), "assignee", 6, "Done", False, id="other-kind"),
        pytest.param(_push(), "status", 6, None, False, id="value-not-reported"),
        pytest.param(None, "status", 6, "Done", False, id="no-push"),
        pytest.param(_push(lease=None), "status", 6, "Done", False, id="no-lease"),
        pytest.param(_push(lease_until=NOW), "status", 6, "Done", False, id="lease-expired-now"),
        pytest.param(_push(planned=None), "status", 6, "Done", False, id="nothing-planned-yet"),
        pytest.param(_push(base_rev=0), "status", 1, "Done", True, id="unconditional-push-first-revision"),
        pytest.param(_push(kind="assignee", planned=planned_value("assignee", "")), "assignee", 6, "", True,
                     id="removal"),
    ],
)
def test_is_own_write(push: Push | None, kind: str, rev: int, value: str | None, own: bool) -> None:
    assert is_own_write(push, kind, rev, value, NOW) is own
