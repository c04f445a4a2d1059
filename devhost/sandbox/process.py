"""The sandbox's process template: work item types, their fields and rules, and classification trees.

Pure: data, the rules a work item must satisfy (ADO's TF401320 rule errors and TF401347 tree errors),
and the JSON of the discovery endpoints (types, fields with allowed values, area/iteration nodes).
https://learn.microsoft.com/rest/api/azure/devops/wit/work-item-types/list
https://learn.microsoft.com/rest/api/azure/devops/wit/work-item-types-field/list
https://learn.microsoft.com/rest/api/azure/devops/wit/classification-nodes/get-classification-nodes
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from devhost.sandbox.errors import ApiError
from devhost.sandbox.model import WORK_ITEM_TYPES, Node, Project, field_display_name

# name -> (description, color); colors of the Agile process
TYPE_INFO: dict[str, tuple[str, str]] = {
    "Bug": ("Describes a divergence between required and actual behavior, and tracks the work done to correct "
            "the defect and verify the correction.", "CC293D"),
    "Issue": ("Tracks an obstacle to progress.", "B4009E"),
    "Task": ("Tracks work that needs to be done.", "F2CB1D"),
    "User Story": ("Tracks an activity the user will be able to perform with the product.", "009CCC"),
}
SEVERITIES = ["1 - Critical", "2 - High", "3 - Medium", "4 - Low"]
DEFAULT_AREAS = ("Team A", "Team B")
DEFAULT_ITERATIONS = (
    ("Sprint 7", "2026-11-30T00:00:00Z", "2026-12-11T00:00:00Z"),
    ("Sprint 8", "2026-12-14T00:00:00Z", "2026-12-25T00:00:00Z"),
)


@dataclass(frozen=True)
class FieldRule:
    reference: str
    always_required: bool = False
    allowed: tuple[Any, ...] = ()
    default: Any = None
    help_text: str | None = None


_COMMON = (
    FieldRule("System.Id"),
    FieldRule("System.Title", always_required=True),
    FieldRule("System.State", always_required=True),
    FieldRule("System.Reason"),
    FieldRule("System.AssignedTo"),
    FieldRule("System.AreaPath", help_text="The area of the product with which this work item is associated"),
    FieldRule("System.IterationPath", help_text="The iteration within which this work item will be done"),
    FieldRule("System.Description"),
    FieldRule("System.History", help_text="Discussion thread plus automatic record of changes"),
    FieldRule("System.Tags"),
    FieldRule("System.CreatedDate"),
    FieldRule("System.CreatedBy"),
    FieldRule("System.ChangedDate"),
    FieldRule("System.ChangedBy"),
    FieldRule("System.CommentCount"),
    FieldRule("Microsoft.VSTS.Common.Priority", allowed=(1, 2, 3, 4), default=2),
)
_BY_TYPE: dict[str, tuple[FieldRule, ...]] = {
    "Bug": (
        FieldRule("Microsoft.VSTS.TCM.ReproSteps"),
        FieldRule("Microsoft.VSTS.Common.Severity", allowed=tuple(SEVERITIES), default="3 - Medium"),
    ),
}


def field_rules(
    wtype: str, states: list[str], required: list[str], allowed: dict[str, list[Any]]
) -> list[FieldRule]:
    """The type's fields: template rules, plus the project's required fields and picklists. A field the
    project makes required has no default (create fills only the state and priority, so a default
    would promise a value the create does not give)."""
    rules: dict[str, FieldRule] = {}
    for rule in (*_COMMON, *_BY_TYPE.get(wtype, ())):
        if rule.reference == "System.State":
            rule = FieldRule(rule.reference, True, tuple(states), states[0] if states else None)
        rules[rule.reference] = rule
    for name in {*required, *allowed}:
        base = rules.get(name, FieldRule(name))
        values = tuple(allowed.get(name, base.allowed))
        default = None if name in required else base.default
        rules[name] = FieldRule(name, base.always_required or name in required, values, default, base.help_text)
    return list(rules.values())


def validate(rules: list[FieldRule], proj: Project, fields: dict[str, Any], *, item_id: int) -> None:
    """ADO's checks on save: required fields, allowed values, and area/iteration paths that exist."""
    for rule in rules:
        value = fields.get(rule.reference)
        empty = value is None or (isinstance(value, str) and not value.strip())
        if rule.always_required and empty:
            raise _rule_error(rule.reference, "Required, HasValues, LimitedToValues, AllowsOldValue, InvalidEmpty.")
        if rule.allowed and not empty and not _allowed(value, rule.allowed):
            raise _rule_error(
                rule.reference,
                "ValidValues, HasValues, LimitedToValues, AllowsOldValue, InvalidUnknown. "
                f"The value '{value}' is not in the list of supported values.",
            )
    for name, root in (("System.AreaPath", proj.areas), ("System.IterationPath", proj.iterations)):
        node = find(root, str(fields.get(name) or ""))
        if node is None:
            raise ApiError(
                400,
                f"TF401347: Invalid tree name given for work item {item_id}, field '{name}'.",
                "WorkItemFieldInvalidTreeNameException",
            )
        fields[name] = node_path(root, node)


