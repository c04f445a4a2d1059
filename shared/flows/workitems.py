"""Work items from the tracker's side: create one for a group, link an existing one, search.

Every request is validated, and the integration, its link to the organization and the group are
checked, before any Azure DevOps call; a group already linked to a work item of the integration
is answered with that link instead of a second work item. ADO failures become answers a user can
act on: a rule error (TF401320) is a 422 naming the field, a refused credential a 502, throttling
a 503 with Retry-After.

A create's missing project, type, paths, tags and fields come from the organization link's
`project_issue_defaults` for the group's tracker project and from the last choice made there
(`shared.core.defaults`); each create remembers its project and type. `shared.flows.preflight`
answers the dry run of a create.

Creating is safe to retry: the group's creation claim is marked `attempted` before Azure DevOps is
asked, the work item carries a marker tag naming the group, and the id is kept as soon as it is
known. A retry after an attempt whose outcome is unknown (a timeout, a storage failure after the
create) looks for the marker before creating, so a group never gets two work items.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from shared.adapters.ado_client import AdoClient
from shared.adapters.cache import CacheStore
from shared.compose import Services
from shared.core import defaults, validate
from shared.core import workitems as wi
from shared.core.errors import (
    AdoAuthError,
    AdoBadRequest,
    AdoError,
    AdoNotFound,
    BundleError,
    Conflict,
    InvalidInput,
    NotFound,
    Unprocessable,
)
from shared.core.keys import check_id
from shared.core.models import Creation, GroupChange, GroupState, Integration, Link, OrgLink
from shared.core.reply import Reply
from shared.flows import events

log = logging.getLogger(__name__)

TYPES_TTL = 3600.0
PROJECTS_TTL = 900.0
CREATION_LEASE = 300.0  # longer than a create with all its lookups and retries can take
Client = Callable[[], AdoClient]


@contextmanager
def ado_errors(action: str) -> Iterator[None]:
    """Map ADO failures of a user request to answers the user can act on."""
    try:
        yield
    except (AdoBadRequest, AdoNotFound) as error:
        raise wi.ado_failure(error) from None
    except AdoAuthError as error:
        raise AdoAuthError(
            f"Azure DevOps refused the integration's credential while trying to {action}: re-install the "
            f"integration or renew its token ({error.message})",
            http_status=error.http_status,
        ) from None


# --- lookups -------------------------------------------------------------------------------------


def linked_integration(svc: Services, account_id: str, org_id: str) -> tuple[Integration, OrgLink]:
    """The active integration and its active link to the organization, or NotFound."""
    state = svc.store.integrations.read(account_id)
    if state.integration is None or state.integration.status != "active":
        raise NotFound("Integration not found")
    link = state.org_link(org_id)
    if link is None or link.status != "active":
        raise NotFound("Integration is not linked to this organization")
    return state.integration, link


def _group(svc: Services, org_id: str, group_id: str) -> GroupState:
    state = svc.store.groups.read(org_id, group_id)
    if state is None:
        raise NotFound("Group not found")
    return state


def _existing(state: GroupState, account_id: str) -> Link | None:
    return next((link for link in state.links.values() if link.account_id == account_id), None)


def work_item_type_name(client: Client, cache: CacheStore, account_id: str, project: str, value: str) -> str:
    """The type name for the create URL: names pass through, reference names are looked up (cached)."""
    if "." not in value:
        return value
    cache_key = f"wit_types|{project.lower()}"
    names = cache.get(account_id, cache_key)
    if not isinstance(names, dict) or value.lower() not in names:
        names = wi.type_names(client().get_work_item_type_categories(project))
        cache.put(account_id, cache_key, names, ttl=TYPES_TTL)
    found = names.get(value.lower())
    if found:
        return str(found)
    if value.startswith(wi.STANDARD_TYPE_PREFIX):
        return value[len(wi.STANDARD_TYPE_PREFIX):]
    raise Unprocessable("work_item_type: no such work item type in this project", field="work_item_type")


def project_id(client: Client, cache: CacheStore, account_id: str, name: str) -> str | None:
    """The id of the project called `name`: one cache read when warm, else one (paged) listing."""
    cached = cache.get(account_id, f"project|{name.lower()}")
    if isinstance(cached, str):
        return cached
    found: str | None = None
    entries: dict[str, Any] = {}
    for project in client().iter_projects():
        if project.get("name") and project.get("id"):
            entries[f"project|{str(project['name']).lower()}"] = str(project["id"])
            if str(project["name"]).lower() == name.lower():
                found = str(project["id"])
    cache.put_many(account_id, entries, ttl=PROJECTS_TTL)
    return found


# --- create --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """A create request with its records read and its missing parts filled from the defaults."""

    integration: Integration
    state: GroupState
    body: dict[str, Any]  # the request body, defaults applied
    configured: dict[str, Any] | None  # the configured defaults of the group's tracker project

    @property
    def existing(self) -> Link | None:
        return _existing(self.state, self.integration.account_id)


def prepare(svc: Services, account_id: str, org_id: str, body: dict[str, Any]) -> Prepared:
    """Check what the body gives (before any read), read the integration, its link and the group, and
    fill the body's missing parts from `project_issue_defaults` and the last choice (`core.defaults`)."""
    check_id(account_id, "account_id")
    check_id(org_id, "org_id")
    group_id = check_id(validate.required_text(body, "group_id"), "group_id")
    wi.create_request(defaults.with_placeholders(body))
    integration, org_link = linked_integration(svc, account_id, org_id)
    state = _group(svc, org_id, group_id)
    tracker_project = state.group.project_id
    configured = (org_link.config.get("project_issue_defaults") or {}).get(tracker_project)
    remembered = svc.store.choices.get(account_id, org_id, tracker_project)
    return Prepared(integration, state, defaults.apply(body, configured, remembered), configured)


