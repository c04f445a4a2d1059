"""Post-install repository migration: the `migrate-repo` handler.

After an install, each legacy repository of the organization (provider `visualstudio` or
`integrations:vsts`, no integration) gets a message (`queue_legacy_repositories`), as
Sentry's integration does (https://docs.sentry.io/organization/integrations/source-code-mgmt/azure-devops/). The
handler moves the repository to the integration only when the integration's identity can read
it in ADO; otherwise nothing changes.
Re-running is harmless: a repository already migrated is left as it is, without an ADO call.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from shared.adapters.ado_client import AdoClient
from shared.compose import Services
from shared.core.errors import AdoAuthError, AdoBadRequest, AdoNotFound, IdentityInvalid
from shared.core.keys import check_id
from shared.core.models import Repository

log = logging.getLogger(__name__)

QUEUE = "migrate-repo"
PROVIDER = "integrations:vsts"
LEGACY_PROVIDERS = ("visualstudio", PROVIDER)
BATCH = 50


def queue_legacy_repositories(svc: Services, account_id: str, org_id: str) -> int:
    """Queue one migration per legacy repository of `org_id` without an integration; returns the count."""
    items = [{"repo_id": repo.repo_id, "integration_id": account_id, "organization_id": org_id}
             for repo in svc.store.repositories.list(org_id)
             if repo.provider in LEGACY_PROVIDERS and not repo.integration_id]
    for start in range(0, len(items), BATCH):
        chunk = items[start:start + BATCH]
        svc.send(QUEUE, chunk[0] if len(chunk) == 1 else {"items": chunk})
    return len(items)


def migrate_repository(svc: Services, message: dict[str, Any]) -> None:
    """Handle one `{"repo_id", "integration_id", "organization_id"}` message."""
    repo_id = check_id(message.get("repo_id"), "repo_id")
    account_id = check_id(message.get("integration_id"), "integration_id")
    org_id = check_id(message.get("organization_id"), "organization_id")
    context = {"repo_id": repo_id, "account_id": account_id, "organization_id": org_id}
    repo = svc.store.repositories.get(org_id, repo_id)
    if repo is None:
        log.warning("migrate.repository.unknown", extra=context)
        return
    integration = svc.store.integrations.get(account_id)
    if integration is None or integration.status != "active":
        log.warning("migrate.integration.unknown", extra=context)
        return
    if repo.integration_id == account_id and repo.provider == PROVIDER and repo.status != "disabled":
        log.info("migrate.repository.already_migrated", extra=context)
        return
    try:
        reachable = _reachable(repo, svc.ado(integration))
    except (AdoAuthError, AdoNotFound, AdoBadRequest, IdentityInvalid) as error:
        log.info("migrate.repository.no_access", extra={**context, "error": type(error).__name__})
        return
    if not reachable:
        log.info("migrate.repository.no_access", extra=context)
        return
    if repo.integration_id and repo.integration_id != account_id:
        log.warning("migrate.repository.reassigned", extra={**context, "previous": repo.integration_id})
    changed: list[Repository] = []

    def mutate(current: Repository) -> Repository | None:
        changed.clear()
        new = _migrated(current, account_id)
        changed.extend([new] if new else [])
        return new

    if svc.store.repositories.update(org_id, repo_id, mutate) is None:
        log.warning("migrate.repository.unknown", extra=context)
    elif changed:
        log.info("migrate.repository.migrated", extra=context)
    else:
        log.info("migrate.repository.already_migrated", extra=context)


def _migrated(repo: Repository, account_id: str) -> Repository | None:
    """The repository moved to the integration (a disabled one becomes active), or None if it already is."""
    status = "active" if repo.status == "disabled" else repo.status
    new = replace(repo, integration_id=account_id, provider=PROVIDER, status=status)
    return None if new == repo else new


def _reachable(repo: Repository, client: AdoClient) -> bool:
    """Read the repository from ADO: by project and name from its config, else find it in the list."""
    project, name = repo.config.get("project"), repo.config.get("name")
    if isinstance(project, str) and project and isinstance(name, str) and name:
        client.get_repository(project, name)
        return True
    wanted = {repo.external_id, repo.name} - {""}
    for found in client.list_repositories():
        full = f"{(found.get('project') or {}).get('name', '')}/{found.get('name', '')}"
        if wanted & {str(found.get("id", "")), str(found.get("name", "")), full}:
            return True
    return False
