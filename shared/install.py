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

import json
import logging
import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from shared import deps, storage, store, subscription
from shared import validate as v
from shared.ado_auth import auth_for
from shared.ado_client import AdoClient, checked_domain_name, lookup_base_url
from shared.core.errors import (
    AdoAuthError,
    AdoBadRequest,
    AdoError,
    IdentityInvalid,
    InvalidInput,
    NotFound,
    Unprocessable,
)
from shared.http import Reply, iso_time
from shared.keys import check_id
from shared.models import Identity, Integration, OrgLink
from shared.store import IdentityStore, IntegrationState

log = logging.getLogger(__name__)

MAX_TOKEN = 16_000
ACCESS_HELP = (
    "Azure DevOps refused to create the service hook for this organization. Please ensure that "
    "third-party application access via OAuth is enabled for the Azure DevOps organization, and that "
    "the installing identity has project administrator rights (needed to create service hooks)."
)
MIGRATE_QUEUE = "migrate-repo"
MIGRATED_PROVIDER = "integrations:vsts"
LEGACY_PROVIDERS = ("visualstudio", MIGRATED_PROVIDER)
MIGRATE_BATCH = 50
BOOLEAN_KEYS = ("sync_status_reverse", "sync_forward_assignment", "sync_reverse_assignment", "sync_comments")


# --- handlers ----------------------------------------------------------------------------------


def install(account_id: str, body: dict[str, Any]) -> Reply:
    """PUT /api/manage/integrations/{account_id}: install or re-install, then queue repo migration."""
    account_id = check_id(account_id, "account_id")
    account_name = v.required_text(body, "account_name", max_len=256)
    org_id = check_id(v.required_text(body, "organization_id", max_len=256), "organization_id")
    domain_name = v.text(body, "domain_name", required=False, max_len=2048)
    identity = parse_identity(v.mapping(body, "identity", required=True) or {})
    raw_config = v.mapping(body, "config")
    config = parse_config(raw_config) if raw_config is not None else None
    url = subscription.webhook_url()

    existing = store.read_integration(account_id)
    old = existing.integration
    pending = _PendingIdentity(identity)
    try:
        auth = auth_for(account_id, pending, session=deps.http_session())
        domain, _ = checked_domain_name(
            domain_name or (old.domain_name if old else None), account_id,
            lambda aid: lookup_base_url(aid, session=deps.http_session(), auth=auth),
        )
        client = AdoClient(base_url=domain, auth=auth, account_name=account_name, session=deps.http_session())
        hook = _ensure_hook(client, old, url)
    except IdentityInvalid as error:
        raise Unprocessable(f"identity: {error.message}", field="identity") from None

    store.save_identity(account_id, pending.identity)
    _save_integration(Integration(
        account_id=account_id, account_name=account_name, domain_name=domain, status="active",
        subscription_id=hook.id, secret_hash=hook.secret_hash, subscription_status=hook.status,
        last_checked=old.last_checked if old and hook.reused else None,
        last_delivery=old.last_delivery if old else None, problem=None,
    ))
    if old and old.subscription_id and old.subscription_id != hook.id:
        subscription.delete_quietly(client, old.subscription_id)
    if not hook.reused:
        subscription.remove_strays(client, url, hook.id, lambda: _stored_subscription(account_id))
    known = next((link for link in existing.links if link.org_id == org_id), None)
    store.ensure_organization(org_id)
    store.save_org_link(OrgLink(account_id=account_id, org_id=org_id, status="active",
                                config=config if config is not None else (known.config if known else {})))
    queued = queue_legacy_repositories(account_id, org_id)
    log.info("install.done", extra={"account_id": account_id, "organization_id": org_id,
                                    "subscription_reused": hook.reused, "repositories_queued": queued})
    return integration_view(account_id)


def integration_view(account_id: str) -> Reply:
    """GET /api/manage/integrations/{account_id}: the integration without secrets, hashes or tokens."""
    state = store.read_integration(check_id(account_id, "account_id"))
    if state.integration is None:
        raise NotFound(f"Integration {account_id} is not installed")
    return Reply(status=200, body=view(state))


