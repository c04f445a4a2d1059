"""The service-hook receiver: authenticate a delivery and apply it, exactly once, to linked groups.

Order (reference sentry-vsts.md §4.1, tightened): validate the envelope (400/413) before any
storage read; ignore other event types (200); find the integration by collection id (400);
check the shared secret in constant time, failing closed (401); apply assignee and status changes
(200). Deduplication needs no table of its own: each group link keeps, per synced field, the
newest revision and a mark of the change applied at it, written in the same transaction as the
change, so a redelivered or older delivery changes nothing and concurrent copies serialise on the
group's ETag. Revisions the bundle wrote itself (outbound sync) are marked too, so their events
never echo back. A transient failure answers 503 with nothing half-applied, so Azure DevOps delivers again.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Mapping
from typing import Literal

from shared import deps, states, store, sync, webhook
from shared.core.errors import AdoError, IdentityInvalid, InvalidInput, TransientError, Unauthorized
from shared.http import Reply
from shared.keys import check_id
from shared.models import GroupChange, GroupState, Integration, OrgLink
from shared.secrets import matches

log = logging.getLogger(__name__)

LAST_DELIVERY_RESOLUTION = 60.0
NO_INTEGRATION = "Integration does not exist."


def handle(body: bytes, headers: Mapping[str, str]) -> Reply:
    delivery = webhook.parse(body)
    context = {"account_id": delivery.collection_id, "work_item": delivery.work_item_id}
    if delivery.event_type != webhook.WORKITEM_UPDATED:
        log.info("webhook.ignored.event_type", extra={**context, "event_type": delivery.event_type[:64]})
        return Reply()
    try:
        check_id(delivery.collection_id, "collection_id")
    except InvalidInput:
        return Reply(status=400, body={"detail": NO_INTEGRATION})
    found = store.read_integration(delivery.collection_id)
    integration = found.integration
    if integration is None or integration.status != "active":
        log.info("webhook.rejected.unknown_integration", extra=context)
        return Reply(status=400, body={"detail": NO_INTEGRATION})
    supplied = webhook.credentials(headers)
    # Check every credential (no short circuit), so timing does not tell which one was wrong.
    candidates: list[str | None] = [*supplied] or [None]
    results = [matches(secret, integration.secret_hash) for secret in candidates]
    if not any(results):
        event = "webhook.rejected.no_secret" if not integration.secret_hash else "webhook.rejected.bad_secret"
        log.warning(event, extra=context)
        raise Unauthorized("Missing or invalid shared secret")
    apply(delivery, integration, found.links)
    _note_delivery(integration)
    return Reply()


def apply(delivery: webhook.Delivery, integration: Integration, org_links: list[OrgLink]) -> None:
    """Apply one delivery to every linked group of organizations that sync inbound."""
    key = delivery.work_item_id
    context = {"account_id": integration.account_id, "work_item": key}
    if key is None:
        log.info("webhook.ignored.no_work_item", extra=context)
        return
    if delivery.state is None and delivery.assigned_to is None:
        return
    links_by_org = {link.org_id: link for link in org_links if link.status == "active"}
    targets = [(org, group) for org, group in store.groups_linked_to(integration.account_id, key)
               if org in links_by_org]
    if not targets:
        log.info("webhook.ignored.no_linked_groups", extra=context)
        return
    email = _assignee_email(delivery)
    done: list[str] | None = None
    for org_id, group_id in targets:
        org_link = links_by_org[org_id]
        state = store.read_group(org_id, group_id)
        if state is None or (integration.account_id, key) not in state.links:
            continue
        action: sync.Action | None = None
        if delivery.state is not None and org_link.flag("sync_status_reverse"):
            override = _override(org_link, state, delivery)
            if override is None and done is None:
                done = _done_states(integration, delivery, state)
            action = _status_action(delivery, done or [], override)
        assignee, note = _assignee_for(org_link, state, email, delivery)
        decide = functools.partial(_decide, integration.account_id, key, delivery.rev, _marks(delivery),
                                   action, assignee, note)
        store.change_group(org_id, group_id, decide, known=state)
    log.info("webhook.applied", extra={**context, "groups": len(targets)})


def _decide(
    account_id: str,
    key: str,
    rev: int,
    marks: tuple[str, str],
    action: sync.Action | None,
    assignee: str | Literal[False] | None,
    note: str | None,
    current: GroupState | None,
) -> GroupChange:
    link = current.links.get((account_id, key)) if current else None
    if current is None or link is None:
        return GroupChange()
    return sync.inbound_change(current, link, rev=rev, state_mark=marks[0], assignee_mark=marks[1],
                               integration_id=account_id,
                               action=action,
                               assignee=assignee, assignee_note=note)


def _marks(delivery: webhook.Delivery) -> tuple[str, str]:
    """Per-field marks of what this delivery changes (state, assignee)."""
    state, assigned = delivery.state, delivery.assigned_to
    return (sync.change_mark(state.old, state.new) if state else "",
            sync.change_mark(assigned.old, assigned.new) if assigned else "")


def _assignee_email(delivery: webhook.Delivery) -> str | Literal[False] | None:
    """The e-mail to assign, None to deassign, False when there is no (usable) assignee change."""
    change = delivery.assigned_to
    if change is None:
        return False
    if change.new is None or change.new == "":
        return None
    email = webhook.email_of(change.new)
    if email is None:
        log.warning("webhook.assignee.unparseable", extra={"work_item": delivery.work_item_id})
        return False
    return email


def _assignee_for(
    org_link: OrgLink, state: GroupState, email: str | Literal[False] | None, delivery: webhook.Delivery
) -> tuple[str | Literal[False] | None, str | None]:
    if email is False or not org_link.flag("sync_reverse_assignment"):
        return False, None
    if email is None:
        return None, None
    group = state.group
    for user_id, projects in store.members_with_email(group.org_id, email):
        if group.project_id in projects:
            return user_id, None
    log.info("webhook.assignee.not_found", extra={"work_item": delivery.work_item_id, "group": group.group_id})
    return False, "No user with this verified e-mail is a member of the group's project."


def _override(org_link: OrgLink, state: GroupState, delivery: webhook.Delivery) -> dict[str, list[str]] | None:
    overrides = org_link.config.get("inbound_status")
    if not isinstance(overrides, dict):
        return None
    link = state.links.get((org_link.account_id, delivery.work_item_id or ""))
    project = delivery.project_id or (link.project_id if link else None)
    chosen = overrides.get(project or "")
    return chosen if isinstance(chosen, dict) else None


def _done_states(integration: Integration, delivery: webhook.Delivery, state: GroupState) -> list[str]:
    link = state.links.get((integration.account_id, delivery.work_item_id or ""))
    project = delivery.project_id or (link.project_id if link else None)
    if not project:
        return []
    wit = delivery.work_item_type or (link.work_item_type if link else None)
    try:
        return states.done_states(integration.account_id, project, wit, lambda: deps.ado_client(integration))
    except (AdoError, IdentityInvalid) as error:
        # Never guess: an unreadable state list changes nothing and the delivery is retried later.
        log.warning("webhook.states.unavailable",
                    extra={"account_id": integration.account_id, "error": type(error).__name__})
        retry_after = getattr(error, "retry_after", None)
        raise TransientError("Work item states are unavailable; retry later", retry_after=retry_after) from error


def _status_action(delivery: webhook.Delivery, done: list[str], override: dict[str, list[str]] | None
                   ) -> sync.Action:
    assert delivery.state is not None
    if override is None and not done:
        return "noop"
    old = delivery.state.old if isinstance(delivery.state.old, str) else None
    new = delivery.state.new if isinstance(delivery.state.new, str) else None
    return sync.status_action(old, new, done, override)


def _note_delivery(integration: Integration) -> None:
    """Record the last delivery time, at most once a minute (it is shown, not used for decisions)."""
    now = time.time()
    if integration.last_delivery and now - integration.last_delivery < LAST_DELIVERY_RESOLUTION:
        return

    def stamp(current: Integration) -> Integration | None:
        if current.last_delivery and now - current.last_delivery < LAST_DELIVERY_RESOLUTION:
            return None
        current.last_delivery = now
        return current

    try:
        store.update_integration(integration.account_id, stamp)
    except TransientError:
        log.warning("webhook.last_delivery.not_recorded", extra={"account_id": integration.account_id})
