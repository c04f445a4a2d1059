"""Work items from the tracker's side, decided without I/O: create bodies, answers and ADO rule errors.

The create body becomes a JSON Patch document (markdown descriptions rendered to HTML with raw HTML
escaped); Azure DevOps rule errors become 422s naming the field. Create:
https://learn.microsoft.com/rest/api/azure/devops/wit/work-items/create
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from shared.core import validate
from shared.core.errors import AdoBadRequest, AdoNotFound, Unprocessable
from shared.core.keys import check_id
from shared.core.models import Link
from shared.core.rendering import markdown_html
from shared.core.webhook import assignee_of

MAX_TITLE = 128
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
# Azure DevOps matches field reference names without regard to case.
RESERVED_BY_LOWER = {name.lower(): name for name in RESERVED_FIELDS}
RULE_ERROR = re.compile(r"TF401320: Rule Error for field ([^.]+)\.")
TREE_ERROR = re.compile(r"TF401347:.*'(System\.AreaPath|System\.IterationPath)'")
TREE_FIELDS = {"System.AreaPath": "area_path", "System.IterationPath": "iteration_path"}
TYPE_NOT_FOUND = ("WorkItemTypeNotFoundException", "VS402323")
MARKER_PREFIX = "ado-sync-"


def marker(account_id: str, org_id: str, group_id: str) -> str:
    """The tag a created work item carries, so a retry finds it instead of creating a second one."""
    digest = hashlib.sha256(f"{account_id}|{org_id}|{group_id}".encode()).hexdigest()[:20]
    return MARKER_PREFIX + digest


def description_html(text: str) -> str:
    """Markdown → HTML; raw HTML in the source is escaped (shown as text), never passed through."""
    return markdown_html(text)


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
        reserved = RESERVED_BY_LOWER.get(name.lower())
        if reserved:
            raise validate.invalid("fields", f"set {name} with `{RESERVED_FIELDS[reserved]}`, not in fields")
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
    if error.type_key in TYPE_NOT_FOUND or "VS402323" in text:
        return Unprocessable("work_item_type: no such work item type in this project", field="work_item_type")
    if isinstance(error, AdoNotFound):
        return Unprocessable("project: no such Azure DevOps project (or no access to it)", field="project")
    return Unprocessable(f"Azure DevOps rejected the work item: {text}")


def with_marker(ops: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    """The create ops with `tag` added to the work item's tags."""
    for op in ops:
        if op.get("path") == "/fields/System.Tags":
            return [*[o for o in ops if o is not op], _add("System.Tags", f"{op['value']}; {tag}")]
    return [*ops, _add("System.Tags", tag)]


def field_values(fields: dict[str, Any]) -> tuple[str | None, str]:
    """The (state, assignee or "") a work item's fields hold, in the form its service hooks report.

    The assignee is the lower-cased e-mail, or on Azure DevOps Server the domain account (`domain\\user`).
    """
    state = fields.get("System.State")
    assigned = fields.get("System.AssignedTo")
    assignee = assignee_of(assigned) if assigned else None
    return (state if isinstance(state, str) else None), assignee or ""
