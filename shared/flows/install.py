"""Install and view integrations (the `/api/manage/integrations/...` handlers).

Install order, so a failure never leaves a half-installed integration: validate everything and
check `WEBHOOK_URL` first; then talk to ADO with the new identity held in memory only (domain
lookup, reuse or creation of the service hook); only once the hook exists are the tokens, the
integration (subscription id and secret hash) and the organization link written. A failed install
therefore writes nothing, and a retry of the same request simply runs again. A re-install reuses
an enabled hook and replaces any other without losing a delivery (`shared.flows.hook_swap`): the
new secret is accepted from just before its hook exists, and the old hook keeps running for a few
minutes after the new one is stored (its secret accepted meanwhile), then a queued check deletes it.

A config (in the install body or `PUT .../config`) is also checked against live Azure DevOps before
anything is saved (`shared.flows.preflight`): a status mapping or issue default naming a project,
state, type or path that does not exist is a 422; Azure DevOps out of reach is a 503.

Identity rules: `pat` needs `access_token` only; `oauth` may omit `refresh_token` (then the token
is used until it expires and is never refreshed) and `expires_at` (then it is refreshed only when
ADO answers 401). `managed_identity` and `service_principal` carry no token at all (see
`shared.core.identities`): the install itself is their first use, and only their description is stored.

Azure DevOps Server: the collection's connectionData says whether it is Services or Server; that is
recorded (`deployment`) and decides where search and user calls go. A Server collection is not in the
Services account directory, so its install needs `domain_name`, and it takes personal access tokens
(Microsoft Entra tokens are for Services organizations only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from shared.adapters.ado_client import AdoClient
from shared.adapters.ado_endpoints import SERVER, reported_deployment
from shared.compose import Services
from shared.config import settings
from shared.core import hooks, overlap
from shared.core import validate as v
from shared.core.errors import (
    AdoAuthError,
    AdoBadRequest,
    AdoError,
    AdoNotFound,
    AdoUnavailable,
    IdentityInvalid,
    NotFound,
    TransientError,
    Unprocessable,
)
from shared.core.hosts import organization_url, parse_server_hosts
from shared.core.identities import KINDS as ENTRA_KINDS
from shared.core.keys import check_id
from shared.core.models import Identity, Integration, IntegrationState, OrgLink
from shared.core.orgconfig import parse_config, parse_identity
from shared.core.reply import Reply
from shared.core.times import iso_time
from shared.flows import comment_hooks, hook_swap, lifecycle, preflight
from shared.flows import hooks as ado_hooks
from shared.flows.discovery import Lookups
from shared.flows.migration import queue_legacy_repositories

log = logging.getLogger(__name__)

ACCESS_HELP = (
    "Azure DevOps refused to create the service hook for this organization. Please ensure that "
    "third-party application access via OAuth is enabled for the Azure DevOps organization, and that "
    "the installing identity has project administrator rights (needed to create service hooks)."
)
ENTRA_HELP = (
    "Managed identities and service principals work only with Azure DevOps Services organizations "
    "connected to Microsoft Entra ID, and must first be added to the organization as users; an Azure "
    "DevOps Server collection needs a personal access token."
)

# The one answer for every organization URL that gave no usable HTTP answer (see `_verify_organization`).
UNREACHABLE = ("Azure DevOps could not be reached at this organization URL; retry later, and check the URL "
               "if it persists")


def install(svc: Services, account_id: str, body: dict[str, Any]) -> Reply:
    """PUT /api/manage/integrations/{account_id}: install or re-install, then queue repo migration."""
    account_id = check_id(account_id, "account_id")
    account_name = v.required_text(body, "account_name", max_len=256)
    org_id = check_id(v.required_text(body, "organization_id", max_len=256), "organization_id")
    domain_name = v.text(body, "domain_name", required=False, max_len=2048)
    if domain_name is not None:
        domain_name = organization_url(domain_name, server_hosts=parse_server_hosts(settings().ado_server_hosts))
    identity = parse_identity(v.mapping(body, "identity", required=True) or {})
    raw_config = v.mapping(body, "config")
    config = parse_config(raw_config) if raw_config is not None else None
    url = ado_hooks.webhook_url()

    existing = svc.store.integrations.read(account_id)
    old = existing.integration
    pending = _PendingIdentity(identity)
    draft = Integration(account_id=account_id, account_name=account_name,
                        domain_name=domain_name or (old.domain_name if old else ""))
    try:
        client = _connect(svc, draft, pending, domain_name is None)
        deployment = reported_deployment(_verify_organization(client, account_id, identity), client.base_url)
        if deployment == SERVER and identity.kind in ENTRA_KINDS:
            raise Unprocessable(f"identity.kind: {ENTRA_HELP}", field="identity.kind")
        if deployment != client.endpoints.deployment:
            client = svc.ado.connect(replace(draft, domain_name=client.base_url, deployment=deployment), pending)
        if config:
            checked = client
            preflight.check_config(Lookups(svc, draft, lambda: checked, cache=False), config)
        hook = _ensure_hook(svc, client, account_id, old, url)
    except IdentityInvalid as error:
        raise Unprocessable(f"identity: {error.message}", field="identity") from None

    svc.store.integrations.save_identity(account_id, pending.identity)
    svc.ado.forget(account_id)
    _save_integration(svc, Integration(
        account_id=account_id, account_name=account_name, domain_name=client.base_url, status="active",
        deployment=deployment,
        subscription_id=hook.id, secret_hash=hook.secret_hash, subscription_status=hook.status,
        last_checked=old.last_checked if old and hook.reused else None,
        last_delivery=old.last_delivery if old else None, problem=None,
    ), old_delivers=hook.old_delivers)
    if not hook.reused:
        ado_hooks.remove_strays(client, url, hook.id, lambda: hook_swap.spared(svc, account_id), svc.clock())
    known = existing.org_link(org_id)
    svc.store.integrations.save_org_link(OrgLink(
        account_id=account_id, org_id=org_id, status="active",
        config=config if config is not None else (known.config if known else {})))
    if old and old.subscription_id != hook.id:
        hook_swap.retire_or_delete(svc, client, account_id, org_id, old.subscription_id,
                                   old_delivers=hook.old_delivers)
    comment_hooks.ensure(svc, account_id, client)
    queued = queue_legacy_repositories(svc, account_id, org_id)
    log.info("install.done", extra={"account_id": account_id, "organization_id": org_id,
                                    "subscription_reused": hook.reused, "repositories_queued": queued})
    return integration_view(svc, account_id)


def integration_view(svc: Services, account_id: str) -> Reply:
    """GET /api/manage/integrations/{account_id}: the integration without secrets, hashes or tokens."""
    state = svc.store.integrations.read(check_id(account_id, "account_id"))
    if state.integration is None:
        raise NotFound(f"Integration {account_id} is not installed")
    return Reply(status=200, body=view(state))


def put_org_config(svc: Services, account_id: str, org_id: str, body: dict[str, Any]) -> Reply:
    """PUT .../organizations/{org_id}/config: validate (also against live Azure DevOps, see
    `shared.flows.preflight`) and replace the organization link's config."""
    account_id = check_id(account_id, "account_id")
    org_id = check_id(org_id, "org_id")
    config = parse_config(body)
    state = svc.store.integrations.read(account_id)
    link = state.org_link(org_id)
    if link is None or state.integration is None:
        raise NotFound(f"Organization {org_id} is not linked to integration {account_id}")
    preflight.check_config(Lookups(svc, state.integration), config)
    svc.store.integrations.save_org_link(replace(link, config=config))
    links = [replace(other, config=config) if other.org_id == org_id else other for other in state.links]
    if comment_hooks.wanted(links) != bool(state.integration.comment_subscription_id):
        # The comment hook follows `sync_comments`: the subscription check creates or removes it.
        svc.send(lifecycle.QUEUE, {"integration_id": account_id, "organization_id": org_id})
    return Reply(status=200, body=_link_view(replace(link, config=config)))


