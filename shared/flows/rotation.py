"""Rotations: a new service-hook secret for one integration, and re-sealing stored credentials.

`rotate_secret` is `POST /api/manage/integrations/{account_id}/rotate-secret`: a new hook with a
new secret replaces the integration's hook; the old hook drains for a few minutes and its secret
stays accepted a little longer (`shared.core.overlap`), so no delivery is lost. `reseal` re-seals
every stored identity under the first key of `TOKEN_ENCRYPTION_KEY`, the middle step of a key
rotation (docs/security.md §4).

Both run from the command line too, with the app's settings in the environment:

    python -m shared.flows.rotation reseal
    python -m shared.flows.rotation rotate-secret <account_id>
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from shared.adapters.integrations import Resealed
from shared.compose import Services, services
from shared.core.errors import (
    AdoAuthError,
    AdoBadRequest,
    BundleError,
    Conflict,
    NotFound,
    StorageUnavailable,
    Unprocessable,
)
from shared.core.keys import check_id
from shared.core.models import Integration
from shared.core.reply import Reply
from shared.flows import hook_swap
from shared.flows import hooks as ado_hooks
from shared.flows.install import ACCESS_HELP, integration_view

log = logging.getLogger(__name__)


def rotate_secret(svc: Services, account_id: str) -> Reply:
    """Replace the integration's service hook by one with a new secret → the integration view.

    Raises:
        NotFound: no such integration. Conflict: it is not active, or its hook was replaced meanwhile
        (retry). Unprocessable: Azure DevOps refused to create the hook.
    """
    account_id = check_id(account_id, "account_id")
    state = svc.store.integrations.read(account_id)
    integration = state.integration
    if integration is None:
        raise NotFound(f"Integration {account_id} is not installed")
    if integration.status != "active":
        raise Conflict(f"Integration {account_id} is {integration.status}; only an active one has a hook to rotate")
    url = ado_hooks.webhook_url()
    client = svc.ado(integration)
    old_id = integration.subscription_id
    try:
        created = hook_swap.create(svc, client, account_id, url)
    except (AdoAuthError, AdoBadRequest) as error:
        raise Unprocessable(f"{ACCESS_HELP} (Azure DevOps said: {error.message})", field="identity") from None
    now = svc.clock()

    def swap(current: Integration) -> Integration | None:
        if current.subscription_id != old_id:
            return None  # a re-install, a repair or another rotation replaced it first
        return hook_swap.swapped(current, created, now, old_delivers=True)

    try:
        saved = svc.store.integrations.update(account_id, swap)
    except StorageUnavailable:
        ado_hooks.delete_quietly(client, created.id)
        raise
    if saved is None or saved.subscription_id != created.id:
        ado_hooks.delete_quietly(client, created.id)
        hook_swap.withdraw(svc, account_id, created.secret_hash)
        raise Conflict("The service hook was replaced while rotating its secret; retry")
    # The old hook is assumed to deliver: it drains, and a check queued for later deletes it.
    active = [link.org_id for link in state.links if link.status == "active"]
    hook_swap.retire_or_delete(svc, client, account_id, active[0] if active else None, old_id, old_delivers=True)
    ado_hooks.remove_strays(client, url, created.id, lambda: hook_swap.spared(svc, account_id), now)
    log.info("rotation.secret_rotated", extra={"account_id": account_id, "subscription_id": created.id})
    return integration_view(svc, account_id)


def reseal(svc: Services) -> Resealed:
    """Re-seal every stored identity under the current key; what was done (see `Resealed`)."""
    report = svc.store.integrations.rewrap_identities()
    log.info("rotation.resealed", extra={"resealed": report.resealed, "current": report.current,
                                         "unreadable": len(report.unreadable)})
    return report


def main(argv: Sequence[str] | None = None, svc: Services | None = None) -> int:
    """The command line: prints one JSON object; exit status 0, 1 (unreadable rows) or 2 (failed)."""
    parser = argparse.ArgumentParser(prog="python -m shared.flows.rotation", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("reseal", help="re-seal every stored credential under the first TOKEN_ENCRYPTION_KEY key")
    rotate = commands.add_parser("rotate-secret", help="give one integration's service hook a new secret")
    rotate.add_argument("account_id")
    args = parser.parse_args(argv)
    try:
        svc = svc or services()
        if args.command == "reseal":
            report = reseal(svc)
            print(json.dumps({"resealed": report.resealed, "current": report.current,
                              "unreadable": report.unreadable}))
            return 1 if report.unreadable else 0
        print(json.dumps(rotate_secret(svc, args.account_id).body))
        return 0
    except BundleError as error:
        print(json.dumps({"detail": error.message}), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
