"""Replacing an integration's service hook without losing a delivery (rotation, re-install, repair).

The order is in `shared.core.overlap`: accept the new secret first (`create` writes it to the
integration as pending), create the hook with it, make it current with `swapped` (the old secret
stays accepted for a while and the old hook is retired, still running), then `schedule_retirement`
queues a subscription check for when the old hook may go, and that check (`retire_due`) deletes it.
While both hooks exist an event arrives twice; the webhook's per-field revision guard applies it once.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from shared.adapters.ado_client import AdoClient
from shared.compose import Services
from shared.core import overlap, secrets
from shared.core.errors import AdoNotFound, BundleError
from shared.core.models import Integration
from shared.flows import hooks as ado_hooks

log = logging.getLogger(__name__)

CHECK_QUEUE = "subscription-check"


def create(svc: Services, client: AdoClient, account_id: str, url: str) -> ado_hooks.Created:
    """A new hook to `url` whose secret the integration's webhook accepts before the hook exists.

    Without a stored integration (a first install) nothing is written first. When the hook cannot be
    created, the pending secret is withdrawn again (best effort; it would expire anyway).
    """
    secret = secrets.new_secret()
    pending = secrets.hash_secret(secret)
    now = svc.clock()

    def accept(current: Integration) -> Integration:
        return replace(current, overlap_secrets=overlap.with_pending(current.overlap_secrets, pending, now))

    svc.store.integrations.update(account_id, accept)
    try:
        return ado_hooks.create(client, url, secret=secret)
    except BaseException:
        withdraw(svc, account_id, pending)
        raise


def swapped(current: Integration, created: ado_hooks.Created, now: float, *, old_delivers: bool) -> Integration:
    """`current` with `created` as its hook; the replaced secret stays accepted, and a replaced hook
    that may still deliver (`old_delivers`) is retired (deleted later by `retire_due`)."""
    return replace(current, subscription_id=created.id, secret_hash=created.secret_hash,
                   subscription_status=created.status,
                   overlap_secrets=overlap.after_swap(current.secret_hash, current.overlap_secrets,
                                                      created.secret_hash, now),
                   retired_hooks=retired_after(current, created.id, now, old_delivers=old_delivers))


def retired_after(current: Integration, new_id: str, now: float, *, old_delivers: bool) -> dict[str, float]:
    """The retired hooks once `new_id` replaces the current hook (unchanged when it is the same, or when
    the replaced one delivers nothing any more and is deleted at once)."""
    if current.subscription_id == new_id or not old_delivers:
        return dict(current.retired_hooks)
    return overlap.retire(current.retired_hooks, current.subscription_id, now)


def retire_or_delete(svc: Services, client: AdoClient, account_id: str, org_id: str | None, old_id: str | None,
                     *, old_delivers: bool) -> None:
    """After a swap: a replaced hook that may still deliver drains and is deleted by a check queued for
    later (`schedule_retirement`); one that delivers nothing is deleted now (best effort)."""
    if not old_id:
        return
    if old_delivers:
        schedule_retirement(svc, account_id, org_id)
    else:
        ado_hooks.delete_quietly(client, old_id)


def withdraw(svc: Services, account_id: str, secret_hash: str) -> None:
    """Stop accepting the secret of a hook that was not (or no longer is) the integration's (best effort)."""
    now = svc.clock()

    def drop(current: Integration) -> Integration | None:
        if secret_hash == current.secret_hash or secret_hash not in current.overlap_secrets:
            return None
        return replace(current, overlap_secrets=overlap.without(current.overlap_secrets, secret_hash, now))

    try:
        svc.store.integrations.update(account_id, drop)
    except BundleError as error:
        log.warning("subscription.pending_secret_not_withdrawn",
                    extra={"account_id": account_id, "error": type(error).__name__})


def schedule_retirement(svc: Services, account_id: str, org_id: str | None) -> None:
    """Queue the subscription check of link (`account_id`, `org_id`) for when a retired hook may go.

    Best effort: without it the next regular check of any of the integration's links deletes it.
    """
    if org_id is None:
        return
    try:
        svc.send(CHECK_QUEUE, {"integration_id": account_id, "organization_id": org_id},
                 delay=overlap.DRAIN_SECONDS + 1)
    except BundleError as error:
        log.warning("subscription.retirement_not_scheduled",
                    extra={"account_id": account_id, "error": type(error).__name__})


def retire_due(svc: Services, client: AdoClient, integration: Integration) -> int:
    """Delete the integration's retired hooks that are due; how many are gone. Best effort: a hook that
    could not be deleted stays listed for the next check."""
    now = svc.clock()
    doomed = overlap.due(integration.retired_hooks, now)
    if not doomed:
        return 0
    gone = []
    for sub_id in doomed:
        try:
            client.delete_subscription(sub_id)
        except AdoNotFound:
            pass
        except BundleError as error:
            log.warning("subscription.retired_not_deleted", extra={"subscription_id": sub_id,
                                                                   "error": type(error).__name__})
            continue
        gone.append(sub_id)
        log.info("subscription.retired_deleted", extra={"subscription_id": sub_id})

    def forget(current: Integration) -> Integration | None:
        kept = {s: after for s, after in current.retired_hooks.items() if s not in gone}
        return None if kept == current.retired_hooks else replace(current, retired_hooks=kept)

    try:
        svc.store.integrations.update(integration.account_id, forget)
    except BundleError as error:
        log.warning("subscription.retired_not_forgotten", extra={"account_id": integration.account_id,
                                                                 "error": type(error).__name__})
    return len(gone)


def spared(svc: Services, account_id: str) -> set[str]:
    """Hooks stray removal must leave alone: the integration's current and retired hooks."""
    current = svc.store.integrations.get(account_id)
    if current is None:
        return set()
    return {s for s in (current.subscription_id, *current.retired_hooks) if s}