def put_org_config(account_id: str, org_id: str, body: dict[str, Any]) -> Reply:
    """PUT .../organizations/{org_id}/config: validate and replace the organization link's config."""
    account_id = check_id(account_id, "account_id")
    org_id = check_id(org_id, "org_id")
    config = parse_config(body)
    link = store.get_org_link(account_id, org_id)
    if link is None or store.get_integration(account_id) is None:
        raise NotFound(f"Organization {org_id} is not linked to integration {account_id}")
    store.save_org_link(replace(link, config=config))
    return Reply(status=200, body=_link_view(replace(link, config=config)))


def ado_repositories(account_id: str) -> Reply:
    """GET .../repositories: `[{"name": "<project>/<repo>", "identifier": "<repo id>"}]` from ADO."""
    integration = store.get_integration(check_id(account_id, "account_id"))
    if integration is None:
        raise NotFound(f"Integration {account_id} is not installed")
    try:
        repos = client_for(integration).list_repositories()
    except (AdoError, IdentityInvalid) as error:
        raise AdoError(
            f"Could not list the repositories of Azure DevOps organization {integration.account_name}: "
            f"{error.message}",
            http_status=getattr(error, "http_status", None),
        ) from None
    items = [{"name": f"{(r.get('project') or {}).get('name', '')}/{r.get('name', '')}",
              "identifier": str(r.get("id", ""))} for r in repos]
    return Reply(status=200, body=items)


# --- shared with the other flows -----------------------------------------------------------------


def client_for(integration: Integration) -> AdoClient:
    """An authenticated client; a malformed stored domain name is repaired by lookup and saved first."""

    def lookup(aid: str) -> str:
        auth = auth_for(aid, IdentityStore(), session=deps.http_session())
        return lookup_base_url(aid, session=deps.http_session(), auth=auth)

    domain, changed = checked_domain_name(integration.domain_name, integration.account_id, lookup)
    if changed:
        store.update_integration(integration.account_id,
                                 lambda cur: replace(cur, domain_name=domain) if cur.domain_name != domain else None)
        log.info("integration.domain_repaired", extra={"account_id": integration.account_id})
        integration = replace(integration, domain_name=domain)
    return deps.ado_client(integration)


def queue_legacy_repositories(account_id: str, org_id: str) -> int:
    """Queue one migration per legacy repository of `org_id` without an integration; returns the count."""
    items = [{"repo_id": repo.repo_id, "integration_id": account_id, "organization_id": org_id}
             for repo in store.list_repositories(org_id)
             if repo.provider in LEGACY_PROVIDERS and not repo.integration_id]
    for start in range(0, len(items), MIGRATE_BATCH):
        chunk = items[start:start + MIGRATE_BATCH]
        storage.send(MIGRATE_QUEUE, chunk[0] if len(chunk) == 1 else {"items": chunk})
    return len(items)


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
    }


# --- validation (pure) -------------------------------------------------------------------------


def parse_identity(body: dict[str, Any]) -> Identity:
    try:
        kind = v.choice(body, "kind", ("oauth", "pat"))
        access_token = v.required_text(body, "access_token", max_len=MAX_TOKEN)
        refresh_token = v.text(body, "refresh_token", required=False, max_len=MAX_TOKEN)
    except InvalidInput as error:
        raise _nested("identity", error) from None
    if kind == "pat" and refresh_token:
        raise v.invalid("identity.refresh_token", "is only used with kind oauth")
    return Identity(kind="pat" if kind == "pat" else "oauth", access_token=access_token,
                    refresh_token=refresh_token, expires_at=parse_time(body.get("expires_at"), "identity.expires_at"))


def _stored_subscription(account_id: str) -> str | None:
    integration = store.get_integration(account_id)
    return integration.subscription_id if integration else None


