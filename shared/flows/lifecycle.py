"""Service-hook health: the six-hourly kickoff and the per-link subscription check.

`kickoff` streams the integrations (one page and one integration in memory) and queues a
`subscription-check` for each due link (`shared.core.kickoff`), in batches. A per-slot progress row
is written after each batch, so a replayed or past-due run in the same slot continues after the
last batch sent and a finished slot queues nothing: each link is queued at most once per slot,
except the last batch of a run that died between sending and recording it (a duplicate check is
harmless). Links that become due later in a slot wait for the next slot.

`check_subscription` repairs one integration's hook, stricter than Sentry's
(https://docs.sentry.io/organization/integrations/source-code-mgmt/azure-devops/): a missing,
`onProbation`, `disabledBySystem` or `disabledByInactiveIdentity` hook is replaced by a new one with
a new secret (its secret accepted first, the hook created, stored under the integration's ETag; the
old hook is retired and deleted by a check queued for a few minutes later: `shared.core.overlap`);
`disabledByUser` is a person's decision and is only recorded. Every check records `last_checked`
and the observed status; a problem is recorded in `problem` and cleared when healthy. A change of
the recorded status is told to every active tracker organization of the integration as an
`integration.subscription_changed` event, written in the integration's outbox with the change. The
check then does the same for the `workitem.commented` hook (`shared.flows.comment_hooks`).
Then, unless a person disabled the hook, the check reconciles the integration
(`shared.flows.reconcile`): what the hook never delivered is applied, and what never reached Azure
DevOps is queued again.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from shared.adapters.ado_client import AdoClient
from shared.adapters.cache import KickoffProgress
from shared.compose import Services
from shared.core import events, hooks, overlap
from shared.core import kickoff as plan
from shared.core.errors import AdoError, ConfigError, Conflict, IdentityInvalid, NotFound, StorageUnavailable
from shared.core.events import Event
from shared.core.keys import check_id
from shared.core.models import Integration
from shared.core.reply import Reply
from shared.flows import comment_hooks, hook_swap
from shared.flows import events as flow_events
from shared.flows import hooks as ado_hooks
from shared.flows import reconcile as reconciliation

log = logging.getLogger(__name__)

QUEUE = hook_swap.CHECK_QUEUE  # "subscription-check"
Step = tuple[str | None, str | None, str | None]  # a subscription status change: old, new, problem
USER_DISABLED = ("The service hook was disabled by a user in Azure DevOps; sync from Azure DevOps is "
                 "paused until it is re-enabled there (or the integration is re-installed).")


# --- kickoff -----------------------------------------------------------------------------------


def kickoff(svc: Services, *, batch_items: int = plan.BATCH_ITEMS) -> None:
    """Queue the due subscription checks of the current six-hour slot (timer trigger)."""
    now = svc.clock()
    slot = plan.slot_of(now)
    progress = svc.store.cache.kickoff_progress(slot)
    if progress is not None and progress.done:
        log.info("kickoff.slot_done", extra={"slot": slot})
        return
    after = (progress.account_id, progress.org_id) if progress else None
    batch, last, queued = plan.Batch(), after, 0

    def flush(done: bool = False) -> None:
        nonlocal batch, queued
        if batch.items:
            svc.send(QUEUE, batch.message())
            queued += len(batch.items)
            batch = plan.Batch()
        if last is not None or done:
            account_id, org_id = last or ("", "")
            svc.store.cache.put_kickoff_progress(slot, KickoffProgress(account_id, org_id, done))

    for integration, link in svc.store.integrations.iter_org_links(after):
        if not plan.due(integration, link, now):
            continue
        item = plan.check_message(link)
        if not batch.fits(item, max_items=batch_items):
            flush()
        batch.add(item)
        last = (link.account_id, link.org_id)
    flush(done=True)
    log.info("kickoff.done", extra={"slot": slot, "queued": queued, "resumed": after is not None})


# --- subscription check ------------------------------------------------------------------------


def check_subscription(svc: Services, message: dict[str, Any]) -> None:
    """Check (and repair) the service hook of one `{"integration_id", "organization_id"}` link."""
    account_id = check_id(message.get("integration_id"), "integration_id")
    org_id = check_id(message.get("organization_id"), "organization_id")
    context = {"account_id": account_id, "organization_id": org_id}
    state = svc.store.integrations.read(account_id)
    integration = state.integration
    if integration is None or integration.status != "active":
        log.info("subscription_check.integration_unknown", extra=context)
        return
    link = state.org_link(org_id)
    if link is None or link.status != "active":
        log.info("subscription_check.link_inactive", extra=context)
        return
    now = svc.clock()
    orgs = [each.org_id for each in state.links if each.status == "active"]
    try:
        client = svc.ado(integration)
        hook_swap.retire_due(svc, client, integration)
        observed = ado_hooks.observe(client, integration.subscription_id)
    except IdentityInvalid as error:
        # No usable identity: say so, and leave everything else as it is.
        log.warning("subscription_check.identity_invalid", extra=context)
        _record(svc, account_id, orgs, problem=error.message)
        return
    except AdoError as error:
        log.warning("subscription_check.failed_to_get_subscription",
                    extra={**context, "error": type(error).__name__})
        _record(svc, account_id, orgs, last_checked=now,
                problem=f"The service hook could not be read: {error.message}")
        return
    if observed.status == hooks.HEALTHY:
        _record(svc, account_id, orgs, subscription_status=observed.status, last_checked=now, problem=None)
    elif observed.status == "disabledByUser":
        log.warning("subscription_check.disabled_by_user", extra=context)
        _record(svc, account_id, orgs, subscription_status=observed.status, last_checked=now,
                problem=USER_DISABLED)
        comment_hooks.ensure(svc, account_id, client)
        return  # sync from Azure DevOps is paused: nothing is reconciled either
    elif observed.status in hooks.REPLACEABLE or observed.status == hooks.MISSING:
        _replace(svc, integration, client, observed.status, now, org_id, orgs)
    else:
        log.warning("subscription_check.unknown_status", extra={**context, "status": observed.status})
        _record(svc, account_id, orgs, subscription_status=observed.status, last_checked=now,
                problem=f"The service hook has an unknown status {observed.status!r}.")
    comment_hooks.ensure(svc, account_id, client)
    _reconcile(svc, account_id, context)


def _reconcile(svc: Services, account_id: str, context: dict[str, str]) -> None:
    """Reconcile what the hook may have missed, after the check was recorded (nothing here undoes it).

    A transient failure raises, so the message comes back and the (idempotent) check and pass run
    again; a permanent one is logged, and the watermark stays where it was.
    """
    state = svc.store.integrations.read(account_id)
    if state.integration is None or state.integration.status != "active":
        return
    try:
        reconciliation.reconcile(svc, state.integration, state.links)
    except (AdoError, IdentityInvalid) as error:
        log.warning("subscription_check.reconcile_failed", extra={**context, "error": type(error).__name__})


def request_reconcile(svc: Services, account_id: str) -> Reply:
    """POST .../integrations/{account_id}/reconcile: queue a subscription check, which reconciles (202).

    One check covers the whole integration (its one service hook, and every linked work item of its
    active organization links), so one message is queued, for the first active organization link.
    """
    state = svc.store.integrations.read(check_id(account_id, "account_id"))
    if state.integration is None or state.integration.status != "active":
        raise NotFound(f"Integration {account_id} is not installed")
    links = sorted((link for link in state.links if link.status == "active"), key=lambda link: link.org_id)
    if not links:
        raise Conflict("The integration has no active organization link: there is nothing to reconcile.")
    message = plan.check_message(links[0])
    svc.send(QUEUE, message)
    log.info("reconcile.requested", extra={"account_id": account_id})
    return Reply(status=202, body={"account_id": account_id, "queued": {"queue": QUEUE, **message}})


def _replace(svc: Services, integration: Integration, client: AdoClient, observed: str, now: float,
             org_id: str, orgs: list[str]) -> None:
    """Create a new hook, store it if nobody replaced the old one meanwhile, then retire the old one."""
    account_id, old_id = integration.account_id, integration.subscription_id
    old_delivers = observed in overlap.DELIVERING
    context = {"account_id": account_id, "status": observed}
    try:
        url = ado_hooks.webhook_url()
        created = hook_swap.create(svc, client, account_id, url)
    except (AdoError, IdentityInvalid, ConfigError) as error:
        log.warning("subscription_check.failed_to_create_subscription",
                    extra={**context, "error": type(error).__name__})
        _record(svc, account_id, orgs, subscription_status=observed, last_checked=now,
                problem=f"The service hook is {observed} and could not be recreated: {error.message}")
        return

    def swap(current: Integration) -> Integration | None:
        if current.subscription_id != old_id or current.status != "active":
            return None  # a re-install or another check replaced it first, or an uninstall began
        return replace(hook_swap.swapped(current, created, now, old_delivers=old_delivers), last_checked=now,
                       problem=None)

    told: list[Event] = []

    def tell(old: Integration, new: Integration) -> list[Event]:
        # What was seen (if it was not recorded yet), then the repair.
        steps: list[Step] = []
        if old.subscription_status != observed:
            problem = f"The service hook was {observed}; it is being recreated."
            steps.append((old.subscription_status, observed, problem))
        steps.append((observed, created.status, None))
        told[:] = _subscription_events(svc, account_id, orgs, steps)
        return told

    try:
        saved = svc.store.integrations.update(account_id, swap, tell=tell)
    except StorageUnavailable:
        ado_hooks.delete_quietly(client, created.id)
        raise
    if saved is None or saved.subscription_id != created.id:
        log.info("subscription_check.replaced_meanwhile", extra=context)
        ado_hooks.delete_quietly(client, created.id)
        hook_swap.withdraw(svc, account_id, created.secret_hash)
        return
    if told:
        flow_events.notify_integration(svc, account_id)
    hook_swap.retire_or_delete(svc, client, account_id, org_id, old_id, old_delivers=old_delivers)
    ado_hooks.remove_strays(client, url, created.id, lambda: hook_swap.spared(svc, account_id), now)
    log.info("subscription_check.replaced", extra=context)


def _record(svc: Services, account_id: str, orgs: list[str], **fields: Any) -> None:
    """Update some fields of the integration under its ETag (no write when nothing changes); a new
    subscription status is told to the tracker organizations `orgs`."""
    told: list[Event] = []

    def mutate(current: Integration) -> Integration | None:
        if all(getattr(current, name) == value for name, value in fields.items()):
            return None
        return replace(current, **fields)

    def tell(old: Integration, new: Integration) -> list[Event]:
        steps: list[Step] = [(old.subscription_status, new.subscription_status, new.problem)]
        told[:] = _subscription_events(svc, account_id, orgs, [s for s in steps if s[1] and s[0] != s[1]])
        return told

    svc.store.integrations.update(account_id, mutate, tell=tell)
    if told:
        flow_events.notify_integration(svc, account_id)


def _subscription_events(svc: Services, account_id: str, orgs: list[str], steps: list[Step]) -> list[Event]:
    """One `integration.subscription_changed` per organization and status change (old, new, problem)."""
    now = svc.clock()
    return [events.subscription_changed(org_id, integration_id=account_id, old=old, new=new, problem=problem, now=now)
            for old, new, problem in steps if new for org_id in orgs]
