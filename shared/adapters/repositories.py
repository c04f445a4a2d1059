"""Tracker repositories in Table Storage (table `Repositories`, one partition per tracker organization)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azure.data.tables import TableEntity

from shared.adapters import tables
from shared.core.models import Repository

TABLE = "Repositories"


def _repository(entity: TableEntity) -> Repository:
    return Repository(
        org_id=entity["PartitionKey"],
        repo_id=entity["RowKey"],
        name=entity.get("name", ""),
        provider=entity.get("provider", ""),
        external_id=entity.get("external_id", ""),
        config=tables.loads(entity.get("config"), {}),
        integration_id=entity.get("integration_id"),
        status=entity.get("status", "active"),
    )


def _entity(repo: Repository) -> dict[str, Any]:
    return {
        "PartitionKey": repo.org_id,
        "RowKey": repo.repo_id,
        "name": repo.name,
        "provider": repo.provider,
        "external_id": repo.external_id,
        "config": tables.dumps(repo.config),
        "integration_id": repo.integration_id,
        "status": repo.status,
    }


class RepositoryStore:
    def put(self, repo: Repository) -> None:
        tables.upsert(TABLE, _entity(repo))

    def get(self, org_id: str, repo_id: str) -> Repository | None:
        entity = tables.get(TABLE, org_id, repo_id)
        return _repository(entity) if entity else None

    def list(self, org_id: str) -> list[Repository]:
        return [_repository(e) for e in tables.query(TABLE, "PartitionKey eq @pk", pk=org_id)]

    def update(self, org_id: str, repo_id: str, mutate: Callable[[Repository], Repository | None]
               ) -> Repository | None:
        """Read-modify-write under the ETag; `mutate` returns None for "no change". None: no repository."""

        def attempt() -> Repository | None:
            entity = tables.get(TABLE, org_id, repo_id)
            if entity is None:
                return None
            changed = mutate(_repository(entity))
            if changed is None:
                return _repository(entity)
            tables.create_or_replace(TABLE, _entity(changed), tables.etag(entity))
            return changed

        return tables.optimistic(f"repository {repo_id}", attempt)
