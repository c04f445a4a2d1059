"""Azure DevOps calls that describe an organization's process: work item types, their fields, and
the area and iteration trees. A mixin of `AdoClient` (it sends through `AdoClient.request`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

# https://learn.microsoft.com/rest/api/azure/devops/wit/work-item-types/list?view=azure-devops-rest-7.1
WORK_ITEM_TYPES = "{project}/_apis/wit/workitemtypes"
# https://learn.microsoft.com/rest/api/azure/devops/wit/work-item-types-field/list?view=azure-devops-rest-7.1
WORK_ITEM_TYPE_FIELDS = "{project}/_apis/wit/workitemtypes/{type}/fields"
# https://learn.microsoft.com/rest/api/azure/devops/wit/classification-nodes/get?view=azure-devops-rest-7.1
CLASSIFICATION_NODES = "{project}/_apis/wit/classificationnodes/{group}"
TREE_GROUPS = {"area": "Areas", "iteration": "Iterations"}


def _path(template: str, **parts: str) -> str:
    return template.format(**{name: quote(value, safe="") for name, value in parts.items()})


def _values(body: Any) -> list[dict[str, Any]]:
    value = body.get("value") if isinstance(body, dict) else None
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


class DiscoveryCalls:
    """Process metadata of one organization (read calls: retried on throttling like every GET)."""

    if TYPE_CHECKING:

        def request(self, method: str, url: str, *, params: dict[str, Any] | None = None) -> Any:
            raise NotImplementedError

    def get_work_item_types(self, project: str) -> list[dict[str, Any]]:
        """The project's work item types, each with its `states` (name, color, category)."""
        return _values(self.request("GET", _path(WORK_ITEM_TYPES, project=project)))

    def get_work_item_type_fields(self, project: str, work_item_type: str) -> list[dict[str, Any]]:
        """A type's fields with `alwaysRequired`, `defaultValue` and `allowedValues`."""
        url = _path(WORK_ITEM_TYPE_FIELDS, project=project, type=work_item_type)
        return _values(self.request("GET", url, params={"$expand": "allowedValues"}))

    def get_classification_tree(self, project: str, kind: str, depth: int) -> dict[str, Any]:
        """The area (`kind` "area") or iteration tree of a project, `depth` levels below its root."""
        url = _path(CLASSIFICATION_NODES, project=project, group=TREE_GROUPS[kind])
        answer = self.request("GET", url, params={"$depth": depth})
        return answer if isinstance(answer, dict) else {}