def create_issue(svc: Services, account_id: str, org_id: str, body: dict[str, Any]) -> Reply:
    """Create a work item for a group and link it, or answer the group's existing link (both 200)."""
    plan = prepare(svc, account_id, org_id, body)
    integration, state = plan.integration, plan.state
    existing = plan.existing
    if existing is not None:
        log.info("workitems.create.already_linked", extra={"account_id": account_id, "key": existing.key})
        return Reply(body=wi.issue_view(existing))
    request = wi.create_request(plan.body)
    claim, state = _claim(svc, state, account_id)
    if claim is None:  # a create that ended meanwhile linked the group
        linked = _existing(state, account_id)
        assert linked is not None
        return Reply(body=wi.issue_view(linked))
    client = functools.cache(lambda: svc.ado(integration))
    tag = wi.marker(account_id, org_id, request.group_id)
    with ado_errors("create a work item"):
        link = _resumed_link(svc, client, integration, state, claim, tag)
        if link is None:
            link = _create(svc, client, integration, state, claim, request, tag)
    svc.store.groups.add_link(link, new_work_item=True)  # also ends the claim
    events.notify(svc, org_id, request.group_id)
    _remember(svc, plan, request)
    log.info("workitems.created", extra={"account_id": account_id, "key": link.key})
    return Reply(body=wi.issue_view(link))


def _remember(svc: Services, plan: Prepared, request: wi.CreateRequest) -> None:
    """Keep the project and type used for the group's tracker project; the create stands if this fails."""
    group = plan.state.group
    try:
        svc.store.choices.remember(plan.integration.account_id, group.org_id, group.project_id,
                                   defaults.choice(request, plan.configured))
    except BundleError as error:
        log.warning("workitems.choice_not_kept", extra={"account_id": plan.integration.account_id,
                                                         "error": type(error).__name__})


def _claim(svc: Services, state: GroupState, account_id: str) -> tuple[Creation | None, GroupState]:
    """Take the group's creation claim for this integration (None: the group got linked meanwhile);
    409 while another request holds a fresh claim."""
    now = svc.clock()
    held: list[Creation] = []

    def decide(current: GroupState | None) -> GroupChange:
        held.clear()
        assert current is not None
        if _existing(current, account_id) is not None:
            return GroupChange()
        old = current.creations.get(account_id)
        if old is not None and old.key is None and now - old.started < CREATION_LEASE:
            raise Conflict("A work item is being created for this group right now; retry in a moment.")
        claim = replace(old, started=now) if old is not None else Creation(account_id=account_id, started=now)
        held.append(claim)
        return GroupChange(creations=[claim])

    new = svc.store.groups.change(state.group.org_id, state.group.group_id, decide, known=state)
    assert new is not None
    return (held[0] if held else None), new


def _resumed_link(svc: Services, client: Client, integration: Integration, state: GroupState,
                  claim: Creation, tag: str) -> Link | None:
    """The work item an earlier attempt created (by its recorded id, else by its marker), or None."""
    key = claim.key
    if key is None and claim.attempted:
        ids = client().query_ids(
            f"SELECT [System.Id] FROM WorkItems WHERE [System.Tags] CONTAINS '{tag}' ORDER BY [System.Id]")
        key = str(ids[0]) if ids else None
        log.info("workitems.create.marker_lookup", extra={"account_id": integration.account_id, "found": bool(key)})
    if key is None:
        return None
    try:
        item = client().get_work_item(key)
    except AdoNotFound:
        return None  # deleted in Azure DevOps meanwhile: create a new one
    return link_from_item(svc, client, integration, state.group.org_id, state.group.group_id, item)


