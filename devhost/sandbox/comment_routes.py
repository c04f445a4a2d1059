"""Routes of the Work Item Comments API: `{org}/{project}/_apis/wit/workItems/{id}/comments[/{commentId}]`.

No socket I/O; `wit_routes.py` dispatches here. A preview API: the api-version must carry `-preview`
(7.1-preview.4, 7.1-preview.3, 7.0-preview.3, ...), as on ADO.
https://learn.microsoft.com/rest/api/azure/devops/wit/comments
"""

from __future__ import annotations

import re

from devhost.sandbox import comments
from devhost.sandbox.api import Request, Response, int_param, method, not_found, ok
from devhost.sandbox.errors import ApiError
from devhost.sandbox.model import Org
from devhost.sandbox.state import State

_PREVIEW = re.compile(r"^(\d+)\.(\d+)-preview(?:\.(\d+))?$", re.IGNORECASE)
MAX_TOP = 200


def route(state: State, org: Org, project: str | None, work_item: str, rest: list[str], req: Request) -> Response:
    """`rest`: the path after `.../workItems/{id}/comments` (empty, or one comment id)."""
    if project is None or len(rest) > 1:
        raise not_found()
    _require_preview(req)
    if not work_item.isdigit() or (rest and not rest[0].isdigit()):
        raise ApiError(400, "The work item or comment id is not valid.", "InvalidArgumentValueException")
    wid = int(work_item)
    with state.lock:
        proj = state.project(org, project)
        if state.item(org, wid).project_id != proj.id:
            state.item(org, -1)  # 404 TF401232: not in this project
    instance = state.instance(org)
    rendered = req.query.get("$expand", "").lower() in ("renderedtext", "all", "renderedtextonly")
    if not rest:
        method(req, "GET", "POST")
        if req.method == "POST":
            body = req.json()
            text = body.get("text") if isinstance(body, dict) else None
            fmt = req.query.get("format", "html").lower()
            comment = state.add_comment(org.name, wid, text, None, fmt)
            with state.lock:
                return ok(comments.render(instance, proj.id, comment, rendered=rendered))
        return _list(state, org, proj.id, wid, req, rendered=rendered)
    cid = int(rest[0])
    method(req, "GET", "PATCH", "DELETE")
    if req.method == "DELETE":
        state.delete_comment(org.name, wid, cid, None)
        return Response(200, b"")
    if req.method == "PATCH":
        body = req.json()
        comment = state.edit_comment(org.name, wid, cid, body.get("text") if isinstance(body, dict) else None, None)
    else:
        with state.lock:
            deleted = req.query.get("includedeleted", "").lower() == "true"
            comment = state.comment(org, wid, cid, include_deleted=deleted)
    with state.lock:
        return ok(comments.render(instance, proj.id, comment, rendered=rendered))


def _list(state: State, org: Org, project_id: str, wid: int, req: Request, *, rendered: bool) -> Response:
    top = min(int_param(req.query.get("$top"), MAX_TOP, "$top"), MAX_TOP) or MAX_TOP
    token = int_param(req.query.get("continuationtoken"), 0, "continuationToken")
    order = req.query.get("order", "desc").lower()
    if order not in ("asc", "desc"):
        raise ApiError(400, f"The value '{order}' for 'order' is not valid.", "InvalidArgumentValueException")
    include_deleted = req.query.get("includedeleted", "").lower() == "true"
    instance = state.instance(org)
    url = f"{instance}{project_id}/_apis/wit/workItems/{wid}/comments"
    with state.lock:
        page, total, next_token = state.comment_page(
            org, wid, top=top, token=token, include_deleted=include_deleted, descending=order == "desc"
        )
        body = {
            "totalCount": total,
            "count": len(page),
            "comments": [comments.render(instance, project_id, c, rendered=rendered) for c in page],
            "url": url,
        }
    headers: dict[str, str] = {}
    if next_token is not None:
        body["continuationToken"] = str(next_token)
        body["nextPage"] = f"{url}?continuationToken={next_token}&$top={top}&order={order}"
        headers["x-ms-continuationtoken"] = str(next_token)
    return ok(body, headers=headers)


def _require_preview(req: Request) -> None:
    accept = re.search(r"api-version\s*=\s*([^;,\s]+)", req.header("Accept"), re.IGNORECASE)
    version = req.query.get("api-version") or (accept.group(1) if accept else "")
    match = _PREVIEW.match(version)
    if match is None:
        raise ApiError(
            400,
            f"The requested version \"{version}\" of the resource is under preview. The -preview flag must be "
            "supplied in the api-version for such requests. For example: \"7.1-preview.4\"",
            "VssInvalidPreviewVersionException",
        )
    if int(match.group(3) or 1) < 3:
        raise ApiError(
            400,
            f"The sandbox serves the Comments API from resource version 3 on; '{version}' is older.",
            "VssVersionOutOfRangeException",
        )
