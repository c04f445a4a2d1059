"""Discovery for the management surface: what an administrator picks from, read live from Azure DevOps.

`GET /api/manage/integrations/{account_id}/projects`, `.../projects/{project}/work-item-types`,
`.../work-item-types/{type}/states`, `.../projects/{project}/areas`, `.../iterations` and
`.../users?query=` answer plain JSON lists. Every list is paged the same way: `?top=` (1-1000,
default 100) and `?skip=` (default 0); the answer carries `X-Total-Count`, and a relative
`Link: <?top=..&skip=..>; rel="next"` while more follow. `{project}` is a project id or name,
`{type}` a type name or reference name.

Answers of Azure DevOps are cached in `svc.store.cache` for `TTL` seconds (per integration) and
failures never are. Failures are mapped as for work items: something that does not exist is a 404,
a refused credential a 502, throttling or an outage a 503 with Retry-After.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from shared.adapters.ado_client import AdoClient
from shared.compose import Services
from shared.core import discovery as d
from shared.core.errors import AdoBadRequest, AdoNotFound, NotFound, Unprocessable
from shared.core.keys import check_id
from shared.core.models import Integration
from shared.core.reply import Reply
from shared.flows.workitems import ado_errors

log = logging.getLogger(__name__)

TTL = 300.0


@contextmanager
def lookup_errors(action: str, missing: str) -> Iterator[None]:
    """`ado_errors`, except that an Azure DevOps 404 is a 404 saying what was `missing`."""
    with ado_errors(action):
        try:
            yield
        except AdoNotFound:
            raise NotFound(missing) from None
        except AdoBadRequest as error:
            raise Unprocessable(f"Azure DevOps refused to {action}: {error.message}") from None


class Lookups:
    """Azure DevOps facts of one integration, cached briefly; `fresh=True` reads past the cache (and
    refreshes it). With `cache=False` nothing is read from or written to the cache (install)."""

    def __init__(self, svc: Services, integration: Integration, client: Callable[[], AdoClient] | None = None,
                 *, cache: bool = True) -> None:
        self._svc = svc
        self._account = integration.account_id
        self._client = client or functools.cache(lambda: svc.ado(integration))
        self._cache = cache

    def _cached(self, key: str, fetch: Callable[[AdoClient], Any], fresh: bool = False) -> Any:
        store = self._svc.store.cache
        if self._cache and not fresh:
            hit = store.get(self._account, key)
            if hit is not None:
                return hit
        value = fetch(self._client())
        if self._cache:
            store.put(self._account, key, value, ttl=TTL)
        return value

    def projects(self, *, fresh: bool = False) -> list[dict[str, Any]]:
        with lookup_errors("list projects", "Azure DevOps organization not found"):
            return list(self._cached("disc|projects", lambda c: [d.project(p) for p in c.iter_projects()], fresh))

    def project(self, ref: str, *, fresh: bool = False) -> dict[str, Any] | None:
        """The project with id or name `ref`; a miss in the cached list is checked once more, live."""
        found = d.find_project(self.projects(fresh=fresh), ref)
        if found is None and not fresh and self._cache:
            found = d.find_project(self.projects(fresh=True), ref)
        return found

    def types(self, project: str, *, fresh: bool = False) -> list[dict[str, Any]]:
        """The project's work item types with their states."""
        def fetch(client: AdoClient) -> list[dict[str, Any]]:
            types = [d.work_item_type(t) for t in client.get_work_item_types(project)]
            for item in types:
                if item["states"] is None:  # not in the answer: ask for them
                    raw = client.get_work_item_type_states(project, item["name"])
                    item["states"] = [d.state(s) for s in raw]
            return types

        with lookup_errors("list work item types", f"Azure DevOps project {project} not found"):
            return list(self._cached(f"disc|types|{project.lower()}", fetch, fresh))

    def fields(self, project: str, type_name: str, *, fresh: bool = False) -> list[dict[str, Any]]:
        missing = f"Work item type {type_name} not found in Azure DevOps project {project}"
        with lookup_errors("list work item type fields", missing):
            return list(self._cached(
                f"disc|fields|{project.lower()}|{type_name.lower()}",
                lambda c: [d.field(f) for f in c.get_work_item_type_fields(project, type_name)], fresh))

    def states(self, project: str, type_ref: str) -> list[dict[str, Any]]:
        missing = f"Work item type {type_ref} not found in Azure DevOps project {project}"
        with lookup_errors("list work item type states", missing):
            return list(self._cached(
                f"disc|states|{project.lower()}|{type_ref.lower()}",
                lambda c: [d.state(s) for s in c.get_work_item_type_states(project, type_ref)]))

    def paths(self, project: str, kind: str, *, fresh: bool = False) -> list[dict[str, Any]]:
        """The project's area (`kind` "area") or iteration paths, flattened, parents first."""
        with lookup_errors(f"list {kind} paths", f"Azure DevOps project {project} not found"):
            return list(self._cached(
                f"disc|{kind}s|{project.lower()}",
                lambda c: d.flatten(c.get_classification_tree(project, kind, d.TREE_DEPTH)), fresh))

    def has_path(self, project: str, kind: str, value: str) -> bool:
        """Whether `value` is an area/iteration path of the project (a cached miss is checked live)."""
        if d.has_path(self.paths(project, kind), value):
            return True
        return self._cache and d.has_path(self.paths(project, kind, fresh=True), value)

    def users(self) -> list[dict[str, Any]]:
        with lookup_errors("list users", "Azure DevOps organization not found"):
            return list(self._cached("disc|users", lambda c: [d.user(u) for u in c.iter_graph_users()]))


