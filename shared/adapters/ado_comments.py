"""The Work Item Comments API of Azure DevOps, through an `AdoClient` (its one request path).

Comments are HTML (`text`), sent without `format`, at api-version 7.1-preview.4 (a preview API:
https://learn.microsoft.com/rest/api/azure/devops/wit/comments?view=azure-devops-rest-7.1).
A create is never retried here: a retry could post the comment twice, so the caller recovers by
listing the newest comments instead. Does network I/O.
"""

from __future__ import annotations

from typing import Any

from shared.adapters.ado_client import AdoClient, Api, path

API_VERSION = "7.1-preview.4"


def add(client: AdoClient, project: str, work_item_id: int | str, text_html: str) -> dict[str, Any]:
    """Post a comment → the `Comment` (with its `id`)."""
    url = path(Api.COMMENTS, project=project, id=work_item_id)
    return dict(client.request("POST", url, json={"text": text_html}, retry=False, api_version=API_VERSION))


def update(client: AdoClient, project: str, work_item_id: int | str, comment_id: int, text_html: str
           ) -> dict[str, Any]:
    """Replace a comment's text (idempotent, so retried like a read)."""
    url = path(Api.COMMENT, project=project, id=work_item_id, comment=comment_id)
    return dict(client.request("PATCH", url, json={"text": text_html}, retry=True, api_version=API_VERSION))


def delete(client: AdoClient, project: str, work_item_id: int | str, comment_id: int) -> None:
    url = path(Api.COMMENT, project=project, id=work_item_id, comment=comment_id)
    client.request("DELETE", url, api_version=API_VERSION)


def newest(client: AdoClient, project: str, work_item_id: int | str, *, top: int = 50,
           include_deleted: bool = False) -> list[dict[str, Any]]:
    """The work item's newest comments (at most `top`), newest first."""
    url = path(Api.COMMENTS, project=project, id=work_item_id)
    params = {"$top": top, "order": "desc", "includeDeleted": "true" if include_deleted else "false"}
    body = client.request("GET", url, params=params, api_version=API_VERSION)
    found = body.get("comments") if isinstance(body, dict) else None
    return [c for c in found or [] if isinstance(c, dict)]


def caller_id(client: AdoClient) -> str:
    """The identity id the client calls as (`connectionData.authenticatedUser.id`; "" when not said)."""
    answer = client.request("GET", Api.CONNECTION_DATA, api_version=None)
    user = answer.get("authenticatedUser") if isinstance(answer, dict) else None
    value = user.get("id") if isinstance(user, dict) else None
    return str(value) if value else ""
