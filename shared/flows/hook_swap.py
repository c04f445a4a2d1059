"""Replacing an integration's service hook without losing a delivery (rotation, re-install, repair).

The order is in `shared.core.overlap`: accept the new secret first (`create` writes it to the
integration as pending), create the hook with it, make it current with `swapped` (the old secret
stays accepted for `overlap.OVERLAP_SECONDS`), then delete the old hook. While both hooks exist an
event may arrive twice; the per-field revision guard of the webhook applies it once.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from shared.adapters.ado_client import AdoClient
from shared.compose import Services
from shared.core import overlap, secrets
from shared.core.errors import BundleError
from shared.core.models import Integration
from shared.flows import hooks as ado_hooks

log = logging.getLogger(__name__)


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


def swapped(current: Integration, created: ado_hooks.Created, now: float) -> Integration:
    """`current` with `created` as its hook; the replaced secret stays accepted for the overlap."""
    return replace(current, subscription_id=created.id, secret_hash=created.secret_hash,
                   subscription_status=created.status,
                   overlap_secrets=overlap.after_swap(current.secret_hash, current.overlap_secrets,
                                                      created.secret_hash, now))


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