def _create(svc: Services, client: Client, integration: Integration, state: GroupState, claim: Creation,
            request: wi.CreateRequest, tag: str) -> Link:
    account_id, org_id, group_id = integration.account_id, state.group.org_id, request.group_id
    groups = svc.store.groups
    type_name = work_item_type_name(client, svc.store.cache, account_id, request.project, request.work_item_type)
    attempted = replace(claim, attempted=True)
    groups.change(org_id, group_id, lambda _: GroupChange(creations=[attempted]), known=state)
    try:
        item = client().create_work_item(request.project, type_name, wi.with_marker(request.ops, tag))
    except AdoError:
        # Azure DevOps refused: nothing was created, so the claim can go.
        groups.change(org_id, group_id, lambda _: GroupChange(ended_creations=[account_id]))
        raise
    except BaseException:
        # The outcome is unknown: the claim stays `attempted` and expires at once, so a retry looks
        # for the marker right away instead of creating a second work item.
        groups.change(org_id, group_id, lambda _: GroupChange(creations=[replace(attempted, started=0.0)]))
        raise
    key = str(item["id"])
    groups.change(org_id, group_id, lambda _: GroupChange(creations=[replace(attempted, key=key)]))
    fields = item.get("fields") or {}
    state_value, assignee_value = wi.field_values(fields)
    rev = int(item.get("rev") or 0)
    return Link(
        org_id=org_id, group_id=group_id, account_id=account_id, key=key,
        url=wi.issue_url(integration.domain_name, key), title=request.title, description=request.description,
        display_name=wi.display_name(fields, key), project_id=request.project,
        work_item_type=str(fields.get("System.WorkItemType") or type_name),
        state_rev=rev, assignee_rev=rev, state_value=state_value, assignee_value=assignee_value,
    )


# --- link and search -----------------------------------------------------------------------------


def link_issue(svc: Services, account_id: str, org_id: str, body: dict[str, Any]) -> Reply:
    """Link a group to an existing work item (by id)."""
    check_id(account_id, "account_id")
    check_id(org_id, "org_id")
    group_id = check_id(validate.required_text(body, "group_id"), "group_id")
    key = body.get("key")
    key = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
    if not isinstance(key, str) or not validate.is_number(key.strip()) or len(key.strip()) > 12:
        raise validate.invalid("key", "must be a work item id (a number)")
    key = str(int(key))
    integration, _ = linked_integration(svc, account_id, org_id)
    _group(svc, org_id, group_id)
    client = functools.cache(lambda: svc.ado(integration))
    try:
        with ado_errors("read the work item"):
            item = client().get_work_item(key)
    except Unprocessable:
        raise Unprocessable(f"key: work item {key} does not exist in Azure DevOps, or the integration cannot "
                            "read it", field="key") from None
    with ado_errors("list projects"):
        link = link_from_item(svc, client, integration, org_id, group_id, item)
    svc.store.groups.add_link(link)
    events.notify(svc, org_id, group_id)
    log.info("workitems.linked", extra={"account_id": account_id, "key": key})
    return Reply(body=wi.issue_view(link))


def link_from_item(svc: Services, client: Client, integration: Integration, org_id: str, group_id: str,
                   item: dict[str, Any]) -> Link:
    """A link described by the work item itself (its project id resolved through the cached project list)."""
    fields = item.get("fields") or {}
    key = str(item.get("id"))
    state_value, assignee_value = wi.field_values(fields)
    rev = int(item.get("rev") or 0)
    return Link(
        org_id=org_id,
        group_id=group_id,
        account_id=integration.account_id,
        key=key,
        url=wi.issue_url(integration.domain_name, key),
        title=str(fields.get("System.Title") or ""),
        description=str(fields.get("System.Description") or ""),
        display_name=wi.display_name(fields, key),
        project_id=project_id(client, svc.store.cache, integration.account_id,
                              str(fields.get("System.TeamProject") or "")),
        work_item_type=str(fields.get("System.WorkItemType") or "") or None,
        state_rev=rev,
        assignee_rev=rev,
        state_value=state_value,
        assignee_value=assignee_value,
    )


def search(svc: Services, account_id: str, params: dict[str, str]) -> Reply:
    """`?field=externalIssue&query=…` → `[{"label": "(<id>) <title>", "value": "<id>"}]`."""
    check_id(account_id, "account_id")
    field = (params.get("field") or "").strip()
    query = (params.get("query") or "").strip()
    if not field or not query:
        name = "field" if not field else "query"
        raise InvalidInput(f"{name} is required", field=name)
    if field != wi.SEARCH_FIELD:
        raise InvalidInput("Invalid field", field="field")
    if len(query) > wi.MAX_QUERY:
        raise InvalidInput(f"query is longer than {wi.MAX_QUERY} characters", field="query")
    integration = svc.store.integrations.get(account_id)
    if integration is None or integration.status != "active":
        raise NotFound("Integration not found")
    with ado_errors("search work items"):
        results = svc.ado(integration).search_work_items(query)
    choices = []
    for result in results:
        fields = result.get("fields") or {}
        item_id = str(fields.get("system.id") or "")
        if item_id:
            choices.append({"label": f"({item_id}) {fields.get('system.title') or ''}", "value": item_id})
    return Reply(body=choices)
