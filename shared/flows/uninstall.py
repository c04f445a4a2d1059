"""Uninstall an integration, and unlink one tracker organization from it (the DELETE routes).

Uninstall order, so that a failure part way leaves nothing that still acts:
1. the integration is marked `disabled`: from then on the kickoff skips it, webhook deliveries are
   refused (400), and outbound sync, create, link and search treat it as not installed;
2. its service hooks are deleted in Azure DevOps with the stored credential: the stored one, and
   every other hook of the organization delivering to `WEBHOOK_URL` (a create that timed out leaves
   such strays behind). Best effort: each failure is reported in the answer, never raised;
3. the credential is deleted, unless a hook could not be deleted for a reason a retry can fix
   (Azure DevOps unreachable or throttled): then it is kept, so that repeating the DELETE finishes
   the job. A credential Azure DevOps refuses is deleted anyway: it could never delete anything.

Links, activity and organization links stay readable (`GET` answers `status: disabled`), and a
later `PUT` re-installs with a new credential and a new hook. Both DELETEs are idempotent: a repeat
answers 200 with the same view (an uninstall repeat reports nothing more deleted). Unknown
integrations and organizations are 404.
Service hook deletion: https://learn.microsoft.com/rest/api/azure/devops/hooks/subscriptions/delete
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from shared.adapters.ado_client import AdoClient
from shared.compose import Services
from shared.core import hooks
from shared.core.errors import (
    AdoAuthError,
    AdoNotFound,
    BundleError,
    ConfigError,
    IdentityInvalid,
    NotFound,
    TransientError,
)
from shared.core.keys import check_id
from shared.core.models import Integration
from shared.core.reply import Reply
from shared.flows import hooks as ado_hooks
from shared.flows.install import view

log = logging.getLogger(__name__)

DISABLED = "disabled"
INACTIVE = "inactive"
QUERY = {"publisherId": "tfs", "consumerId": "webHooks", "consumerActionId": "httpRequest"}


@dataclass
class Outcome:
    """What an uninstall did in Azure DevOps: hooks deleted, hooks left (with why), credential kept?"""

    deleted: list[str] = field(default_factory=list)
    failed: list[dict[str, str | None]] = field(default_factory=list)
    retryable: bool = False  # a failure a later DELETE can fix: keep the credential for it

    def fail(self, subscription_id: str | None, error: BundleError) -> None:
        self.failed.append({"id": subscription_id, "detail": error.message})
        self.retryable = self.retryable or isinstance(error, TransientError)


def uninstall(svc: Services, account_id: str) -> Reply:
    """DELETE /api/manage/integrations/{account_id}: disable, delete the hooks, forget the credential."""
    account_id = check_id(account_id, "account_id")
    integration = svc.store.integrations.update(
        account_id, lambda current: None if current.status == DISABLED else replace(current, status=DISABLED))
    if integration is None:
        raise NotFound(f"Integration {account_id} is not installed")
    has_credential = _has_credential(svc, account_id)
    outcome = _delete_hooks(svc, integration) if has_credential else Outcome()
    if not has_credential and integration.subscription_id:
        outcome.failed.append({"id": integration.subscription_id,
                               "detail": "no credential is stored to delete it with: delete it in Azure DevOps "
                                         "(Project settings > Service hooks)"})
    if integration.subscription_id in outcome.deleted:
        svc.store.integrations.update(account_id, _forget_subscription(integration.subscription_id))
    credential_deleted = not outcome.retryable
    if credential_deleted and has_credential:
        svc.store.integrations.delete_identity(account_id)
    log.info("uninstall.done", extra={"account_id": account_id, "hooks_deleted": len(outcome.deleted),
                                      "hooks_failed": len(outcome.failed), "credential_deleted": credential_deleted})
    body = view(svc.store.integrations.read(account_id))
    body["uninstall"] = {
        "service_hooks_deleted": outcome.deleted,
        "service_hooks_failed": outcome.failed,
        "credential_deleted": credential_deleted,
        "complete": credential_deleted and not outcome.failed,
    }
    return Reply(status=200, body=body)


def unlink_organization(svc: Services, account_id: str, org_id: str) -> Reply:
    """DELETE .../integrations/{account_id}/organizations/{org_id}: the link becomes inactive.

    Webhook deliveries, outbound sync, subscription checks, create and link all skip an inactive
    link; its config and the groups' links stay, and installing again for the organization (PUT)
    makes it active again.
    """
    account_id = check_id(account_id, "account_id")
    org_id = check_id(org_id, "org_id")
    state = svc.store.integrations.read(account_id)
    link = state.org_link(org_id)
    if state.integration is None or link is None:
        raise NotFound(f"Organization {org_id} is not linked to integration {account_id}")
    if link.status != INACTIVE:
        link = replace(link, status=INACTIVE)
        svc.store.integrations.save_org_link(link)
        log.info("organization.unlinked", extra={"account_id": account_id, "organization_id": org_id})
        state = replace(state, links=[link if known.org_id == org_id else known for known in state.links])
    return Reply(status=200, body=next(o for o in view(state)["organizations"] if o["organization_id"] == org_id))


def _has_credential(svc: Services, account_id: str) -> bool:
    try:
        return svc.store.integrations.load_identity(account_id) is not None
    except TransientError:
        raise
    except BundleError:
        return True  # stored, but it cannot be opened (another key): connecting says why


def _delete_hooks(svc: Services, integration: Integration) -> Outcome:
    """Delete the stored hook and every hook to our URL; each failure is recorded, none raised."""
    outcome = Outcome()
    try:
        client = svc.ado(integration)
    except BundleError as error:
        outcome.fail(integration.subscription_id, _no_client(error))
        return outcome
    doomed = [sub for sub in (integration.subscription_id, integration.comment_subscription_id) if sub]
    for stray in _strays(client, outcome):
        if stray not in doomed:
            doomed.append(stray)
    for subscription_id in doomed:
        try:
            client.delete_subscription(subscription_id)
        except AdoNotFound:
            pass
        except BundleError as error:
            log.warning("uninstall.hook_not_deleted", extra={"subscription_id": subscription_id,
                                                              "error": type(error).__name__})
            outcome.fail(subscription_id, error)
            continue
        outcome.deleted.append(subscription_id)
    return outcome


def _strays(client: AdoClient, outcome: Outcome) -> list[str]:
    """Every hook of the organization delivering to `WEBHOOK_URL` (none when it is not set)."""
    try:
        url = ado_hooks.webhook_url()
    except ConfigError:
        return []
    try:
        return hooks.delivering_to(client.query_subscriptions(QUERY), url)
    except BundleError as error:
        outcome.fail(None, BundleError(f"the service hooks could not be listed: {error.message}"))
        outcome.retryable = outcome.retryable or isinstance(error, TransientError)
        return []


def _no_client(error: BundleError) -> BundleError:
    """Why no Azure DevOps call could be made; a refused credential is not worth keeping."""
    if isinstance(error, IdentityInvalid | AdoAuthError):
        return IdentityInvalid(f"Azure DevOps refused the stored credential: {error.message}")
    return error


def _forget_subscription(subscription_id: str) -> Callable[[Integration], Integration | None]:
    def mutate(current: Integration) -> Integration | None:
        if current.subscription_id != subscription_id:
            return None  # re-installed meanwhile: that hook is not ours to forget
        return replace(current, subscription_id=None, secret_hash=None, subscription_status=None,
                       comment_subscription_id=None, comment_secret_hash=None, comment_subscription_status=None)

    return mutate
