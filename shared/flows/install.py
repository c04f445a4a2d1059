"""Install and view integrations (the `/api/manage/integrations/...` handlers).

Install order, so a failure never leaves a half-installed integration: validate everything and
check `WEBHOOK_URL` first; then talk to ADO with the new identity held in memory only (domain
lookup, reuse or creation of the service hook); only once the hook exists are the tokens, the
integration (subscription id and secret hash) and the organization link written. A failed install
therefore writes nothing, and a retry of the same request simply runs again. A re-install reuses
an enabled hook and replaces any other (the old one is deleted after the new one is stored).

Identity rules: `pat` needs `access_token` only; `oauth` may omit `refresh_token` (then the token
is used until it expires and is never refreshed) and `expires_at` (then it is refreshed only when
ADO answers 401).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from shared.adapters.ado_client import AdoClient
from shared.compose import Services
from shared.config import settings
from shared.core import hooks
from shared.core import validate as v
from shared.core.errors import (
    AdoAuthError,
    AdoBadRequest,
    AdoError,
    AdoUnavailable,
    IdentityInvalid,
    NotFound,
    TransientError,
    Unprocessable,
)
from shared.core.hosts import organization_url, parse_server_hosts
from shared.core.keys import check_id
from shared.core.models import Identity, Integration, IntegrationState, OrgLink
from shared.core.orgconfig import parse_config, parse_identity
from shared.core.reply import Reply
from shared.core.times import iso_time
from shared.flows import hooks as ado_hooks
from shared.flows.migration import queue_legacy_repositories

log = logging.getLogger(__name__)

ACCESS_HELP = (
    "Azure DevOps refused to create the service hook for this organization. Please ensure that "
    "third-party application access via OAuth is enabled for the Azure DevOps organization, and that "
    "the installing identity has project administrator rights (needed to create service hooks)."
)


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
        client = svc.ado.connect(draft, pending)
        _verify_organization(client, account_id)
        hook = _ensure_hook(client, old, url)
    except IdentityInvalid as error:
        raise Unprocessable(f"identity: {error.message}", field="identity") from None

    svc.store.integrations.save_identity(account_id, pending.identity)
    _save_integration(svc, Integration(
        account_id=account_id, account_name=account_name, domain_name=client.base_url, status="active",
        subscription_id=hook.id, secret_hash=hook.secret_hash, subscription_status=hook.status,
        last_checked=old.last_checked if old and hook.reused else None,
        last_delivery=old.last_delivery if old else None, problem=None,
    ))
    if old and old.subscription_id and old.subscription_id != hook.id:
        ado_hooks.delete_quietly(client, old.subscription_id)
    if not hook.reused:
        def stored() -> str | None:
            current = svc.store.integrations.get(account_id)
            return current.subscription_id if current else None

        ado_hooks.remove_strays(client, url, hook.id, stored, svc.clock())
    known = existing.org_link(org_id)
    svc.store.integrations.save_org_link(OrgLink(
        account_id=account_id, org_id=org_id, status="active",
        config=config if config is not None else (known.config if known else {})))
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
    """PUT .../organizations/{org_id}/config: validate and replace the organization link's config."""
    account_id = check_id(account_id, "account_id")
    org_id = check_id(org_id, "org_id")
    config = parse_config(body)
    state = svc.store.integrations.read(account_id)
    link = state.org_link(org_id)
    if link is None or state.integration is None:
        raise NotFound(f"Organization {org_id} is not linked to integration {account_id}")
    svc.store.integrations.save_org_link(replace(link, config=config))
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
        "status": item.status,
        "subscription": {
            "id": item.subscription_id,
            "status": item.subscription_status,
            "last_checked": iso_time(item.last_checked),
            "last_delivery": iso_time(item.last_delivery),
        },
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


def _ensure_hook(client: AdoClient, old: Integration | None, url: str) -> _Hook:
    """Reuse the integration's enabled hook, else create one (ADO refusals become a clear 422)."""
    try:
        if old is not None and old.subscription_id and old.secret_hash:
            found = ado_hooks.observe(client, old.subscription_id)
            if found.status == hooks.HEALTHY and found.url == url:
                return _Hook(old.subscription_id, found.status, old.secret_hash, True)
            log.info("install.subscription.replacing",
                     extra={"account_id": old.account_id, "status": found.status, "same_url": found.url == url})
        created = ado_hooks.create(client, url)
    except (AdoAuthError, AdoBadRequest) as error:
        raise Unprocessable(f"{ACCESS_HELP} (Azure DevOps said: {error.message})", field="identity") from None
    return _Hook(created.id, created.status, created.secret_hash, False)


def _verify_organization(client: AdoClient, account_id: str) -> None:
    """Refuse an organization URL that serves another organization than `account_id`.

    Network failures answer one generic error: what a host did must not be readable from the answer.
    """
    try:
        found = client.organization_id()
    except AdoAuthError as error:
        raise Unprocessable(f"{ACCESS_HELP} (Azure DevOps said: {error.message})", field="identity") from None
    except AdoUnavailable:
        raise TransientError("Azure DevOps could not be reached for this organization; retry later") from None
    except AdoError:
        raise Unprocessable("domain_name: no Azure DevOps organization answered at this URL",
                            field="domain_name") from None
    if found.lower() != account_id.lower():
        raise Unprocessable(f"domain_name: the organization at this URL is not account {account_id}",
                            field="domain_name")


def _save_integration(svc: Services, new: Integration) -> Integration:
    """Write the integration; an existing row is updated under its ETag (keeps a concurrent last_delivery,
    and the reconciliation watermark)."""

    def mutate(current: Integration) -> Integration:
        return replace(new, last_delivery=current.last_delivery or new.last_delivery,
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