def parse_time(value: Any, name: str) -> float | None:
    """ISO 8601 (UTC when no offset is given) or unix seconds → unix seconds."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise v.invalid(name, "must be an ISO 8601 time or unix seconds")
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:
            raise v.invalid(name, "is out of range") from None
        if not math.isfinite(seconds) or not 0 <= seconds < 253402300800:  # before year 10000
            raise v.invalid(name, "is out of range")
        return seconds
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise v.invalid(name, "must be an ISO 8601 time or unix seconds") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parse_time(parsed.timestamp(), name)
    raise v.invalid(name, "must be an ISO 8601 time or unix seconds")


def parse_config(body: dict[str, Any]) -> dict[str, Any]:
    """An organization link's sync config, validated (422 naming the field)."""
    allowed = {"sync_status_forward", "inbound_status", "project_issue_defaults", "resolution_strategy",
               *BOOLEAN_KEYS}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise v.invalid(unknown[0], "is not a known setting")
    config: dict[str, Any] = {}
    for key in BOOLEAN_KEYS:
        config[key] = bool(v.flag(body, key, default=False))
    config["sync_status_forward"] = _status_mapping(body.get("sync_status_forward"))
    inbound = _inbound_status(body.get("inbound_status"))
    if inbound:
        config["inbound_status"] = inbound
    defaults = v.mapping(body, "project_issue_defaults")
    if defaults:
        config["project_issue_defaults"] = defaults
    strategy = v.text(body, "resolution_strategy", required=False, max_len=64)
    if strategy:
        config["resolution_strategy"] = strategy
    if len(json.dumps(config)) > v.MAX_MAPPING_JSON:
        raise v.invalid("config", f"is larger than {v.MAX_MAPPING_JSON} characters of JSON")
    return config


def _status_mapping(value: Any) -> dict[str, dict[str, str]]:
    """`{"<ado project id>": {"on_resolve", "on_unresolve"}}`; empty (or false) turns the sync off."""
    name = "sync_status_forward"
    if value is None or value is False:
        return {}
    if not isinstance(value, dict):
        raise v.invalid(name, 'must be a mapping {"<project id>": {"on_resolve", "on_unresolve"}}')
    mapping: dict[str, dict[str, str]] = {}
    for project, states in value.items():
        _project_key(project, name)
        if not isinstance(states, dict):
            raise v.invalid(name, "Resolve and unresolve status are required.")
        on_resolve, on_unresolve = states.get("on_resolve"), states.get("on_unresolve")
        if not (isinstance(on_resolve, str) and on_resolve.strip()
                and isinstance(on_unresolve, str) and on_unresolve.strip()):
            raise v.invalid(name, "Resolve and unresolve status are required.")
        mapping[str(project)] = {"on_resolve": on_resolve.strip(), "on_unresolve": on_unresolve.strip()}
    return mapping


def _inbound_status(value: Any) -> dict[str, dict[str, list[str]]]:
    """`{"<project id>": {"resolve": [...], "unresolve": [...]}}`: ADO states that (un)resolve."""
    name = "inbound_status"
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise v.invalid(name, 'must be a mapping {"<project id>": {"resolve": [...], "unresolve": [...]}}')
    result: dict[str, dict[str, list[str]]] = {}
    for project, lists in value.items():
        _project_key(project, name)
        if not isinstance(lists, dict) or set(lists) - {"resolve", "unresolve"}:
            raise v.invalid(name, "each project needs an object with resolve and unresolve lists")
        try:
            result[str(project)] = {key: v.text_list(lists, key) for key in ("resolve", "unresolve")}
        except InvalidInput as error:
            raise _nested(name, error) from None
    return result


def _nested(prefix: str, error: InvalidInput) -> InvalidInput:
    if error.field is None:
        return error
    return v.invalid(f"{prefix}.{error.field}", error.message.split(": ", 1)[-1])


def _project_key(project: str, name: str) -> str:
    if not project.strip() or len(project) > 256:
        raise v.invalid(name, "project ids must be non-empty strings of at most 256 characters")
    return project


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
            found = subscription.observe(client, old.subscription_id)
            if found.status == subscription.HEALTHY and found.url == url:
                return _Hook(old.subscription_id, found.status, old.secret_hash, True)
            log.info("install.subscription.replacing",
                     extra={"account_id": old.account_id, "status": found.status, "same_url": found.url == url})
        created = subscription.create(client, url)
    except (AdoAuthError, AdoBadRequest) as error:
        raise Unprocessable(f"{ACCESS_HELP} (Azure DevOps said: {error.message})", field="identity") from None
    return _Hook(created.id, created.status, created.secret_hash, False)


def _save_integration(new: Integration) -> Integration:
    """Write the integration; an existing row is updated under its ETag (keeps a concurrent last_delivery)."""

    def mutate(current: Integration) -> Integration:
        return replace(new, last_delivery=current.last_delivery or new.last_delivery)

    saved = store.update_integration(new.account_id, mutate)
    if saved is None:
        store.save_integration(new)
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


def _link_view(link: OrgLink) -> dict[str, Any]:
    return {"organization_id": link.org_id, "status": link.status, "config": link.config}
