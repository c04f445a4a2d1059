"""Work item tracking routes of the sandbox (`_apis/wit/...`): work items, batch reads, WIQL, types.

No socket I/O; `routes.py` dispatches here. https://learn.microsoft.com/rest/api/azure/devops/wit/
"""

from __future__ import annotations

from typing import Any

from devhost.sandbox import comment_routes, process, queries, render
from devhost.sandbox.api import Request, Response, int_param, method, not_found, ok, require_patch_document
from devhost.sandbox.errors import ApiError
from devhost.sandbox.model import CATEGORIES, WORK_ITEM_TYPES, Org
from devhost.sandbox.state import State

MAX_BATCH = 200


def wit(state: State, org: Org, project: str | None, api: list[str], req: Request) -> Response:
    sub = [s.lower() for s in api]
    if sub[:1] == ["workitems"] and len(sub) == 2 and api[1].startswith("$"):
        method(req, "POST", "PATCH")
        if project is None:
            raise ApiError(400, "A project is required to create a work item.", "ProjectRequired")
        item = state.create_work_item(org.name, project, api[1][1:], require_patch_document(req))
        with state.lock:
            return ok(render.work_item(state.base_url, org, item))
    if sub[:1] == ["workitems"] and len(sub) >= 3 and sub[2] == "comments":
        return comment_routes.route(state, org, project, api[1], api[3:], req)
    if sub[:1] == ["workitems"] and len(sub) == 2:
        return _one_work_item(state, org, project, api[1], req)
    if sub == ["workitems"]:
        method(req, "GET")
        ids = [int_param(i, 0, "ids") for i in req.query.get("ids", "").split(",") if i.strip()]
        fields = [f.strip() for f in req.query.get("fields", "").split(",") if f.strip()]
        omit = req.query.get("errorpolicy", "").lower() == "omit"
        return _work_items(state, org, ids, fields, req.query.get("$expand", ""), omit_missing=omit)
    if sub == ["workitemsbatch"]:
        method(req, "POST")
        body = req.json()
        if not isinstance(body, dict):
            raise ApiError(400, "The batch request body is required.", "ArgumentNullException")
        ids, fields = body.get("ids"), body.get("fields") or []
        if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ApiError(400, "The value of 'ids' must be a list of work item ids.", "ArgumentException")
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise ApiError(400, "The value of 'fields' must be a list of field reference names.", "ArgumentException")
        omit = str(body.get("errorPolicy") or "").lower() == "omit"
        return _work_items(state, org, ids, fields, str(body.get("$expand") or ""), omit_missing=omit)
    if sub == ["wiql"]:
        method(req, "POST")
        top = int_param(req.query.get("$top"), 0, "$top") if req.query.get("$top") else None
        precise = req.query.get("timeprecision", "").lower() == "true"
        return ok(queries.run_wiql(state, org, project, req.json(), top=top, time_precision=precise))
    if sub[:1] == ["classificationnodes"]:
        method(req, "GET")
        if project is None:
            raise not_found()
        return _nodes(state, org, project, api, req)
    if sub[:1] == ["workitemtypes"] or sub == ["workitemtypecategories"]:
        method(req, "GET")
        if project is None:
            raise ApiError(400, "A project is required.", "ProjectRequired")
        return _types(state, org, project, api, req)
    raise not_found()


def _one_work_item(state: State, org: Org, project: str | None, ref: str, req: Request) -> Response:
    method(req, "GET", "PATCH")
    if not ref.isdigit():
        raise ApiError(400, f"The work item id '{ref}' is not valid.", "InvalidArgumentValueException")
    if project is not None:
        state.project(org, project)
    if req.method == "PATCH":
        item = state.update_work_item(org.name, int(ref), require_patch_document(req))
    else:
        with state.lock:
            item = state.item(org, int(ref))
    fields = [f.strip() for f in req.query.get("fields", "").split(",") if f.strip()]
    with state.lock:
        return ok(render.work_item(state.base_url, org, item, fields=fields or None))


