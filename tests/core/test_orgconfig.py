"""shared.core.orgconfig: install-body validation of identities and organization sync configs (422s naming fields)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.core.errors import InvalidInput
from shared.core.models import Identity
from shared.core.orgconfig import BOOLEAN_KEYS, RESOLUTION_STRATEGIES, parse_config, parse_identity

OFF = {key: False for key in BOOLEAN_KEYS} | {"sync_status_forward": {}}


def _raises(parse: Any, body: dict[str, Any]) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse(body)
    assert caught.value.status == 422
    return caught.value


# --- parse_identity -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({"kind": "pat", "access_token": "tok"}, ("pat", "tok", None, None), id="pat"),
        pytest.param({"kind": "oauth", "access_token": "tok", "refresh_token": "ref",
                      "expires_at": "2030-01-01T00:00:00Z"}, ("oauth", "tok", "ref", 1_893_456_000.0),
                     id="oauth-iso-expiry"),
        pytest.param({"kind": "oauth", "access_token": "tok", "expires_at": 1_893_456_000},
                     ("oauth", "tok", None, 1_893_456_000.0), id="oauth-unix-expiry"),
        pytest.param({"kind": "oauth", "access_token": "tok", "expires_at": "2030-01-01T01:00:00+01:00"},
                     ("oauth", "tok", None, 1_893_456_000.0), id="oauth-expiry-with-offset"),
        pytest.param({"kind": "pat", "access_token": "tok", "refresh_token": None}, ("pat", "tok", None, None),
                     id="pat-null-refresh-token"),
    ],
)
def test_valid_identities(body: dict[str, Any], expected: tuple[Any, ...]) -> None:
    identity = parse_identity(body)
    assert isinstance(identity, Identity)
    assert (identity.kind, identity.access_token, identity.refresh_token, identity.expires_at) == expected
    assert identity.status == "valid"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        pytest.param({"access_token": "tok"}, "identity.kind", "is required", id="missing-kind"),
        pytest.param({"kind": "basic", "access_token": "tok"}, "identity.kind", "one of oauth, pat", id="bad-kind"),
        pytest.param({"kind": "pat"}, "identity.access_token", "is required", id="missing-token"),
        pytest.param({"kind": "pat", "access_token": " "}, "identity.access_token", "not be empty",
                     id="blank-token"),
        pytest.param({"kind": "pat", "access_token": 5}, "identity.access_token", "must be a string",
                     id="token-not-text"),
        pytest.param({"kind": "pat", "access_token": "x" * 16_001}, "identity.access_token", "16000",
                     id="token-too-long"),
        pytest.param({"kind": "pat", "access_token": "tok", "refresh_token": "ref"}, "identity.refresh_token",
                     "only used with kind oauth", id="pat-with-refresh-token"),
        pytest.param({"kind": "oauth", "access_token": "tok", "refresh_token": 1}, "identity.refresh_token",
                     "must be a string", id="refresh-token-not-text"),
        pytest.param({"kind": "oauth", "access_token": "tok", "expires_at": "soon"}, "identity.expires_at",
                     "ISO 8601", id="expiry-not-a-time"),
        pytest.param({"kind": "oauth", "access_token": "tok", "expires_at": True}, "identity.expires_at",
                     "ISO 8601", id="expiry-bool"),
        pytest.param({"kind": "oauth", "access_token": "tok", "expires_at": -1}, "identity.expires_at",
                     "out of range", id="expiry-negative"),
    ],
)
def test_invalid_identities_name_the_field(body: dict[str, Any], field: str, message: str) -> None:
    error = _raises(parse_identity, body)
    assert error.field == field
    assert error.message.startswith(f"{field}: ")
    assert message in error.message


def test_identity_error_never_echoes_the_token() -> None:
    error = _raises(parse_identity, {"kind": "pat", "access_token": "tok-SECRET", "refresh_token": "ref-SECRET"})
    assert "SECRET" not in error.message


# --- parse_config -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param({}, OFF, id="empty-is-all-off"),
        pytest.param({"sync_comments": True, "sync_status_reverse": None}, OFF | {"sync_comments": True},
                     id="booleans-null-is-off"),
        pytest.param({key: True for key in BOOLEAN_KEYS}, OFF | dict.fromkeys(BOOLEAN_KEYS, True), id="all-on"),
        pytest.param({"sync_status_forward": {"P1": {"on_resolve": " Done ", "on_unresolve": "Active"}}},
                     OFF | {"sync_status_forward": {"P1": {"on_resolve": "Done", "on_unresolve": "Active"}}},
                     id="status-mapping-trimmed"),
        pytest.param({"sync_status_forward": False}, OFF, id="status-mapping-false-is-off"),
        pytest.param({"sync_status_forward": {}}, OFF, id="status-mapping-empty-is-off"),
        pytest.param({"inbound_status": {"P1": {"resolve": ["Done"], "unresolve": ["Active", "New"]}}},
                     OFF | {"inbound_status": {"P1": {"resolve": ["Done"], "unresolve": ["Active", "New"]}}},
                     id="inbound-override"),
        pytest.param({"inbound_status": {"P1": {"resolve": ["Done"]}}},
                     OFF | {"inbound_status": {"P1": {"resolve": ["Done"], "unresolve": []}}},
                     id="inbound-override-missing-list-is-empty"),
        pytest.param({"inbound_status": {}}, OFF, id="inbound-override-empty-dropped"),
        pytest.param({"project_issue_defaults": {"P1": {"work_item_type": "Bug"}}},
                     OFF | {"project_issue_defaults": {"P1": {"work_item_type": "Bug"}}}, id="issue-defaults"),
        pytest.param({"project_issue_defaults": {}}, OFF, id="issue-defaults-empty-dropped"),
        pytest.param({"resolution_strategy": None}, OFF, id="strategy-null-dropped"),
        *[pytest.param({"resolution_strategy": s}, OFF | {"resolution_strategy": s}, id=f"strategy-{s}")
          for s in RESOLUTION_STRATEGIES],
    ],
)
def test_valid_configs(body: dict[str, Any], expected: dict[str, Any]) -> None:
    assert parse_config(body) == expected


def test_resolution_strategies_are_exactly_the_three() -> None:
    assert set(RESOLUTION_STRATEGIES) == {"resolve", "resolve_current_release", "resolve_next_release"}


LONG = "x" * 8_000


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        pytest.param({"sync_everything": True}, "sync_everything", "not a known setting", id="unknown-key"),
        pytest.param({"zeta": 1, "alpha": 2}, "alpha", "not a known setting", id="first-unknown-key-named"),
        pytest.param({"sync_comments": "yes"}, "sync_comments", "true or false", id="boolean-as-string"),
        pytest.param({"sync_reverse_assignment": 1}, "sync_reverse_assignment", "true or false", id="boolean-as-int"),
        pytest.param({"sync_status_forward": True}, "sync_status_forward", "must be a mapping",
                     id="status-mapping-true"),
        pytest.param({"sync_status_forward": ["P1"]}, "sync_status_forward", "must be a mapping",
                     id="status-mapping-list"),
        pytest.param({"sync_status_forward": {"P1": {"on_resolve": "Done"}}}, "sync_status_forward",
                     "Resolve and unresolve status are required", id="status-mapping-missing-unresolve"),
        pytest.param({"sync_status_forward": {"P1": {"on_resolve": "Done", "on_unresolve": " "}}},
                     "sync_status_forward", "Resolve and unresolve status are required", id="status-mapping-blank"),
        pytest.param({"sync_status_forward": {"P1": "Done"}}, "sync_status_forward",
                     "Resolve and unresolve status are required", id="status-mapping-not-an-object"),
        pytest.param({"sync_status_forward": {" ": {"on_resolve": "D", "on_unresolve": "A"}}},
                     "sync_status_forward", "project ids", id="status-mapping-blank-project"),
        pytest.param({"sync_status_forward": {"p" * 257: {"on_resolve": "D", "on_unresolve": "A"}}},
                     "sync_status_forward", "project ids", id="status-mapping-long-project"),
        pytest.param({"inbound_status": ["Done"]}, "inbound_status", "must be a mapping", id="inbound-not-a-mapping"),
        pytest.param({"inbound_status": {"P1": ["Done"]}}, "inbound_status", "resolve and unresolve lists",
                     id="inbound-project-not-an-object"),
        pytest.param({"inbound_status": {"P1": {"close": ["Done"]}}}, "inbound_status",
                     "resolve and unresolve lists", id="inbound-unknown-list"),
        pytest.param({"inbound_status": {"P1": {"resolve": "Done"}}}, "inbound_status.resolve", "must be a list",
                     id="inbound-list-is-a-string"),
        pytest.param({"inbound_status": {"P1": {"unresolve": [""]}}}, "inbound_status.unresolve",
                     "non-empty strings", id="inbound-empty-state"),
        pytest.param({"inbound_status": {"": {"resolve": []}}}, "inbound_status", "project ids",
                     id="inbound-blank-project"),
        pytest.param({"project_issue_defaults": ["Bug"]}, "project_issue_defaults", "must be an object",
                     id="issue-defaults-not-an-object"),
        pytest.param({"project_issue_defaults": {"P1": "y" * 16_000}}, "project_issue_defaults", "16000",
                     id="issue-defaults-too-large"),
        pytest.param({"resolution_strategy": "close"}, "resolution_strategy",
                     "one of resolve, resolve_current_release, resolve_next_release", id="strategy-unknown"),
        pytest.param({"resolution_strategy": "Resolve"}, "resolution_strategy", "one of", id="strategy-case"),
        pytest.param({"resolution_strategy": ""}, "resolution_strategy", "not be empty", id="strategy-empty"),
        pytest.param({"resolution_strategy": True}, "resolution_strategy", "must be a string", id="strategy-bool"),
        pytest.param({"project_issue_defaults": {"P1": {"fields": {"Custom.Notes": "y" * 10_000}}},
                      "sync_status_forward": {"P1": {"on_resolve": LONG, "on_unresolve": "A"}}},
                     "config", "larger than 16000", id="whole-config-too-large"),
    ],
)
def test_invalid_configs_name_the_field(body: dict[str, Any], field: str, message: str) -> None:
    error = _raises(parse_config, body)
    assert error.field == field
    assert message in error.message
