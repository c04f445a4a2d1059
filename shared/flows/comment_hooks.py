"""The second service hook, `workitem.commented`, kept while some organization syncs comments.

A subscription has exactly one event type
(https://learn.microsoft.com/rest/api/azure/devops/hooks/subscriptions/create), so comments need a
hook of their own next to the `workitem.updated` one. It delivers to the same `WEBHOOK_URL` (the
receiver dispatches on `eventType`) with its own secret, stored as a hash on the integration, so
either hook can be replaced (or its secret changed) without touching the other.

It exists only while at least one active organization link of the integration has `sync_comments`
on: Azure DevOps then sends no comment text anywhere nobody asked for, and an integration without
comment sync keeps exactly the hooks it had. `ensure` runs at install, in every subscription check,
and in the check `PUT .../config` queues when the config no longer matches whether the hook exists.
It creates a missing hook, replaces a missing, on-probation, system-disabled or re-pointed one
(created first, stored under the integration's ETag, then the old one deleted, then strays removed),
leaves `disabledByUser` alone, and deletes the hook once no organization wants comments.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from shared.adapters.ado_client import AdoClient
from shared.compose import Services
from shared.core import hooks
from shared.core.errors import AdoError, ConfigError, IdentityInvalid, StorageUnavailable
from shared.core.models import Integration, OrgLink
from shared.flows import hooks as ado_hooks

log = logging.getLogger(__name__)

EVENT = "workitem.commented"
FLAG = "sync_comments"


def wanted(links: list[OrgLink]) -> bool:
    """Whether any active organization link syncs comments."""
    return any(link.status == "active" and link.flag(FLAG) for link in links)


def ensure(svc: Services, account_id: str, client: AdoClient) -> str | None:
    """Bring the comment hook in line with the organizations' config; its status afterwards (None: no
    hook wanted). Azure DevOps and configuration failures are logged and recorded as the status; a
    later subscription check tries again."""
    state = svc.store.integrations.read(account_id)
    integration = state.integration
    if integration is None or integration.status != "active":
        return None
    context = {"account_id": account_id}
    try:
        if not wanted(state.links):
            _remove(svc, client, integration)
            return None
        url = ado_hooks.webhook_url()
        observed = ado_hooks.observe(client, integration.comment_subscription_id)
        healthy = observed.status == hooks.HEALTHY and observed.url == url and integration.comment_secret_hash
        if healthy or observed.status == "disabledByUser":
            _record(svc, account_id, integration.comment_subscription_id, observed.status)
            return observed.status
        if observed.status not in hooks.REPLACEABLE and observed.status not in (hooks.MISSING, hooks.HEALTHY):
            log.warning("comment_hook.unknown_status", extra={**context, "status": observed.status})
            _record(svc, account_id, integration.comment_subscription_id, observed.status)
            return observed.status
        return _replace(svc, client, integration, url, observed.status)
    except (AdoError, IdentityInvalid, ConfigError) as error:
        log.warning("comment_hook.failed", extra={**context, "error": type(error).__name__})
        return None


def _replace(svc: Services, client: AdoClient, integration: Integration, url: str, observed: str) -> str | None:
    """Create a new hook, store it if nobody replaced the old one meanwhile, then delete the old one."""
    account_id, old_id = integration.account_id, integration.comment_subscription_id
    created = ado_hooks.create(client, url, EVENT)

    def swap(current: Integration) -> Integration | None:
        if current.comment_subscription_id != old_id:
            return None  # a re-install or another check replaced it first
        return replace(current, comment_subscription_id=created.id, comment_secret_hash=created.secret_hash,
                       comment_subscription_status=created.status)

    try:
        saved = svc.store.integrations.update(account_id, swap)
    except StorageUnavailable:
        ado_hooks.delete_quietly(client, created.id)
        raise
    if saved is None or saved.comment_subscription_id != created.id:
        ado_hooks.delete_quietly(client, created.id)
        return saved.comment_subscription_status if saved else None
    if old_id and observed != hooks.MISSING:
        ado_hooks.delete_quietly(client, old_id)

    def stored() -> str | None:
        current = svc.store.integrations.get(account_id)
        return current.comment_subscription_id if current else None

    ado_hooks.remove_strays(client, url, created.id, stored, svc.clock(), EVENT)
    log.info("comment_hook.created", extra={"account_id": account_id, "replaced": observed})
    return created.status


def _remove(svc: Services, client: AdoClient, integration: Integration) -> None:
    """No organization syncs comments: forget the hook, then delete it in Azure DevOps."""
    old_id = integration.comment_subscription_id
    if not old_id:
        return

    def clear(current: Integration) -> Integration | None:
        if current.comment_subscription_id != old_id:
            return None
        return replace(current, comment_subscription_id=None, comment_secret_hash=None,
                       comment_subscription_status=None)

    saved = svc.store.integrations.update(integration.account_id, clear)
    if saved is not None and saved.comment_subscription_id is None:
        ado_hooks.delete_quietly(client, old_id)
        log.info("comment_hook.deleted", extra={"account_id": integration.account_id})


def _record(svc: Services, account_id: str, subscription_id: str | None, status: str) -> None:
    def mutate(current: Integration) -> Integration | None:
        if current.comment_subscription_id != subscription_id or current.comment_subscription_status == status:
            return None
        return replace(current, comment_subscription_status=status)

    svc.store.integrations.update(account_id, mutate)
