"""Unlink a group from a work item: DELETE .../groups/{group_id}/links/{account_id}/{key}.

The link row and its push rows are removed in one group transaction, with an `unlink` activity
entry and a `group.unlinked` event for the tracker; then the work item's index row goes. Linking
writes the index row first and the link second, so either order of failure leaves at most an
index row without its link, which every reader already skips, and a retried DELETE removes it.

Idempotent: a link that is already gone answers 200 with `removed: false`. On request
(`?comment=true`, or the body `{"comment": true}`) a comment on the work item says the link was
removed: posted once, by the call that removed the link, after the removal, so a failed comment
never keeps a link alive (its failure is reported in the answer).
Comments API: https://learn.microsoft.com/rest/api/azure/devops/wit/comments/add-work-item-comment
"""

from __future__ import annotations

import html
import logging
from typing import Any

from shared.adapters.ado_client import AdoClient, path
from shared.compose import Services
from shared.core import events, validate
from shared.core.errors import BundleError, InvalidInput, NotFound
from shared.core.keys import check_id
from shared.core.models import Activity, Group, GroupChange, GroupState, Link
from shared.core.reply import Reply
from shared.flows import events as group_events

log = logging.getLogger(__name__)

# Until the Comments API calls land in the ADO client: the one call this flow needs.
COMMENTS = "{project}/_apis/wit/workItems/{id}/comments"
COMMENTS_API_VERSION = "7.1-preview.4"
TRUE, FALSE = ("true", "1", "yes"), ("false", "0", "no", "")


def wants_comment(query: dict[str, str], body: dict[str, Any]) -> bool:
    """`?comment=true` or `{"comment": true}`; anything else in the body is a 400."""
    unknown = sorted(set(body) - {"comment"})
    if unknown:
        raise validate.invalid(unknown[0], "is not a known option (only comment)")
    from_body = validate.flag(body, "comment", default=False)
    raw = query.get("comment")
    if raw is not None and raw.strip().lower() not in TRUE + FALSE:
        raise InvalidInput("comment must be true or false", field="comment")
    return bool(from_body) or (raw is not None and raw.strip().lower() in TRUE)


def unlink_work_item(svc: Services, org_id: str, group_id: str, account_id: str, key: str, *,
                     comment: bool = False) -> Reply:
    """Remove the group's link to work item `key` of integration `account_id` (404: no such group)."""
    for value, name in ((org_id, "org_id"), (group_id, "group_id"), (account_id, "account_id"), (key, "key")):
        check_id(value, name)
    removed: list[Link] = []

    def decide(state: GroupState | None) -> GroupChange:
        link = state.links.get((account_id, key)) if state else None
        removed[:] = [link] if link else []
        if link is None:
            return GroupChange()
        return GroupChange(
            unlinked=[(account_id, key)],
            activity=[Activity(kind="unlink", data={"account_id": account_id, "key": key, "url": link.url,
                                                    "source": "tracker"})],
            events=[events.unlinked(org_id, group_id, integration_id=account_id, work_item=key, source="tracker",
                                    now=svc.clock())])

    state = group_events.change_group(svc, org_id, group_id, decide)
    if state is None:
        raise NotFound("Group not found")
    svc.store.integrations.unindex_link(account_id, key, org_id, group_id)
    note = None
    if removed:
        log.info("link.removed", extra={"organization_id": org_id, "group_id": group_id, "account_id": account_id,
                                        "work_item": key})
        if comment:
            note = _comment(svc, removed[0], state.group)
    return Reply(status=200, body={"org_id": org_id, "group_id": group_id, "account_id": account_id, "key": key,
                                   "removed": bool(removed), "comment": note})


def _comment(svc: Services, link: Link, group: Group) -> dict[str, Any]:
    """Tell the work item it is no longer linked; the outcome, never an exception."""
    integration = svc.store.integrations.get(link.account_id)
    if integration is None or integration.status != "active":
        return {"status": "skipped", "detail": "the integration is not installed"}
    text = (f"<p>This work item is no longer linked to the tracker issue {html.escape(group.title)} "
            f"({html.escape(group.group_id)}).</p>")
    try:
        client = svc.ado(integration)
        answer = add_comment(client, link.project_id or _project_of(client, link.key), link.key, text)
    except BundleError as error:
        log.warning("link.comment_failed", extra={"account_id": link.account_id, "work_item": link.key,
                                                  "error": type(error).__name__})
        return {"status": "failed", "detail": error.message}
    return {"status": "added", "id": answer.get("id")}


def add_comment(client: AdoClient, project: str, work_item_id: str, html_text: str) -> dict[str, Any]:
    """POST a comment (HTML) on a work item; Azure DevOps' answer (with the comment `id`)."""
    url = path(COMMENTS, project=project, id=work_item_id)
    answer = client.request("POST", url, json={"text": html_text}, api_version=COMMENTS_API_VERSION)
    return answer if isinstance(answer, dict) else {}


def _project_of(client: AdoClient, key: str) -> str:
    fields = client.get_work_item(key).get("fields") or {}
    return str(fields.get("System.TeamProject") or "")