def _allowed(value: Any, allowed: tuple[Any, ...]) -> bool:
    return any(value == a or (isinstance(a, str) and isinstance(value, str) and a.lower() == value.lower())
               or (isinstance(a, int) and str(value) == str(a)) for a in allowed)


def _rule_error(reference: str, codes: str) -> ApiError:
    return ApiError(
        400,
        f"TF401320: Rule Error for field {field_display_name(reference)}. Error code: {codes}",
        "RuleValidationException",
    )


# -- classification trees ------------------------------------------------------------------------


def new_tree(name: str, kind: str) -> Node:
    return Node(name=name, structure=kind, identifier=str(uuid.uuid4()))


def seed_trees(proj: Project) -> None:
    proj.areas = new_tree(proj.name, "area")
    proj.iterations = new_tree(proj.name, "iteration")
    for area in DEFAULT_AREAS:
        add_node(proj.areas, area)
    for name, start, finish in DEFAULT_ITERATIONS:
        add_node(proj.iterations, name, {"startDate": start, "finishDate": finish})


def add_node(root: Node, path: str, attributes: dict[str, Any] | None = None) -> Node:
    """Add `path` (relative to the project, `A\\B`), creating missing parents."""
    node = root
    for part in [p for p in path.split("\\") if p]:
        child = next((c for c in node.children if c.name.lower() == part.lower()), None)
        if child is None:
            child = Node(name=part, structure=root.structure, identifier=str(uuid.uuid4()))
            node.children.append(child)
        node = child
    if attributes:
        node.attributes = dict(attributes)
    return node


def find(root: Node, path: str) -> Node | None:
    """The node a work item path (`Project\\A\\B`) names, or None."""
    parts = [p for p in path.split("\\") if p]
    if not parts or parts[0].lower() != root.name.lower():
        return None
    node: Node | None = root
    for part in parts[1:]:
        node = next((c for c in node.children if c.name.lower() == part.lower()), None) if node else None
    return node


def node_path(root: Node, node: Node) -> str:
    """The canonical work item field value for a node: `Project\\A\\B`."""
    trail = _trail(root, node) or []
    return "\\".join([root.name, *[n.name for n in trail]])


def _trail(node: Node, target: Node) -> list[Node] | None:
    if node is target:
        return []
    for child in node.children:
        found = _trail(child, target)
        if found is not None:
            return [child, *found]
    return None


def render_node(instance: str, proj: Project, root: Node, node: Node, depth: int) -> dict[str, Any]:
    """A classification node: `path` is `\\Project\\Area\\...` (the structure's name), unlike field values."""
    group = "Areas" if root.structure == "area" else "Iterations"
    trail = [n.name for n in (_trail(root, node) or [])]
    url = f"{instance}{proj.id}/_apis/wit/classificationNodes/{group}"
    if trail:
        url += "/" + "/".join(quote(t) for t in trail)
    body: dict[str, Any] = {
        "id": node.id,
        "identifier": node.identifier,
        "name": node.name,
        "structureType": root.structure,
        "hasChildren": bool(node.children),
        "path": "\\" + "\\".join([proj.name, "Area" if root.structure == "area" else "Iteration", *trail]),
        "url": url,
        "_links": {"self": {"href": url}},
    }
    if node.attributes:
        body["attributes"] = dict(node.attributes)
    if depth > 0 and node.children:
        body["children"] = [render_node(instance, proj, root, c, depth - 1) for c in node.children]
    return body


def render_type(instance: str, proj: Project, wtype: str, states: list[dict[str, str]]) -> dict[str, Any]:
    reference = WORK_ITEM_TYPES[wtype]
    description, color = TYPE_INFO.get(wtype, ("", "B2B2B2"))
    url = f"{instance}{proj.id}/_apis/wit/workItemTypes/{quote(wtype)}"
    icon = f"{instance}_apis/wit/workItemIcons/icon_sandbox?color={color}&v=2"
    return {
        "name": wtype,
        "referenceName": reference,
        "description": description,
        "color": color,
        "icon": {"id": "icon_sandbox", "url": icon},
        "isDisabled": False,
        "states": states,
        "url": url,
    }


def render_field(instance: str, rule: FieldRule, expand: str) -> dict[str, Any]:
    """`workitemtypes/{type}/fields` entry; `allowedValues` with `$expand=allowedValues` (or `all`)."""
    body: dict[str, Any] = {
        "alwaysRequired": rule.always_required,
        "defaultValue": rule.default,
        "referenceName": rule.reference,
        "name": _field_name(rule.reference),
        "url": f"{instance}_apis/wit/fields/{rule.reference}",
    }
    if rule.help_text:
        body["helpText"] = rule.help_text
    if expand in ("allowedvalues", "all"):
        body["allowedValues"] = list(rule.allowed)
    if expand in ("dependentfields", "all"):
        body["dependentFields"] = []
    return body


def _field_name(reference: str) -> str:
    return {"System.Id": "ID", "System.CreatedDate": "Created Date", "System.ChangedDate": "Changed Date",
            "System.CreatedBy": "Created By", "System.ChangedBy": "Changed By",
            "System.CommentCount": "Comment Count"}.get(reference, field_display_name(reference))
