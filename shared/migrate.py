"""Post-install repository migration (reference/sentry-vsts.md §8): the `migrate-repo` handler.

After an install, each legacy repository of the organization (provider `visualstudio` or
`integrations:vsts`, no integration) gets a message (`install.queue_legacy_repositories`). The
handler moves the repository to the integration only when the integration's identity can read
it in ADO; otherwise nothing changes.
Re-running is harmless: a repository already migrated is left as it is, without an ADO call.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

from shared import install, store
from shared.ado_client import AdoClient
from shared.core.errors import AdoAuthError, AdoBadRequest, AdoNotFound, IdentityInvalid
from shared.keys import check_id
from shared.models import Repository

log = logging.getLogger(__name__)

PROVIDER = install.MIGRATED_PROVIDER


def migrate_repository(message: dict[str, Any]) -> None:
    """Handle one `{"repo_id", "integration_id", "organization_id"}` message."""
    repo_id = check_id(message.get("repo_id"), "repo_id")
    account_id = check_id(message.get("integration_id"), "integration_id")
    org_id = check_id(message.get("organization_id"), "organization_id")
    context = {"repo_id": repo_id, "account_id": account_id, "organization_id": org_id}
    repo = store.get_repository(org_id, repo_id)
    if repo is None:
        log.warning("migrate.repository.unknown", extra=context)
        return
    integration = store.get_integration(account_id)
    if integration is None or integration.status != "active":
        log.warning("migrate.integration.unknown", extra=context)
        return
    if repo.integration_id == account_id and repo.provider == PROVIDER and repo.status != "disabled":
        log.info("migrate.repository.already_migrated", extra=context)
        return
    try:
        reachable = _reachable(repo, install.client_for(integration))
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

    if store.update_repository(org_id, repo_id, mutate) is None:
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