def _work_items(
    state: State, org: Org, ids: list[int], fields: list[str], expand: str, *, omit_missing: bool
) -> Response:
    """Work items by id, in the order asked: `fields` narrows them; with errorPolicy omit, missing ids are left out.

    https://learn.microsoft.com/rest/api/azure/devops/wit/work-items/get-work-items-batch
    """
    if not ids:
        raise ApiError(400, "At least one work item id is required.", "ArgumentException")
    if len(ids) > MAX_BATCH:
        raise ApiError(
            400,
            f"The number of work item ids ({len(ids)}) exceeds the maximum of {MAX_BATCH}.",
            "ArgumentOutOfRangeException",
        )
    if fields and expand.lower() not in ("", "none"):
        message = "The expand parameter can not be used with the fields parameter."
        raise ApiError(400, message, "ConflictingParametersException")
    values: list[Any] = []
    with state.lock:
        for wid in ids:
            if wid in org.work_items:
                values.append(render.work_item(state.base_url, org, org.work_items[wid], fields=fields or None))
            elif not omit_missing:
                state.item(org, wid)  # 404 TF401232, like errorPolicy fail
    return ok({"count": len(values), "value": values})


def _types(state: State, org: Org, project: str, api: list[str], req: Request) -> Response:
    """Types (with states), a type's fields (`$expand=allowedValues|all`), states, and type categories."""
    with state.lock:
        proj = state.project(org, project)
        instance = state.instance(org)
        base = f"{instance}{proj.id}/_apis/wit/workItemTypes/"
        sub = [s.lower() for s in api]
        if sub == ["workitemtypecategories"]:
            value = [
                {
                    "name": name,
                    "referenceName": ref,
                    "defaultWorkItemType": {"name": default, "url": base + WORK_ITEM_TYPES[default]},
                    "workItemTypes": [{"name": t, "url": base + WORK_ITEM_TYPES[t]} for t in members],
                }
                for name, ref, default, members in CATEGORIES
            ]
            return ok({"count": len(value), "value": value})
        if sub == ["workitemtypes"]:
            types = [process.render_type(instance, proj, n, state.states(org, proj, n)) for n in WORK_ITEM_TYPES]
            return ok({"count": len(types), "value": types})
        wtype = state.work_item_type(proj, api[1])
        if len(sub) == 2:
            return ok(process.render_type(instance, proj, wtype, state.states(org, proj, wtype)))
        if len(sub) == 3 and sub[2] == "states":
            states = state.states(org, proj, wtype)
            return ok({"count": len(states), "value": states})
        if sub[2] == "fields" and len(sub) <= 4:
            expand = req.query.get("$expand", "").lower()
            rules = state.field_rules(org, proj, wtype)
            if len(sub) == 4:
                rule = next((r for r in rules if r.reference.lower() == sub[3]), None)
                if rule is None:
                    missing = "WorkItemTrackingFieldDefinitionNotFoundException"
                    raise ApiError(404, f"TF51535: Cannot find field {api[3]}.", missing)
                return ok(process.render_field(instance, rule, expand))
            value = [process.render_field(instance, r, expand) for r in rules]
            return ok({"count": len(value), "value": value})
    raise not_found()


def _nodes(state: State, org: Org, project: str, api: list[str], req: Request) -> Response:
    """`classificationnodes[/{Areas|Iterations}[/{path}]]?$depth=N`: trees with `hasChildren`/`children`."""
    depth = int_param(req.query.get("$depth"), 0, "$depth")
    with state.lock:
        proj = state.project(org, project)
        instance = state.instance(org)
        roots = {"areas": proj.areas, "iterations": proj.iterations}
        if len(api) == 1:
            value = [process.render_node(instance, proj, r, r, depth) for r in roots.values()]
            return ok({"count": len(value), "value": value})
        root = roots.get(api[1].lower())
        if root is None:
            raise not_found()
        relative = "\\".join(api[2:])
        node = process.find(root, "\\".join(p for p in (root.name, relative) if p))
        if node is None:
            raise ApiError(
                404,
                f"The classification node '{relative}' does not exist under {api[1]}.",
                "WorkItemTrackingTreeNodeNotFoundException",
            )
        return ok(process.render_node(instance, proj, root, node, depth))
