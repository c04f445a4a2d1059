"""Validation of install bodies: the identity an integration calls Azure DevOps with, and an
organization link's sync config. Pure; every error is a 422 naming the field."""

from __future__ import annotations

import json
from typing import Any

from shared.core import validate as v
from shared.core.defaults import parse_defaults
from shared.core.errors import InvalidInput
from shared.core.models import Identity
from shared.core.times import parse_time

MAX_TOKEN = 16_000
# How the tracker should resolve a group that Azure DevOps resolved; carried in `group.status_changed` events.
RESOLUTION_STRATEGIES = ("resolve", "resolve_current_release", "resolve_next_release")
BOOLEAN_KEYS = ("sync_status_reverse", "sync_forward_assignment", "sync_reverse_assignment", "sync_comments")


def parse_identity(body: dict[str, Any]) -> Identity:
    try:
        kind = v.choice(body, "kind", ("oauth", "pat"))
        access_token = v.required_text(body, "access_token", max_len=MAX_TOKEN)
        refresh_token = v.text(body, "refresh_token", required=False, max_len=MAX_TOKEN)
    except InvalidInput as error:
        raise _nested("identity", error) from None
    if kind == "pat" and refresh_token:
        raise v.invalid("identity.refresh_token", "is only used with kind oauth")
    return Identity(kind="pat" if kind == "pat" else "oauth", access_token=access_token,
                    refresh_token=refresh_token, expires_at=parse_time(body.get("expires_at"), "identity.expires_at"))


def parse_config(body: dict[str, Any]) -> dict[str, Any]:
    """An organization link's sync config, validated (422 naming the field)."""
    allowed = {"sync_status_forward", "inbound_status", "project_issue_defaults", "resolution_strategy",
               *BOOLEAN_KEYS}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise v.invalid(unknown[0], "is not a known setting")
    config: dict[str, Any] = {}
    for key in BOOLEAN_KEYS:
        config[key] = bool(v.flag(body, key, default=False))
    config["sync_status_forward"] = _status_mapping(body.get("sync_status_forward"))
    inbound = _inbound_status(body.get("inbound_status"))
    if inbound:
        config["inbound_status"] = inbound
    defaults = parse_defaults(v.mapping(body, "project_issue_defaults") or {})
    if defaults:
        config["project_issue_defaults"] = defaults
    strategy = v.choice(body, "resolution_strategy", RESOLUTION_STRATEGIES, required=False)
    if strategy:
        config["resolution_strategy"] = strategy
    if len(json.dumps(config)) > v.MAX_MAPPING_JSON:
        raise v.invalid("config", f"is larger than {v.MAX_MAPPING_JSON} characters of JSON")
    return config


def _status_mapping(value: Any) -> dict[str, dict[str, str]]:
    """`{"<ado project id>": {"on_resolve", "on_unresolve"}}`; empty (or false) turns the sync off."""
    name = "sync_status_forward"
    if value is None or value is False:
        return {}
    if not isinstance(value, dict):
        raise v.invalid(name, 'must be a mapping {"<project id>": {"on_resolve", "on_unresolve"}}')
    mapping: dict[str, dict[str, str]] = {}
    for project, states in value.items():
        _project_key(project, name)
        if not isinstance(states, dict):
            raise v.invalid(name, "Resolve and unresolve status are required.")
        on_resolve, on_unresolve = states.get("on_resolve"), states.get("on_unresolve")
        if not (isinstance(on_resolve, str) and on_resolve.strip()
                and isinstance(on_unresolve, str) and on_unresolve.strip()):
            raise v.invalid(name, "Resolve and unresolve status are required.")
        mapping[str(project)] = {"on_resolve": on_resolve.strip(), "on_unresolve": on_unresolve.strip()}
    return mapping


def _inbound_status(value: Any) -> dict[str, dict[str, list[str]]]:
    """`{"<project id>": {"resolve": [...], "unresolve": [...]}}`: ADO states that (un)resolve."""
    name = "inbound_status"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise v.invalid(name, 'must be a mapping {"<project id>": {"resolve": [...], "unresolve": [...]}}')
    result: dict[str, dict[str, list[str]]] = {}
    for project, lists in value.items():
        _project_key(project, name)
        if not isinstance(lists, dict) or set(lists) - {"resolve", "unresolve"}:
            raise v.invalid(name, "each project needs an object with resolve and unresolve lists")
        try:
            result[str(project)] = {key: v.text_list(lists, key) for key in ("resolve", "unresolve")}
        except InvalidInput as error:
            raise _nested(name, error) from None
    return result


def _nested(prefix: str, error: InvalidInput) -> InvalidInput:
    if error.field is None:
        return error
    return v.invalid(f"{prefix}.{error.field}", error.message.split(": ", 1)[-1])


def _project_key(project: str, name: str) -> str:
    if not project.strip() or len(project) > 256:
        raise v.invalid(name, "project ids must be non-empty strings of at most 256 characters")
    return project
