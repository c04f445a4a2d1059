"""Azure DevOps facts for the management surface, decided without I/O.

Turns Azure DevOps answers into the plain objects the discovery routes return (projects, work item
types with their fields and states, area and iteration paths, users), pages those lists with
`?top=&skip=`, and computes the field errors a work item create would meet (the dry run).
Answers followed:
https://learn.microsoft.com/rest/api/azure/devops/core/projects/list
https://learn.microsoft.com/rest/api/azure/devops/wit/work-item-types/list
https://learn.microsoft.com/rest/api/azure/devops/wit/work-item-types-field/list
https://learn.microsoft.com/rest/api/azure/devops/wit/classification-nodes/get
https://learn.microsoft.com/rest/api/azure/devops/graph/users/list
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from shared.core import validate
from shared.core.errors import InvalidInput

DEFAULT_TOP = 100
MAX_TOP = 1000
MAX_SKIP = 1_000_000
MAX_USER_QUERY = 256
TREE_DEPTH = 14  # Azure DevOps allows area and iteration paths of at most 14 levels
# Fields Azure DevOps fills by itself on create (the initial state, the project root paths, ...):
# never "missing", even where a process marks them required.
SERVER_FILLED = frozenset(f"system.{name}" for name in (
    "id", "rev", "workitemtype", "teamproject", "areapath", "iterationpath", "areaid", "iterationid", "nodename",
    "state", "reason", "createdby", "createddate", "changedby", "changeddate", "authorizedas", "authorizeddate",
    "reviseddate", "watermark", "personid", "boardcolumn", "boardcolumndone", "boardlane", "commentcount"))
BODY_KEYS = {"System.Title": "title", "System.Description": "description", "System.History": "description",
             "System.AreaPath": "area_path", "System.IterationPath": "iteration_path", "System.Tags": "tags"}


@dataclass(frozen=True)
class Page:
    top: int = DEFAULT_TOP
    skip: int = 0


def page_params(query: Mapping[str, str]) -> Page:
    """`?top=` (1-1000, default 100) and `?skip=` (default 0) of a list route (a 400 naming the parameter)."""
    return Page(top=_count(query, "top", DEFAULT_TOP, 1, MAX_TOP), skip=_count(query, "skip", 0, 0, MAX_SKIP))


def _count(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = (query.get(name) or "").strip()
    if not text:
        return default
    if not validate.is_number(text) or not low <= int(text) <= high:
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}", field=name)
    return int(text)


def paged(items: list[Any], page: Page, query: Mapping[str, str]) -> tuple[list[Any], dict[str, str]]:
    """One page of `items`, with `X-Total-Count` and, when more follow, a relative `Link: <?...>; rel="next"`
    that keeps the request's other query parameters."""
    headers = {"X-Total-Count": str(len(items))}
    end = page.skip + page.top
    if end < len(items):
        rest = {k: v for k, v in query.items() if k not in ("top", "skip")}
        headers["Link"] = f'<?{urlencode({**rest, "top": page.top, "skip": end})}>; rel="next"'
    return items[page.skip:end], headers


# --- shapes --------------------------------------------------------------------------------------


def project(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": str(raw.get("id") or ""), "name": str(raw.get("name") or ""),
            "description": raw.get("description") or ""}