def active_integration(svc: Services, account_id: str) -> Integration:
    integration = svc.store.integrations.get(check_id(account_id, "account_id"))
    if integration is None or integration.status != "active":
        raise NotFound("Integration not found")
    return integration


def _list(items: list[Any], query: dict[str, str]) -> Reply:
    body, headers = d.paged(items, d.page_params(query), query)
    return Reply(body=body, headers=headers)


# --- route handlers ------------------------------------------------------------------------------


def projects(svc: Services, account_id: str, query: dict[str, str]) -> Reply:
    """`[{"id", "name", "description"}]`, by name."""
    d.page_params(query)
    found = Lookups(svc, active_integration(svc, account_id)).projects()
    return _list(sorted(found, key=lambda p: p["name"].lower()), query)


def work_item_types(svc: Services, account_id: str, project: str, query: dict[str, str]) -> Reply:
    """`[{"name", "reference_name", "description", "color", "is_disabled", "states": [{"name", "category",
    "color"}], "fields": [{"name", "reference_name", "required", "allowed_values", "default_value"}]}]`."""
    check_id(project, "project")
    d.page_params(query)
    lookups = Lookups(svc, active_integration(svc, account_id))
    types = lookups.types(project)
    return _list([{**t, "fields": lookups.fields(project, t["name"])} for t in types], query)


def states(svc: Services, account_id: str, project: str, type_ref: str, query: dict[str, str]) -> Reply:
    """`[{"name", "category", "color"}]` of one work item type, in the process's order."""
    check_id(project, "project")
    check_id(type_ref, "type")
    d.page_params(query)
    return _list(Lookups(svc, active_integration(svc, account_id)).states(project, type_ref), query)


def areas(svc: Services, account_id: str, project: str, query: dict[str, str]) -> Reply:
    """`[{"path", "name", "id", "identifier"}]`, parents first; `path` is the `System.AreaPath` value."""
    return _paths(svc, account_id, project, "area", query)


def iterations(svc: Services, account_id: str, project: str, query: dict[str, str]) -> Reply:
    """`[{"path", "name", "id", "identifier", "start_date", "finish_date"}]`, parents first."""
    return _paths(svc, account_id, project, "iteration", query)


def _paths(svc: Services, account_id: str, project: str, kind: str, query: dict[str, str]) -> Reply:
    check_id(project, "project")
    d.page_params(query)
    return _list(Lookups(svc, active_integration(svc, account_id)).paths(project, kind), query)


def users(svc: Services, account_id: str, query: dict[str, str]) -> Reply:
    """`?query=` (optional, any case) matches display name, e-mail or principal name:
    `[{"display_name", "email", "principal_name", "descriptor", "origin"}]`, by name."""
    text = d.user_query(query)
    d.page_params(query)
    found = Lookups(svc, active_integration(svc, account_id)).users()
    return _list(d.matching_users(found, text), query)
