"""Read-side queries of the sandbox: work item search (almsearch) and WIQL (see `wiql.py`).

No I/O: functions over `State`, called with its lock held where they read work items.
https://learn.microsoft.com/rest/api/azure/devops/search/work-item-search-results/fetch-work-item-search-results
"""

from __future__ import annotations

from typing import Any

from devhost.sandbox import render, wiql
from devhost.sandbox.errors import ApiError
from devhost.sandbox.model import Org, WorkItem, now_iso
from devhost.sandbox.state import EMAIL_IN_BRACKETS, State

_SEARCH_KEYS = (
    "System.Id",
    "System.WorkItemType",
    "System.Title",
    "System.AssignedTo",
    "System.State",
    "System.Tags",
    "System.CreatedDate",
    "System.ChangedDate",
    "System.AreaPath",
    "System.TeamProject",
)


def search(state: State, org: Org, project: str | None, body: Any) -> dict[str, Any]:
    """`POST _apis/search/workitemsearchresults`: title substring or id; lower-cased string fields."""
    if not isinstance(body, dict) or not str(body.get("searchText") or "").strip():
        raise ApiError(400, "The search text is empty.", "InvalidQueryException")
    text = str(body["searchText"]).strip().lower()
    top, skip = int(body.get("$top") or 100), int(body.get("$skip") or 0)
    filters = body.get("filters") or {}
    with state.lock:
        proj = state.project(org, project) if project else None
        found = []
        for item in sorted(org.work_items.values(), key=lambda i: i.id):
            title = str(item.fields.get("System.Title", ""))
            if proj and item.project_id != proj.id:
                continue
            if text != "*" and text not in title.lower() and text.lstrip("#") != str(item.id):
                continue
            if all(_filter_ok(item, k, v) for k, v in filters.items()):
                found.append(item)
        results = [_search_hit(state, org, item, text) for item in found[skip : skip + top]]
    return {"count": len(found), "results": results, "infoCode": 0, "facets": {}}


def _search_hit(state: State, org: Org, item: WorkItem, text: str) -> dict[str, Any]:
    proj = org.projects[item.project_id]
    values = {**item.fields, "System.Id": item.id, "System.Rev": item.rev}
    title = str(item.fields.get("System.Title", ""))
    hits = [{"fieldReferenceName": "system.title", "highlights": [title]}] if text in title.lower() else []
    return {
        "project": {"id": proj.id, "name": proj.name},
        "fields": {k.lower(): str(values.get(k, "")) for k in _SEARCH_KEYS},
        "hits": hits,
        "url": render.work_item(state.base_url, org, item)["url"],
    }


def _filter_ok(item: WorkItem, key: str, wanted: Any) -> bool:
    if not isinstance(wanted, list) or not wanted:
        return True
    actual = str(item.fields.get(key, "")).lower()
    options = [str(w).lower() for w in wanted]
    if key == "System.AssignedTo":
        email = EMAIL_IN_BRACKETS.search(actual)
        return actual in options or (email is not None and email.group(1) in options)
    return actual in options


def run_wiql(
    state: State, org: Org, project: str | None, body: Any, *, top: int | None, time_precision: bool
) -> dict[str, Any]:
    """`POST {org}[/{project}]/_apis/wit/wiql`: ids (and urls) of the matching work items, never fields."""
    if not isinstance(body, dict) or not isinstance(body.get("query"), str) or not body["query"].strip():
        raise ApiError(400, "The query text is required.", "ArgumentNullException")
    with state.lock:
        proj = state.project(org, project) if project else None
        query = wiql.parse(body["query"], project=proj.name if proj else None, time_precision=time_precision)
        found = wiql.run(query, list(org.work_items.values()))
        limit = state.wiql_max_results
        if top is not None:
            found = found[:top]
        elif len(found) > limit:
            raise ApiError(
                400,
                f"VS402337: The number of work items returned exceeds the size limit of {limit}. "
                "Change the query to return fewer items.",
                "WorkItemTrackingQueryResultSizeLimitExceededException",
            )
        base = state.instance(org)
        return {
            "queryType": "flat",
            "queryResultType": "workItem",
            "asOf": now_iso(),
            "columns": [wiql.column(base, name) for name in query.columns],
            "sortColumns": [
                {"field": wiql.column(base, name), "descending": descending} for name, descending in query.order
            ],
            "workItems": [{"id": i.id, "url": f"{base}_apis/wit/workItems/{i.id}"} for i in found],
        }
