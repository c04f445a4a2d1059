"""The service-hook receiver: authenticate a delivery and apply it, exactly once, to linked groups.

Order (Sentry's, tightened: https://docs.sentry.io/organization/integrations/source-code-mgmt/azure-devops/):
validate the envelope (400/413) before any storage read; ignore event types other than
`workitem.updated` and `workitem.commented` (200); find the integration by collection id (400);
check the shared secret of that event's hook in constant time, failing closed (401; during a hook
replacement the old and the new secret are both accepted for a short overlap, `shared.core.overlap`);
apply assignee and status changes, or the comment (`shared.flows.comments_inbound`) (200). A comment
also fires `workitem.updated` with only `System.History` changed: that delivery changes nothing.

Storage round trips per delivery: one query reads the integration, its organization links and the
groups linked to the work item; then per linked group one read and one transaction. Deduplication
needs no table of its own: each link keeps, per synced field, the newest revision and a mark of
the change applied at it, written with the change, so a redelivered or older delivery changes
nothing and concurrent copies serialise on the group's ETag. The bundle's own writes (outbound
sync) are recognised by the push that made them, so their events never echo back. A transient
failure answers 503 with nothing half-applied, so Azure DevOps delivers again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Literal

from shared.compose import Services
from shared.core import overlap, sync, validate, webhook
from shared.core.comments import WORKITEM_COMMENTED, parse_commented
from shared.core.errors import AdoError, AdoUnavailable, IdentityInvalid, InvalidInput, TransientError, Unauthorized
from shared.core.keys import check_id
from shared.core.models import GroupChange, GroupState, Integration, Link, OrgLink
from shared.core.reply import Reply
from shared.core.secrets import matches
from shared.flows import comments_inbound, events, server_users, states

log = logging.getLogger(__name__)

LAST_DELIVERY_RESOLUTION = 60.0
NO_INTEGRATION = "Integration does not exist."


def handle(svc: Services, body: bytes, headers: Mapping[str, str]) -> Reply:
    content_type = headers.get("content-type")
    if content_type and not validate.is_json_type(content_type):
        raise InvalidInput("Content-Type must be application/json", status=415)
    delivery = webhook.parse(body)
    context = {"account_id": delivery.collection_id, "work_item": delivery.work_item_id}
    commented = delivery.event_type == WORKITEM_COMMENTED
    if delivery.event_type != webhook.WORKITEM_UPDATED and not commented:
        log.info("webhook.ignored.event_type", extra={**context, "event_type": delivery.event_type[:64]})
        return Reply()
    try:
        check_id(delivery.collection_id, "collection_id")
    except InvalidInput:
        return Reply(status=400, body={"detail": NO_INTEGRATION})
    # A comment's payload has its own shape (the work item id is `resource.id`): parse it all now.
    comment = parse_commented(json.loads(body)) if commented else None
    key = str(comment.work_item_id) if comment else delivery.work_item_id
    found, targets = svc.store.integrations.read_for_work_item(delivery.collection_id, key or "0")
    integration = found.integration
    if integration is None or integration.status != "active":
        log.info("webhook.rejected.unknown_integration", extra=context)
        return Reply(status=400, body={"detail": NO_INTEGRATION})
    supplied = webhook.credentials(headers)
    # Each hook has its own secret; the updates hook's previous one stays accepted for a short overlap
    # while it is replaced (`shared.core.overlap`). Check every credential against every accepted hash
    # (no short circuit), so timing does not tell which one was wrong.
    hashes: list[str | None] = (
        [integration.comment_secret_hash] if commented
        else overlap.accepted(integration.secret_hash, integration.overlap_secrets, svc.clock()))
    candidates: list[str | None] = [*supplied] or [None]
    results = [matches(secret, stored) for secret in candidates for stored in hashes]
    if not any(results):
        event = "webhook.rejected.no_secret" if not any(hashes) else "webhook.rejected.bad_secret"
        log.warning(event, extra=context)
        raise Unauthorized("Missing or invalid shared secret")
    if comment is not None:
        comments_inbound.receive(svc, comment, integration, found.links, targets)
    else:
        apply(svc, delivery, integration, found.links, targets)
    _note_delivery(svc, integration)
    return Reply()


def apply(svc: Services, delivery: webhook.Delivery, integration: Integration, org_links: list[OrgLink],
          linked: list[tuple[str, str]]) -> int:
    """Apply one delivery to every linked group of organizations that sync inbound; the groups changed."""
    key = delivery.work_item_id
    context = {"account_id": integration.account_id, "work_item": key}
    if key is None:
        log.info("webhook.ignored.no_work_item", extra=context)
        return 0
    if delivery.state is None and delivery.assigned_to is None:
        return 0
    links_by_org = {link.org_id: link for link in org_links if link.status == "active"}
    targets = [(org, group) for org, group in linked if org in links_by_org]
    if not targets:
        log.info("webhook.ignored.no_linked_groups", extra=context)
        return 0
    email = _assignee_email(delivery)
    observed = sync.Observed(
        rev=delivery.rev,
        state=_text(delivery.state.new) if delivery.state else None,
        state_old=_text(delivery.state.old) if delivery.state else None,
        state_mark=sync.change_mark(delivery.state.old, delivery.state.new) if delivery.state else "",
        assignee=None if email is False else (email or ""),
        assignee_mark=(sync.change_mark(delivery.assigned_to.old, delivery.assigned_to.new)
                       if delivery.assigned_to else ""),
    )
    changed = 0
    for org_id, group_id in targets:
        state = svc.store.groups.read(org_id, group_id)
        if state is not None and apply_observation(svc, integration, links_by_org[org_id], state, key, observed,
                                                   project=delivery.project_id, wit=delivery.work_item_type):
            changed += 1
    log.info("webhook.applied", extra={**context, "groups": len(targets), "changed": changed})
    return changed


def apply_observation(svc: Services, integration: Integration, org_link: OrgLink, state: GroupState, key: str,
                      observed: sync.Observed, *, project: str | None = None, wit: str | None = None) -> bool:
    """Apply what Azure DevOps reported about work item `key` to one linked group, through the per-field
    revision guard (webhook deliveries, reconciliation and outbound conflicts all come through here).
    True when the group or its link changed."""
    link = state.links.get((integration.account_id, key))
    if link is None:
        return False
    synced = observed.state is not None and org_link.flag("sync_status_reverse")
    override = _override(org_link, project or link.project_id) if synced else None
    done = [] if not synced or override is not None else _done_states(
        svc, integration, project or link.project_id, wit or link.work_item_type)
    email: str | Literal[False] | None = False if observed.assignee is None else (observed.assignee or None)
    assignee, note = _assignee_for(svc, integration, org_link, state.group.project_id, state.group.org_id, email)
    changed: list[bool] = []

    def decide(current: GroupState | None) -> GroupChange:
        known = current.links.get((integration.account_id, key)) if current else None
        action = _action(observed, known, done, override) if synced else None
        change = sync.decide_inbound(integration.account_id, key, observed, action, assignee, note, svc.clock(),
                                     current, strategy=org_link.config.get("resolution_strategy"))
        changed[:] = [bool(change)]
        return change

    events.change_group(svc, state.group.org_id, state.group.group_id, decide, known=state)
    return bool(changed and changed[0])


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _assignee_email(delivery: webhook.Delivery) -> str | Literal[False] | None:
    """The e-mail (Server: domain account) to assign, None to deassign, False when there is no usable change."""
    change = delivery.assigned_to
    if change is None:
        return False
    if change.new is None or change.new == "":
        return None
    assignee = webhook.assignee_of(change.new)
    if assignee is None:
        log.warning("webhook.assignee.unparseable", extra={"work_item": delivery.work_item_id})
        return False
    return assignee


def _assignee_for(svc: Services, integration: Integration, org_link: OrgLink, project_id: str, org_id: str,
                  email: str | Literal[False] | None) -> tuple[str | Literal[False] | None, str | None]:
    if email is False or not org_link.flag("sync_reverse_assignment"):
        return False, None
    if email is None:
        return None, None
    if webhook.is_account(email):
        found, why = _account_email(svc, integration, email)
        if found is None:
            return False, why
        email = found
    for user_id, projects in svc.store.users.members_with_email(org_id, email):
        if project_id in projects:
            return user_id, None
    log.info("webhook.assignee.not_found", extra={"organization_id": org_id})
    return False, "No user with this verified e-mail is a member of the group's project."


def _account_email(svc: Services, integration: Integration, account: str) -> tuple[str | None, str | None]:
    """The e-mail of an Azure DevOps Server domain account, or (None, why the assignee is not synced)."""
    try:
        email = server_users.email_of_account(lambda: svc.ado(integration), svc.store.cache,
                                              integration.account_id, account)
    except AdoUnavailable as error:
        raise TransientError("Azure DevOps identities are unavailable; retry later") from error
    except (AdoError, IdentityInvalid) as error:
        log.warning("webhook.assignee.lookup_failed",
                    extra={"account_id": integration.account_id, "error": type(error).__name__})
        return None, f"The Azure DevOps Server account {account} could not be looked up ({error.message})."
    if email is None:
        return None, f"The Azure DevOps Server account {account} has no e-mail address to match a user by."
    return email, None


def _override(org_link: OrgLink, project: str | None) -> dict[str, list[str]] | None:
    overrides = org_link.config.get("inbound_status")
    if not isinstance(overrides, dict):
        return None
    chosen = overrides.get(project or "")
    return chosen if isinstance(chosen, dict) else None


def _done_states(svc: Services, integration: Integration, project: str | None, wit: str | None) -> list[str]:
    if not project:
        return []
    try:
        return states.done_states(svc.store.cache, integration.account_id, project, wit,
                                  lambda: svc.ado(integration))
    except (AdoError, IdentityInvalid) as error:
        # Never guess: an unreadable state list changes nothing and the delivery is retried later.
        log.warning("webhook.states.unavailable",
                    extra={"account_id": integration.account_id, "error": type(error).__name__})
        raise TransientError("Work item states are unavailable; retry later") from error


def _action(observed: sync.Observed, link: Link | None, done: list[str], override: dict[str, list[str]] | None
            ) -> sync.Action:
    """The status action of a State change: the delivery's own `old → new`, else the change since the
    State the bundle last knew (a delivery in between may have been lost: Active → [Resolved, lost] →
    Closed must still resolve, or the group would never follow)."""
    action = _status_action(observed, done, override)
    if action != "noop" or link is None or link.state_value is None or observed.rev <= link.state_rev:
        return action
    return _status_action(replace(observed, state_old=link.state_value), done, override)


def _status_action(observed: sync.Observed, done: list[str], override: dict[str, list[str]] | None
                   ) -> sync.Action:
    if override is None and not done:
        return "noop"
    return sync.status_action(observed.state_old, observed.state, done, override)


def _note_delivery(svc: Services, integration: Integration) -> None:
    """Record the last delivery time, at most once a minute (it is shown, not used for decisions)."""
    now = svc.clock()
    if integration.last_delivery and now - integration.last_delivery < LAST_DELIVERY_RESOLUTION:
        return

    def stamp(current: Integration) -> Integration | None:
        if current.last_delivery and now - current.last_delivery < LAST_DELIVERY_RESOLUTION:
            return None
        current.last_delivery = now
        return current

    try:
        svc.store.integrations.update(integration.account_id, stamp)
    except TransientError:
        log.warning("webhook.last_delivery.not_recorded", extra={"account_id": integration.account_id})
