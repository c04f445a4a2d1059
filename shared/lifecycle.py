"""Service-hook health: the six-hourly kickoff and the per-link subscription check.

`kickoff` streams the Integrations table (one page and one integration row in memory) and queues
a `subscription-check` for each active link of an active integration whose hook was never checked
or not in the last six hours, in batches of `{"items": [...]}`. A per-slot progress row (slot = UTC
time floored to six hours) is written after each batch, so a replayed or past-due run in the same
slot continues after the last batch sent and a finished slot queues nothing: each link is queued
at most once per slot, except the last batch of a run that died between sending and recording it,
which is sent again (a duplicate check is harmless). Links that become due later in a slot wait
for the next slot.

`check_subscription` repairs one integration's hook (reference/sentry-vsts.md §7.4, stricter):
a missing, `onProbation`, `disabledBySystem` or `disabledByInactiveIdentity` hook is replaced by a
new one with a new secret (created first, stored under the integration's ETag, then the old one is
deleted); `disabledByUser` is a person's decision and is only recorded. Every check records
`last_checked` and the observed status; a problem is recorded in `problem` and cleared when healthy.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any

from azure.data.tables import TableEntity

from shared import install, storage, store, subscription
from shared.ado_client import AdoClient
from shared.core.errors import AdoError, ConfigError, IdentityInvalid, StorageUnavailable
from shared.keys import check_id
from shared.models import Integration

log = logging.getLogger(__name__)

QUEUE = "subscription-check"
SLOT = 6 * 3600
# Checked at least this long ago counts as due; a little under six hours, so a check that ran a few
# minutes into the previous slot does not make the link skip a whole slot.
DUE_AFTER = SLOT - 600
BATCH_ITEMS = 100
BATCH_BYTES = 45_000  # base64 grows it to ~60 KB, under the 64 KiB queue message limit
USER_DISABLED = ("The service hook was disabled by a user in Azure DevOps; sync from Azure DevOps is "
                 "paused until it is re-enabled there (or the integration is re-installed).")


# --- kickoff -----------------------------------------------------------------------------------


def kickoff(now: float | None = None) -> None:
    """Queue the due subscription checks of the current six-hour slot (timer trigger)."""
    now = time.time() if now is None else now
    slot = int(now // SLOT) * SLOT
    progress = store.get_kickoff_progress(slot)
    if progress is not None and progress.done:
        log.info("kickoff.slot_done", extra={"slot": slot})
        return
    after = (progress.account_id, progress.row_key) if progress else None
    batch = _Batch(slot, after)
    current: TableEntity | None = None
    for entity in store.scan_integrations(after[0] if after else None):
        account_id, row_key = entity["PartitionKey"], entity["RowKey"]
        if row_key == store.RK_INTEGRATION:
            current = entity
        elif (row_key.startswith(store.ORG_PREFIX) and (after is None or (account_id, row_key) > after)
              and _due(current, entity, now)):
            batch.add((account_id, row_key), {"integration_id": account_id,
                                              "organization_id": row_key[len(store.ORG_PREFIX):]})
    batch.finish()
    log.info("kickoff.done", extra={"slot": slot, "queued": batch.queued, "resumed": after is not None})


def _due(integration: TableEntity | None, link: TableEntity, now: float) -> bool:
    if integration is None or integration["PartitionKey"] != link["PartitionKey"]:
        return False
    if integration.get("status", "active") != "active" or link.get("status", "active") != "active":
        return False
    if not integration.get("subscription_id"):
        return False
    checked = integration.get("last_checked")
    return checked is None or float(checked) <= now - DUE_AFTER


class _Batch:
    """Items waiting to be sent as one message; progress is recorded after every send."""

    def __init__(self, slot: int, after: tuple[str, str] | None) -> None:
        self.slot = slot
        self.items: list[dict[str, str]] = []
        self.size = 0
        self.last = after
        self.queued = 0

    def add(self, key: tuple[str, str], item: dict[str, str]) -> None:
        size = len(json.dumps(item, separators=(",", ":"))) + 1
        if self.items and (len(self.items) >= BATCH_ITEMS or self.size + size > BATCH_BYTES):
            self.flush()
        self.items.append(item)
        self.size += size
        self.last = key

    def flush(self, *, done: bool = False) -> None:
        if self.items:
            storage.send(QUEUE, self.items[0] if len(self.items) == 1 else {"items": self.items})
            self.queued += len(self.items)
            self.items, self.size = [], 0
        if self.last is not None or done:
            account_id, row_key = self.last or ("", "")
            store.put_kickoff_progress(self.slot, store.KickoffProgress(account_id, row_key, done))

    def finish(self) -> None:
        self.flush(done=True)


# --- subscription check ------------------------------------------------------------------------


def check_subscription(message: dict[str, Any]) -> None:
    """Check (and repair) the service hook of one `{"integration_id", "organization_id"}` link."""
    account_id = check_id(message.get("integration_id"), "integration_id")
    org_id = check_id(message.get("organization_id"), "organization_id")
    context = {"account_id": account_id, "organization_id": org_id}
    state = store.read_integration(account_id)
    integration = state.integration
    if integration is None or integration.status != "active":
        log.info("subscription_check.integration_unknown", extra=context)
        return
    link = next((item for item in state.links if item.org_id == org_id), None)
    if link is None or link.status != "active":
        log.info("subscription_check.link_inactive", extra=context)
        return
    now = time.time()
    try:
        client = install.client_for(integration)
        observed = subscription.observe(client, integration.subscription_id)
    except IdentityInvalid as error:
        # No usable identity: say so, and leave everything else as it is.
        log.warning("subscription_check.identity_invalid", extra=context)
        _record(account_id, problem=error.message)
        return
    except AdoError as error:
        log.warning("subscription_check.failed_to_get_subscription",
                    extra={**context, "error": type(error).__name__})
        _record(account_id, last_checked=now, problem=f"The service hook could not be read: {error.message}")
        return
    if observed.status == subscription.HEALTHY:
        _record(account_id, subscription_status=observed.status, last_checked=now, problem=None)
    elif observed.status == "disabledByUser":
        log.warning("subscription_check.disabled_by_user", extra=context)
        _record(account_id, subscription_status=observed.status, last_checked=now, problem=USER_DISABLED)
    elif observed.status in subscription.REPLACEABLE or observed.status == subscription.MISSING:
        _replace(integration, client, observed.status, now)
    else:
        log.warning("subscription_check.unknown_status", extra={**context, "status": observed.status})
        _record(account_id, subscription_status=observed.status, last_checked=now,
                problem=f"The service hook has an unknown status {observed.status!r}.")


def _replace(integration: Integration, client: AdoClient, observed: str, now: float) -> None:
    """Create a new hook, store it if nobody replaced the old one meanwhile, then delete the old one."""
    account_id, old_id = integration.account_id, integration.subscription_id
    context = {"account_id": account_id, "status": observed}
    try:
        created = subscription.create(client, subscription.webhook_url())
    except (AdoError, IdentityInvalid, ConfigError) as error:
        log.warning("subscription_check.failed_to_create_subscription",
                    extra={**context, "error": type(error).__name__})
        _record(account_id, subscription_status=observed, last_checked=now,
                problem=f"The service hook is {observed} and could not be recreated: {error.message}")
        return

    def swap(current: Integration) -> Integration | None:
        if current.subscription_id != old_id:
            return None  # a re-install or another check replaced it first
        return replace(current, subscription_id=created.id, secret_hash=created.secret_hash,
                       subscription_status=created.status, last_checked=now, problem=None)

    try:
        saved = store.update_integration(account_id, swap)
    except StorageUnavailable:
        subscription.delete_quietly(client, created.id)
        raise
    if saved is None or saved.subscription_id != created.id:
        log.info("subscription_check.replaced_meanwhile", extra=context)
        subscription.delete_quietly(client, created.id)
        return
    if observed != subscription.MISSING:
        subscription.delete_quietly(client, old_id)
    subscription.remove_strays(client, subscription.webhook_url(), created.id,
                               lambda: (store.get_integration(account_id) or integration).subscription_id)
    log.info("subscription_check.replaced", extra=context)


def _record(account_id: str, **fields: Any) -> None:
    """Update some fields of the integration under its ETag (no write when nothing changes)."""

    def mutate(current: Integration) -> Integration | None:
        if all(getattr(current, name) == value for name, value in fields.items()):
            return None
        return replace(current, **fields)

    store.update_integration(account_id, mutate)

