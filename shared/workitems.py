"""Work items from the tracker's side: create one for a group, link an existing one, search.

Management API handlers (reference sentry-vsts.md §9.1-9.6). Every request is validated, and the
integration, its link to the organization and the group are checked, before any Azure DevOps
call; a group already linked to a work item of the integration is answered with that link instead
of a second work item. ADO failures become answers a user can act on: a rule error (TF401320) is a
422 naming the field, a refused credential a 502, throttling a 503 with Retry-After.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit
from xml.etree.ElementTree import Element

import markdown
from markdown.treeprocessors import Treeprocessor

from shared import deps, store, validate
from shared.ado_client import AdoClient
from shared.core.errors import (
    AdoAuthError,
    AdoBadRequest,
    AdoNotFound,
    Conflict,
    InvalidInput,
    NotFound,
    Unprocessable,
)
from shared.http import Reply
from shared.keys import check_id
from shared.models import GroupState, Integration, Link, OrgLink

log = logging.getLogger(__name__)

MAX_TITLE = 128
TYPES_TTL = 3600.0
PROJECTS_TTL = 900.0
MAX_FIELDS = 100
MAX_QUERY = 1000
STANDARD_TYPE_PREFIX = "Microsoft.VSTS.WorkItemTypes."
SEARCH_FIELD = "externalIssue"
REFERENCE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)+$")
# Fields set from their own body keys; `fields` may not set them a second time.
RESERVED_FIELDS = {
    "System.Title": "title",
    "System.Description": "description",
    "System.History": "description",
    "System.AreaPath": "area_path",
    "System.IterationPath": "iteration_path",
    "System.Tags": "tags",
}
SAFE_SCHEMES = ("http", "https", "mailto", "")
RULE_ERROR = re.compile(r"TF401320: Rule Error for field ([^.]+)\.")
TREE_ERROR = re.compile(r"TF401347:.*'(System\.AreaPath|System\.IterationPath)'")
TREE_FIELDS = {"System.AreaPath": "area_path", "System.IterationPath": "iteration_path"}


# --- pure helpers --------------------------------------------------------------------------------


class _SafeLinks(Treeprocessor):
    """Drop link and image targets whose scheme is not http(s), mailto or relative."""

    def run(self, root: Element) -> None:
        for element in root.iter():
            for attribute in ("href", "src"):
                target = element.get(attribute)
                if target is not None and urlsplit(target.strip()).scheme.lower() not in SAFE_SCHEMES:
                    element.set(attribute, "")


def description_html(text: str) -> str:
    """Markdown → HTML; raw HTML in the source is escaped (shown as text), never passed through."""
    renderer = markdown.Markdown()
    renderer.preprocessors.deregister("html_block")
    renderer.inlinePatterns.deregister("html")
    renderer.treeprocessors.register(_SafeLinks(renderer), "safe_links", 0)
    return renderer.convert(text)


def short_title(title: str) -> str:
    """ADO titles hold 128 characters: a longer one is cut to 125 plus `...`."""
    return title if len(title) <= MAX_TITLE else title[: MAX_TITLE - 3] + "..."


def issue_url(domain_name: str, key: str) -> str:
    base = domain_name if domain_name.endswith("/") else domain_name + "/"
    return f"{base}_workitems/edit/{key}"


def display_name(fields: dict[str, Any], key: str) -> str:
    return f"{fields.get('System.AreaPath') or ''}#{key}"


def issue_view(link: Link) -> dict[str, Any]:
    """The answer of create and link (reference §9.1, plus the work item's URL)."""
    return {
        "key": link.key,
        "title": link.title,
        "description": link.description,
        "url": link.url,
        "metadata": {"display_name": link.display_name},
    }


@dataclass(frozen=True)
class CreateRequest:
    group_id: str
    project: str
    work_item_type: str
    title: str
    description: str
    ops: list[dict[str, Any]]


def create_request(body: dict[str, Any]) -> CreateRequest:
    """Validate a create body and build its JSON Patch document (pure; 4xx naming the field)."""
    group_id = check_id(validate.required_text(body, "group_id"), "group_id")
    project = check_id(validate.required_text(body, "project", max_len=256), "project")
    work_item_type = check_id(validate.required_text(body, "work_item_type", max_len=256), "work_item_type")
    title = short_title(validate.required_text(body, "title", max_len=4000).strip())
    description = validate.text(body, "description", required=False, allow_empty=True) or ""
    area = validate.text(body, "area_path", required=False, max_len=4000)
    iteration = validate.text(body, "iteration_path", required=False, max_len=4000)
    tags = [tag.strip() for tag in validate.text_list(body, "tags", max_len=400)]
    if any(";" in tag for tag in tags):
        raise validate.invalid("tags", "a tag may not contain ';'")
    extra = _custom_fields(body)

    html = description_html(description)
    ops = [_add("System.Title", title), _add("System.Description", html), _add("System.History", html)]
    if area is not None:
        ops.append(_add("System.AreaPath", area))
    if iteration is not None:
        ops.append(_add("System.IterationPath", iteration))
    if tags:
        ops.append(_add("System.Tags", "; ".join(dict.fromkeys(tags))))
    ops += [_add(name, value) for name, value in extra.items()]
    return CreateRequest(group_id, project, work_item_type, title, description, ops)


def _custom_fields(body: dict[str, Any]) -> dict[str, Any]:
    fields = validate.mapping(body, "fields") or {}
    if len(fields) > MAX_FIELDS:
        raise validate.invalid("fields", f"at most {MAX_FIELDS} fields")
    for name, value in fields.items():
        if not REFERENCE_NAME.match(name) or len(name) > 256:
            raise validate.invalid("fields", f"{name!r} is not a field reference name (like Custom.Severity)")
        if name in RESERVED_FIELDS:
            raise validate.invalid("fields", f"set {name} with `{RESERVED_FIELDS[name]}`, not in fields")
        if value is None or not isinstance(value, str | int | float | bool):
            raise validate.invalid("fields", f"{name}: the value must be a string, number or boolean")
        if isinstance(value, str) and len(value) > validate.MAX_TEXT:
            raise validate.invalid("fields", f"{name}: the value is too long")
    return dict(fields)


def _add(field: str, value: Any) -> dict[str, Any]:
    return {"op": "add", "path": f"/fields/{field}", "value": value}


def type_names(categories: list[dict[str, Any]]) -> dict[str, str]:
    """Work item type reference names (and names), lower-cased → type name, from the categories call."""
    names: dict[str, str] = {}
    for category in categories:
        members = [category.get("defaultWorkItemType"), *(category.get("workItemTypes") or [])]
        for member in members:
            if not isinstance(member, dict) or not member.get("name"):
                continue
            name = str(member["name"])
            names[name.lower()] = name
            reference = unquote(str(member.get("url") or "").rstrip("/").rsplit("/", 1)[-1])
            if reference:
                names.setdefault(reference.lower(), name)
    return names


def ado_failure(error: AdoBadRequest | AdoNotFound) -> Unprocessable:
    """What an ADO 400/404 on a create means for the caller: a 422 naming the field when known."""
    text = error.message
    rule = RULE_ERROR.search(text)
    if rule:
        name = rule.group(1).strip()
        return Unprocessable(
            f"{name}: Azure DevOps requires a valid value for field {name} (TF401320). "
            "Pass it in `fields` (by its reference name), or relax the rule in the process.",
            field=name,
        )
    tree = TREE_ERROR.search(text)
    if tree:
        field = TREE_FIELDS[tree.group(1)]
        return Unprocessable(f"{field}: not a valid path of this project (TF401347)", field=field)
    if "VS402323" in text or "WorkItemTypeNotFound" in text:
        return Unprocessable("work_item_type: no such work item type in this project", field="work_item_type")
    if isinstance(error, AdoNotFound):
        return Unprocessable("project: no such Azure DevOps project (or no access to it)", field="project")
    return Unprocessable(f"Azure DevOps rejected the work item: {text}")


@contextmanager
def ado_errors(action: str) -> Iterator[None]:
    """Map ADO failures of a user request to answers the user can act on."""
    try:
        yield
    except (AdoBadRequest, AdoNotFound) as error:
        raise ado_failure(error) from None
    except AdoAuthError as error:
        raise AdoAuthError(
            f"Azure DevOps refused the integration's credential while trying to {action}: re-install the "
            f"integration or renew its token ({error.message})",
            http_status=error.http_status,
        ) from None


# --- lookups -------------------------------------------------------------------------------------


def linked_integration(account_id: str, org_id: str) -> tuple[Integration, OrgLink]:
    """The active integration and its active link to the organization, or NotFound."""
    state = store.read_integration(account_id)
    if state.integration is None or state.integration.status != "active":
        raise NotFound("Integration not found")
    for link in state.links:
        if link.org_id == org_id and link.status == "active":
            return state.integration, link
    raise NotFound("Integration is not linked to this organization")


def _group(org_id: str, group_id: str) -> GroupState:
    state = store.read_group(org_id, group_id)
    if state is None:
        raise NotFound("Group not found")
    return state


def _existing(state: GroupState, account_id: str, key: str | None = None) -> Link | None:
    for link in state.links.values():
        if link.account_id == account_id and (key is None or link.key == key):
            return link
    return None


def work_item_type_name(client: Callable[[], AdoClient], account_id: str, project: str, value: str) -> str:
    """The type name for the create URL: names pass through, reference names are looked up (cached)."""
    if "." not in value:
        return value
    cache_key = f"wit_types|{project.lower()}"
    names = store.cache_get(account_id, cache_key)
    if not isinstance(names, dict) or value.lower() not in names:
        names = type_names(client().get_work_item_type_categories(project))
        store.cache_put(account_id, cache_key, names, ttl=TYPES_TTL)
    found = names.get(value.lower())
    if found:
        return str(found)
    if value.startswith(STANDARD_TYPE_PREFIX):
        return value[len(STANDARD_TYPE_PREFIX):]
    raise Unprocessable("work_item_type: no such work item type in this project", field="work_item_type")


def project_id(client: Callable[[], AdoClient], account_id: str, name: str) -> str | None:
    """The id of the project called `name`: one cache read when warm, else one (paged) listing."""
    cache_key = f"project|{name.lower()}"
    cached = store.cache_get(account_id, cache_key)
    if isinstance(cached, str):
        return cached
    found: str | None = None
    entries: dict[str, Any] = {}
    for project in client().iter_projects():
        if project.get("name") and project.get("id"):
            entries[f"project|{str(project['name']).lower()}"] = str(project["id"])
            if str(project["name"]).lower() == name.lower():
                found = str(project["id"])
    store.cache_put_many(account_id, entries, ttl=PROJECTS_TTL)
    return found



# --- handlers ------------------------------------------------------------------------------------


def create_issue(account_id: str, org_id: str, body: dict[str, Any]) -> Reply:
    """Create a work item for a group and link it, or answer the group's existing link (both 200)."""
    check_id(account_id, "account_id")
    check_id(org_id, "org_id")
    request = create_request(body)
    integration, _ = linked_integration(account_id, org_id)
    existing = _existing(_group(org_id, request.group_id), account_id)
    if existing is not None:
        log.info("workitems.create.already_linked", extra={"account_id": account_id, "key": existing.key})
        return Reply(body=issue_view(existing))
    creation = store.begin_creation(account_id, org_id, request.group_id)
    if creation is None:
        raise Conflict("A work item is being created for this group right now; retry in a moment.")
    finished = _existing(_group(org_id, request.group_id), account_id)  # a create that ended meanwhile
    if finished is not None:
        store.end_creation(creation)
        return Reply(body=issue_view(finished))
    client = functools.cache(lambda: deps.ado_client(integration))
    try:
        with ado_errors("create a work item"):
            link = _resumed_link(client, integration, org_id, request.group_id, creation.key)
            if link is None:
                type_name = work_item_type_name(client, account_id, request.project, request.work_item_type)
                item = client().create_work_item(request.project, type_name, request.ops)
                store.record_creation(creation, str(item["id"]))
                fields = item.get("fields") or {}
                key = str(item["id"])
                link = Link(
                    org_id=org_id,
                    group_id=request.group_id,
                    account_id=account_id,
                    key=key,
                    url=issue_url(integration.domain_name, key),
                    title=request.title,
                    description=request.description,
                    display_name=display_name(fields, key),
                    project_id=request.project,
                    work_item_type=str(fields.get("System.WorkItemType") or type_name),
                    state_rev=int(item.get("rev") or 0),
                    assignee_rev=int(item.get("rev") or 0),
                )
    except BaseException:
        if creation.key is None:
            store.end_creation(creation)
        raise
    key = link.key
    store.add_link(link)
    store.end_creation(creation)
    log.info("workitems.created", extra={"account_id": account_id, "key": key})
    return Reply(body=issue_view(link))


def _resumed_link(client: Callable[[], AdoClient], integration: Integration, org_id: str, group_id: str,
                  key: str | None) -> Link | None:
    """The link to a work item an earlier attempt created but could not link (None: create one).

    Built from the work item itself, not from this request's body, which may differ.
    """
    if key is None:
        return None
    try:
        item = client().get_work_item(key)
    except AdoNotFound:
        return None  # deleted in Azure DevOps meanwhile: create a new one
    return _link_from_item(client, integration, org_id, group_id, item)


def link_issue(account_id: str, org_id: str, body: dict[str, Any]) -> Reply:
    """Link a group to an existing work item (by id)."""
    check_id(account_id, "account_id")
    check_id(org_id, "org_id")
    group_id = check_id(validate.required_text(body, "group_id"), "group_id")
    key = body.get("key")
    key = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
    if not isinstance(key, str) or not key.strip().isdigit() or len(key.strip()) > 12:
        raise validate.invalid("key", "must be a work item id (a number)")
    key = str(int(key))
    integration, _ = linked_integration(account_id, org_id)
    _group(org_id, group_id)
    client = functools.cache(lambda: deps.ado_client(integration))
    try:
        with ado_errors("read the work item"):
            item = client().get_work_item(key)
    except Unprocessable:
        raise Unprocessable(f"key: work item {key} does not exist in Azure DevOps, or the integration cannot "
                            "read it", field="key") from None
    with ado_errors("list projects"):
        link = _link_from_item(client, integration, org_id, group_id, item)
    store.add_link(link)
    log.info("workitems.linked", extra={"account_id": account_id, "key": key})
    return Reply(body=issue_view(link))


def _link_from_item(client: Callable[[], AdoClient], integration: Integration, org_id: str, group_id: str,
                    item: dict[str, Any]) -> Link:
    """A link described by the work item itself (its project id resolved through the cached project list)."""
    fields = item.get("fields") or {}
    key = str(item.get("id"))
    return Link(
        org_id=org_id,
        group_id=group_id,
        account_id=integration.account_id,
        key=key,
        url=issue_url(integration.domain_name, key),
        title=str(fields.get("System.Title") or ""),
        description=str(fields.get("System.Description") or ""),
        display_name=display_name(fields, key),
        project_id=project_id(client, integration.account_id, str(fields.get("System.TeamProject") or "")),
        work_item_type=str(fields.get("System.WorkItemType") or "") or None,
        state_rev=int(item.get("rev") or 0),
        assignee_rev=int(item.get("rev") or 0),
    )


def search(account_id: str, params: dict[str, str]) -> Reply:
    """`?field=externalIssue&query=…` → `[{"label": "(<id>) <title>", "value": "<id>"}]`."""
    check_id(account_id, "account_id")
    field = (params.get("field") or "").strip()
    query = (params.get("query") or "").strip()
    if not field or not query:
        name = "field" if not field else "query"
        raise InvalidInput(f"{name} is required", field=name)
    if field != SEARCH_FIELD:
        raise InvalidInput("Invalid field", field="field")
    if len(query) > MAX_QUERY:
        raise InvalidInput(f"query is longer than {MAX_QUERY} characters", field="query")
    integration = store.get_integration(account_id)
    if integration is None or integration.status != "active":
        raise NotFound("Integration not found")
    with ado_errors("search work items"):
        results = deps.ado_client(integration).search_work_items(query)
    choices = []
    for result in results:
        fields = result.get("fields") or {}
        item_id = str(fields.get("system.id") or "")
        if item_id:
            choices.append({"label": f"({item_id}) {fields.get('system.title') or ''}", "value": item_id})
    return Reply(body=choices)