def ado_repositories(svc: Services, account_id: str) -> Reply:
    """GET .../repositories: `[{"name": "<project>/<repo>", "identifier": "<repo id>"}]` from ADO."""
    integration = svc.store.integrations.get(check_id(account_id, "account_id"))
    if integration is None:
        raise NotFound(f"Integration {account_id} is not installed")
    try:
        repos = svc.ado(integration).list_repositories()
    except (AdoError, IdentityInvalid) as error:
        raise AdoError(
            f"Could not list the repositories of Azure DevOps organization {integration.account_name}: "
            f"{error.message}",
            http_status=getattr(error, "http_status", None),
        ) from None
    items = [{"name": f"{(r.get('project') or {}).get('name', '')}/{r.get('name', '')}",
              "identifier": str(r.get("id", ""))} for r in repos]
    return Reply(status=200, body=items)


def view(state: IntegrationState) -> dict[str, Any]:
    item = state.integration
    assert item is not None
    return {
        "account_id": item.account_id,
        "account_name": item.account_name,
        "domain_name": item.domain_name,
        "deployment": item.deployment or None,
        "status": item.status,
        "subscription": {
            "id": item.subscription_id,
            "status": item.subscription_status,
            "last_checked": iso_time(item.last_checked),
            "last_delivery": iso_time(item.last_delivery),
        },
        "comment_subscription": {"id": item.comment_subscription_id, "status": item.comment_subscription_status},
        "organizations": [_link_view(link) for link in state.links],
        "problem": item.problem,
        "last_reconciled": iso_time(item.last_reconciled),
        "repaired": item.repaired,
    }


def _link_view(link: OrgLink) -> dict[str, Any]:
    return {"organization_id": link.org_id, "status": link.status, "config": link.config}


