"""Work item defaults per tracker project: the configured `project_issue_defaults`, and the last choice.

Pure. An organization link's config may hold, per tracker project, the defaults of a create
(`{"project", "work_item_type", "area_path", "iteration_path", "tags", "fields"}`); after each
create the bundle also remembers the project and work item type it used, as Sentry does. A create
request's missing parts are filled from the remembered choice first, then from the configured
defaults. A layer's values other than `project` only apply to the Azure DevOps project they were
chosen for (compared by id or name, any case), so an area path never lands in another project.
A remembered choice is kept together with a digest of the configured entry it was made under
(`basis`): once an administrator changes that entry, the old choice no longer applies.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from shared.core import validate as v
from shared.core import workitems as wi
from shared.core.errors import InvalidInput
from shared.core.keys import check_id

KEYS = ("project", "work_item_type", "area_path", "iteration_path", "tags", "fields")
REMEMBERED = ("project", "work_item_type")  # what Sentry persists per project
PLACEHOLDER = "~"  # stands in for a project or type a default will give, to check the rest of a body early
NAME = "project_issue_defaults"


def parse_defaults(value: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """`{"<tracker project id>": {<KEYS>}}`, each value checked like the create body's (422 naming it)."""
    result: dict[str, dict[str, Any]] = {}
    for tracker_project, entry in value.items():
        try:
            check_id(tracker_project, NAME)
        except InvalidInput as error:
            raise v.invalid(NAME, f"tracker project ids: {error.message}") from None
        if not isinstance(entry, dict):
            raise v.invalid(NAME, f"the defaults of tracker project {tracker_project} must be an object "
                                  f"with some of {', '.join(KEYS)}")
        unknown = sorted(set(entry) - set(KEYS))
        if unknown:
            raise v.invalid(f"{NAME}.{unknown[0]}", f"is not a default (tracker project {tracker_project}); "
                                                    f"use {', '.join(KEYS)}")
        cleaned = {key: entry[key] for key in KEYS if entry.get(key) is not None}
        try:
            wi.create_request({"group_id": PLACEHOLDER, "title": PLACEHOLDER, **with_placeholders(cleaned)})
        except InvalidInput as error:
            name = error.field or NAME
            raise v.invalid(f"{NAME}.{name}", f"{error.message.split(': ', 1)[-1]} "
                                              f"(tracker project {tracker_project})") from None
        if cleaned:
            result[tracker_project] = cleaned
    return result


def with_placeholders(body: dict[str, Any]) -> dict[str, Any]:
    """`body` with a placeholder for a missing project and work item type (a default may give them),
    so everything the body itself gives can be checked before anything is read."""
    filled = dict(body)
    for key in ("project", "work_item_type"):
        if filled.get(key) is None:
            filled[key] = PLACEHOLDER
    return filled


def basis(configured: dict[str, Any] | None) -> str:
    """A digest of a configured defaults entry: a remembered choice applies only under the same one."""
    text = json.dumps(configured or {}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def choice(request: wi.CreateRequest, configured: dict[str, Any] | None) -> dict[str, Any]:
    """What to remember after a create: its project and work item type, with the basis they were chosen under."""
    return {"project": request.project, "work_item_type": request.work_item_type, "basis": basis(configured)}


def apply(body: dict[str, Any], configured: dict[str, Any] | None, remembered: dict[str, Any] | None
          ) -> dict[str, Any]:
    """The create body with its missing parts filled: the body wins, then the remembered choice (when
    made under the current configured entry), then the configured defaults."""
    layers = [layer for layer in (_current(remembered, configured), configured) if layer]
    merged = dict(body)
    if merged.get("project") is None:
        merged["project"] = next((layer["project"] for layer in layers if layer.get("project")), None)
    project = str(merged.get("project") or "").lower()
    for layer in layers:
        if layer.get("project") and str(layer["project"]).lower() != project:
            continue
        for key in ("work_item_type", "area_path", "iteration_path", "tags"):
            if merged.get(key) is None and layer.get(key) is not None:
                merged[key] = layer[key]
        if isinstance(layer.get("fields"), dict):
            body_fields = merged.get("fields")
            given: dict[str, Any] = body_fields if isinstance(body_fields, dict) else {}
            names = {name.lower() for name in given}
            merged["fields"] = {**{k: x for k, x in layer["fields"].items() if k.lower() not in names}, **given}
    return {key: value for key, value in merged.items() if value is not None}


def _current(remembered: dict[str, Any] | None, configured: dict[str, Any] | None) -> dict[str, Any] | None:
    if not remembered or remembered.get("basis") != basis(configured):
        return None
    return {key: remembered[key] for key in REMEMBERED if remembered.get(key)}