def state(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {"name": str(raw.get("name") or ""), "category": raw.get("category"), "color": raw.get("color")}


def work_item_type(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A type and its states (states are None when the answer did not carry them)."""
    states = raw.get("states")
    return {
        "name": str(raw.get("name") or ""),
        "reference_name": str(raw.get("referenceName") or ""),
        "description": raw.get("description") or "",
        "color": raw.get("color"),
        "is_disabled": bool(raw.get("isDisabled")),
        "states": [state(s) for s in states if isinstance(s, dict)] if isinstance(states, list) else None,
    }


def field(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A field of a work item type: name, reference name, required, allowed values, default value."""
    allowed = raw.get("allowedValues")
    return {
        "name": str(raw.get("name") or ""),
        "reference_name": str(raw.get("referenceName") or ""),
        "required": bool(raw.get("alwaysRequired")),
        "allowed_values": list(allowed) if isinstance(allowed, list) else [],
        "default_value": raw.get("defaultValue"),
    }


def user(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "display_name": str(raw.get("displayName") or ""),
        "email": str(raw.get("mailAddress") or ""),
        "principal_name": str(raw.get("principalName") or ""),
        "descriptor": str(raw.get("descriptor") or ""),
        "origin": raw.get("origin"),
    }


def user_query(query: Mapping[str, str]) -> str:
    text = (query.get("query") or "").strip()
    if len(text) > MAX_USER_QUERY:
        raise InvalidInput(f"query must be at most {MAX_USER_QUERY} characters", field="query")
    return text.lower()


def matching_users(users: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """Users whose display name, e-mail or principal name contains `text` (any case), sorted by name."""
    found = [u for u in users if not text or any(text in str(u.get(k) or "").lower()
                                                 for k in ("display_name", "email", "principal_name"))]
    return sorted(found, key=lambda u: (str(u["display_name"]).lower(), str(u["email"]).lower()))


def flatten(root: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A classification tree as a list, parents first: `path` is the work item field value
    (`Project\\Team A`, not the node's own `\\Project\\Area\\Team A`); iterations carry their dates."""
    return list(_walk(root, []))


def _walk(node: Mapping[str, Any], parents: list[str]) -> Iterator[dict[str, Any]]:
    trail = [*parents, str(node.get("name") or "")]
    found = node.get("attributes")
    attributes: dict[str, Any] = found if isinstance(found, dict) else {}
    entry: dict[str, Any] = {"path": "\\".join(trail), "name": trail[-1], "id": node.get("id"),
                             "identifier": node.get("identifier")}
    if node.get("structureType") == "iteration":
        entry["start_date"] = attributes.get("startDate")
        entry["finish_date"] = attributes.get("finishDate")
    yield entry
    for child in node.get("children") or []:
        if isinstance(child, dict):
            yield from _walk(child, trail)


# --- lookups -------------------------------------------------------------------------------------


def find_project(projects: list[dict[str, Any]], ref: str) -> dict[str, Any] | None:
    """The project with id or name `ref` (any case)."""
    ref = ref.strip().lower()
    return next((p for p in projects if ref in (p["id"].lower(), p["name"].lower())), None)


def find_type(types: list[dict[str, Any]], ref: str) -> dict[str, Any] | None:
    """The type with name or reference name `ref` (any case)."""
    ref = ref.strip().lower()
    return next((t for t in types if ref in (t["name"].lower(), t["reference_name"].lower())), None)


def state_names(types: list[dict[str, Any]]) -> dict[str, str]:
    """Every state of the project's types, lower-cased → as Azure DevOps spells it."""
    return {str(s["name"]).lower(): str(s["name"]) for t in types for s in t.get("states") or []}


def has_path(paths: list[dict[str, Any]], value: str) -> bool:
    wanted = value.strip().strip("\\").lower()
    return any(str(p["path"]).lower() == wanted for p in paths)


# --- dry run -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldError:
    field: str  # the request body key to fix: `project`, `area_path`, `fields.Custom.Severity`, ...
    message: str

    def view(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


def body_key(reference: str) -> str:
    """Where a field's value comes from in a create body."""
    return BODY_KEYS.get(reference, f"fields.{reference}")


def field_errors(fields: list[dict[str, Any]], values: Mapping[str, Any], type_name: str) -> list[FieldError]:
    """The rule errors Azure DevOps would answer a create of this type with (TF401320 required and
    allowed values, TF51535 unknown fields), for `values` (field reference name → value sent)."""
    known = {str(f["reference_name"]).lower(): f for f in fields}
    given = {name.lower(): value for name, value in values.items()}
    errors = [FieldError(body_key(name), f"{name} is not a field of work item type {type_name} (TF51535)")
              for name in values if name.lower() not in known and name not in BODY_KEYS]
    for spec in fields:
        name = str(spec["reference_name"])
        value = given.get(name.lower())
        empty = value is None or (isinstance(value, str) and not value.strip())
        default = spec.get("default_value")
        if spec.get("required") and empty and default in (None, "") and name.lower() not in SERVER_FILLED:
            errors.append(FieldError(body_key(name), f"{spec['name'] or name} ({name}) is required by work item "
                                                     f"type {type_name}; pass it in `fields`"))
        allowed = spec.get("allowed_values") or []
        if allowed and not empty and not allows(allowed, value):
            shown = ", ".join(str(a) for a in allowed[:20]) + (", ..." if len(allowed) > 20 else "")
            errors.append(FieldError(body_key(name), f"'{value}' is not an allowed value of {name} "
                                                     f"(allowed: {shown})"))
    return errors


def allows(allowed: list[Any], value: Any) -> bool:
    """Whether Azure DevOps accepts `value` for a picklist: strings in any case, numbers also as text."""
    text = str(value).lower()
    return any(value == a or str(a).lower() == text for a in allowed)