# --- the service hook at install time ------------------------------------------------------------


@dataclass(frozen=True)
class _Hook:
    id: str
    status: str
    secret_hash: str
    reused: bool
    old_delivers: bool = False  # whether the hook it replaces may still deliver (then it drains first)


def _ensure_hook(svc: Services, client: AdoClient, account_id: str, old: Integration | None, url: str) -> _Hook:
    """Reuse the integration's enabled hook, else create one (ADO refusals become a clear 422).

    A new hook's secret is accepted before the hook exists and the old one for a short overlap
    after (`shared.flows.hook_swap`), so a re-install loses no delivery.
    """
    try:
        old_delivers = False
        if old is not None and old.subscription_id and old.secret_hash:
            found = ado_hooks.observe(client, old.subscription_id)
            if found.status == hooks.HEALTHY and found.url == url:
                return _Hook(old.subscription_id, found.status, old.secret_hash, True)
            log.info("install.subscription.replacing",
                     extra={"account_id": old.account_id, "status": found.status, "same_url": found.url == url})
            old_delivers = found.status in overlap.DELIVERING
        created = hook_swap.create(svc, client, account_id, url)
    except (AdoAuthError, AdoBadRequest) as error:
        raise Unprocessable(f"{ACCESS_HELP} (Azure DevOps said: {error.message})", field="identity") from None
    return _Hook(created.id, created.status, created.secret_hash, False, old_delivers)


def _connect(svc: Services, draft: Integration, pending: _PendingIdentity, looked_up: bool) -> AdoClient:
    """The client for the install; without `domain_name`, an organization the lookup does not know is refused."""
    try:
        return svc.ado.connect(draft, pending)
    except (AdoNotFound, AdoAuthError):
        if not looked_up or draft.domain_name:
            raise
        raise Unprocessable("domain_name: is required here: the account lookup found no Azure DevOps Services "
                            "organization with this id for this identity (an Azure DevOps Server collection "
                            "always needs its URL)", field="domain_name") from None


def _verify_organization(client: AdoClient, account_id: str, identity: Identity) -> dict[str, Any]:
    """The collection's connectionData; refuse a URL that serves another organization than `account_id`.

    Every failure without a usable HTTP answer (refused or reset connection, timeout, TLS failure,
    5xx, throttling) answers the same generic 503, so the management API cannot be used to learn what
    a host or port does; the log keeps the kind of failure for operators.
    """
    try:
        data = client.connection_data()
        found = str(data.get("instanceId") or "")
    except AdoAuthError as error:
        hint = ENTRA_HELP if identity.kind in ENTRA_KINDS else ACCESS_HELP
        raise Unprocessable(f"{hint} (Azure DevOps said: {error.message})", field="identity") from None
    except (AdoError, AdoUnavailable) as error:
        if isinstance(error, AdoUnavailable) or error.http_status is None:
            log.warning("install.organization_unreachable", extra={"account_id": account_id,
                                                                   "error": type(error).__name__})
            raise TransientError(UNREACHABLE) from None
        raise Unprocessable("domain_name: no Azure DevOps organization answered at this URL",
                            field="domain_name") from None
    if found.lower() != account_id.lower():
        raise Unprocessable(f"domain_name: the organization at this URL is not account {account_id}",
                            field="domain_name")
    return data


def _save_integration(svc: Services, new: Integration, *, old_delivers: bool) -> Integration:
    """Write the integration; an existing row is updated under its ETag (keeps a concurrent last_delivery,
    and the reconciliation watermark)."""

    now = svc.clock()

    def mutate(current: Integration) -> Integration:
        others = overlap.after_swap(current.secret_hash, current.overlap_secrets, new.secret_hash or "", now)
        # The comment hook is not part of the install: `comment_hooks.ensure` keeps or replaces it next.
        return replace(new, last_delivery=current.last_delivery or new.last_delivery, overlap_secrets=others,
                       retired_hooks=hook_swap.retired_after(current, new.subscription_id or "", now,
                                                             old_delivers=old_delivers),
                       comment_subscription_id=current.comment_subscription_id,
                       comment_secret_hash=current.comment_secret_hash,
                       comment_subscription_status=current.comment_subscription_status,
                       last_reconciled=current.last_reconciled, repaired=current.repaired)

    saved = svc.store.integrations.update(new.account_id, mutate)
    if saved is None:
        svc.store.integrations.save(new)
        saved = new
    return saved


class _PendingIdentity:
    """The identity being installed, kept in memory (an `IdentityRepo`) until the hook exists."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self._version = 0

    def load_identity(self, account_id: str) -> tuple[Identity, str]:
        return self.identity, str(self._version)

    def save_identity(self, account_id: str, identity: Identity, etag: str) -> bool:
        if etag != str(self._version):
            return False
        self.identity = identity
        self._version += 1
        return True

