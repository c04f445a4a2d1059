"""Checks against live Azure DevOps before anything is saved or created.

- An organization config is refused (422, the message starting with the key) when a status mapping
  names a project or a state that does not exist, or issue defaults name a project, work item type,
  area or iteration that does not exist. Status mappings are keyed by project id (a name is refused
  with the id to use); a state must belong to one of the project's work item types (any case).
- `POST .../issues?dry_run=true` answers 200 `{"valid", "errors": [{"field", "message"}], "request"}`:
  the errors a create would meet (the body's own checks, the project, the work item type, required
  fields, allowed values, unknown fields, area and iteration paths), after defaults are applied
  (`request` shows the project, type, paths, tags and fields a create would use). Nothing is
  claimed, created or remembered. A group already linked answers `valid` with its link as `existing`.

Cached facts (`shared.flows.discovery`) are trusted when they confirm a value; a value they do not
know is looked up live once more before it is refused. When Azure DevOps cannot be reached the
answer is a 503 and nothing is saved.
"""

from __future__ import annotations

from typing import Any

from shared.compose import Services
from shared.core import discovery as d
from shared.core import workitems as wi
from shared.core.errors import InvalidInput, Unprocessable
from shared.core.keys import check_id
from shared.core.reply import Reply
from shared.flows import workitems
from shared.flows.discovery import Lookups

PATH_KEYS = (("area_path", "area"), ("iteration_path", "iteration"))
EFFECTIVE = ("project", "work_item_type", "area_path", "iteration_path", "tags", "fields")


# --- organization config -------------------------------------------------------------------------


def check_config(lookups: Lookups, config: dict[str, Any]) -> None:
    """Refuse a config naming Azure DevOps things that do not exist (Unprocessable naming the key)."""
    for project_id, states in (config.get("sync_status_forward") or {}).items():
        _check_states(lookups, "sync_status_forward", project_id, list(states.items()))
    for project_id, lists in (config.get("inbound_status") or {}).items():
        named = [(key, state) for key in ("resolve", "unresolve") for state in lists.get(key) or []]
        _check_states(lookups, "inbound_status", project_id, named)
    for tracker_project, entry in (config.get("project_issue_defaults") or {}).items():
        _check_defaults(lookups, tracker_project, entry)


def _check_states(lookups: Lookups, name: str, project_id: str, named: list[tuple[str, str]]) -> None:
    project = lookups.project(project_id)
    if project is None:
        raise Unprocessable(f"{name}.{project_id}: no Azure DevOps project has this id (or the integration "
                            "cannot see it)", field=name)
    if project["id"].lower() != project_id.lower():
        raise Unprocessable(f"{name}.{project_id}: use the project's id {project['id']}, not its name",
                            field=name)
    known = d.state_names(lookups.types(project_id))
    if any(state.lower() not in known for _, state in named):
        known = d.state_names(lookups.types(project_id, fresh=True))
    for key, state in named:
        if state.lower() not in known:
            shown = ", ".join(sorted(set(known.values()), key=str.lower))
            raise Unprocessable(f"{name}.{project_id}.{key}: no state '{state}' in Azure DevOps project "
                                f"{project['name']} (its states: {shown})", field=name)


def _check_defaults(lookups: Lookups, tracker_project: str, entry: dict[str, Any]) -> None:
    name = f"project_issue_defaults.{tracker_project}"
    if not entry.get("project"):
        return  # the type and paths are checked at create time, against the request's project
    project = lookups.project(str(entry["project"]))
    if project is None:
        raise Unprocessable(f"{name}.project: no Azure DevOps project {entry['project']} (or the integration "
                            "cannot see it)", field="project_issue_defaults")
    type_ref = entry.get("work_item_type")
    if type_ref and _find_type(lookups, project["id"], str(type_ref)) is None:
        raise Unprocessable(f"{name}.work_item_type: no work item type {type_ref} in Azure DevOps project "
                            f"{project['name']}", field="project_issue_defaults")
    for key, kind in PATH_KEYS:
        if entry.get(key) and not lookups.has_path(project["id"], kind, str(entry[key])):
            raise Unprocessable(f"{name}.{key}: no {kind} path '{entry[key]}' in Azure DevOps project "
                                f"{project['name']}", field="project_issue_defaults")


def _find_type(lookups: Lookups, project_id: str, ref: str) -> dict[str, Any] | None:
    found = d.find_type(lookups.types(project_id), ref)
    return found or d.find_type(lookups.types(project_id, fresh=True), ref)


# --- create, or its dry run ----------------------------------------------------------------------


def issue_request(svc: Services, account_id: str, org_id: str, body: dict[str, Any],
                  query: dict[str, str]) -> Reply:
    """`POST .../issues`: create (see `workitems.create_issue`), or with `?dry_run=true` only check."""
    flag = (query.get("dry_run") or "").strip().lower()
    if flag not in ("", "true", "false", "1", "0"):
        raise InvalidInput("dry_run must be true or false", field="dry_run")
    if flag in ("true", "1"):
        return dry_run(svc, account_id, org_id, body)
    return workitems.create_issue(svc, account_id, org_id, body)


def dry_run(svc: Services, account_id: str, org_id: str, body: dict[str, Any]) -> Reply:
    """The errors a create of `body` would meet, without creating anything (see the module docstring)."""
    check_id(account_id, "account_id")
    check_id(org_id, "org_id")
    try:
        plan = workitems.prepare(svc, account_id, org_id, body)
        effective = {key: plan.body[key] for key in EFFECTIVE if key in plan.body}
        if plan.existing is not None:
            return Reply(body={"valid": True, "errors": [], "request": effective,
                               "existing": wi.issue_view(plan.existing)})
        request = wi.create_request(plan.body)
    except InvalidInput as error:
        message = error.message.removeprefix(f"{error.field}: ")
        found = [d.FieldError(error.field or "body", message)]
        return Reply(body={"valid": False, "errors": [e.view() for e in found], "request": {}})
    errors = _live_errors(Lookups(svc, plan.integration), request, plan.body)
    return Reply(body={"valid": not errors, "errors": [e.view() for e in errors], "request": effective})


def _live_errors(lookups: Lookups, request: wi.CreateRequest, body: dict[str, Any]) -> list[d.FieldError]:
    project = lookups.project(request.project)
    if project is None:
        return [d.FieldError("project", f"no Azure DevOps project {request.project} (or the "
                                        "integration cannot see it)")]
    errors: list[d.FieldError] = []
    wtype = _find_type(lookups, project["id"], request.work_item_type)
    if wtype is None:
        errors.append(d.FieldError("work_item_type", f"no work item type {request.work_item_type} in project "
                                                     f"{project['name']}"))
    else:
        values = {str(op["path"]).removeprefix("/fields/"): op["value"] for op in request.ops}
        found = d.field_errors(lookups.fields(project["id"], wtype["name"]), values, wtype["name"])
        if found:  # confirm with what Azure DevOps says now
            found = d.field_errors(lookups.fields(project["id"], wtype["name"], fresh=True), values, wtype["name"])
        errors += found
    for key, kind in PATH_KEYS:
        value = body.get(key)
        if value and not lookups.has_path(project["id"], kind, str(value)):
            errors.append(d.FieldError(key, f"no {kind} path '{value}' in project {project['name']} (TF401347)"))
    return errors
