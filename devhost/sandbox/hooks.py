"""Service-hook subscription rules of the sandbox: validation, query filters, event filters, delivery policy.

Pure: works on the records in `model.py`; `state.py` calls it under its lock. Policy facts come from
https://learn.microsoft.com/rest/api/azure/devops/hooks/subscriptions and
https://learn.microsoft.com/azure/devops/service-hooks/troubleshoot (retries, probation).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from devhost.sandbox.errors import ApiError
from devhost.sandbox.model import ACTIVE_STATUSES, EVENT_TYPES, Org, Subscription, WorkItem, now_iso

# https://learn.microsoft.com/azure/devops/service-hooks/services/webhooks
_LENGTH_LIMITED = ("basicAuthUsername", "basicAuthPassword")


def _bad(message: str) -> ApiError:
    return ApiError(400, message, "SubscriptionInputException")


def new_subscription(org: Org, body: Any, *, instance: str, creator: dict[str, Any]) -> Subscription:
    """Validate a create body (like `POST _apis/hooks/subscriptions`) and build the stored record."""
    if not isinstance(body, dict):
        raise _bad("The subscription is required.")
    if body.get("publisherId") != "tfs":
        raise ApiError(400, f"Publisher '{body.get('publisherId')}' was not found.", "PublisherNotFoundException")
    event_type = body.get("eventType")
    if event_type not in EVENT_TYPES:
        raise ApiError(400, f"Event type '{event_type}' is not supported by publisher 'tfs'.", "EventTypeException")
    if body.get("consumerId") != "webHooks":
        raise ApiError(400, f"Consumer '{body.get('consumerId')}' was not found.", "ConsumerNotFoundException")
    if body.get("consumerActionId") != "httpRequest":
        raise _bad(f"Consumer action '{body.get('consumerActionId')}' was not found for consumer 'webHooks'.")
    publisher_inputs = _string_inputs(body.get("publisherInputs"), "publisherInputs")
    consumer_inputs = _string_inputs(body.get("consumerInputs"), "consumerInputs")
    url = urlsplit(consumer_inputs.get("url", ""))
    if url.scheme not in ("http", "https") or not url.netloc:
        raise _bad("The value for consumer input 'url' must be an absolute http or https URL.")
    for key in _LENGTH_LIMITED:
        value = consumer_inputs.get(key, "")
        if value and (len(value) > 256 or any(c.isspace() for c in value)):
            raise _bad(f"The value for consumer input '{key}' must be 1-256 characters without whitespace.")
    pattern = publisher_inputs.get("commentPattern", "")
    if pattern and (len(pattern) > 1024 or any(c in pattern for c in "&<>'\"")):
        raise _bad("The value for publisher input 'commentPattern' must be 1-1024 characters without & < > ' \".")
    project_id = publisher_inputs.get("projectId", "")
    if project_id and org.project(project_id) is None:
        raise _bad(f"The project '{project_id}' does not exist.")
    sub_id = str(uuid.uuid4())
    now = now_iso()
    publisher_inputs.update({"hostId": org.account_id, "tfsSubscriptionId": str(uuid.uuid4())})
    data: dict[str, Any] = {
        "id": sub_id,
        "url": f"{instance}_apis/hooks/subscriptions/{sub_id}",
        "status": "enabled",
        "publisherId": "tfs",
        "eventType": event_type,
        "resourceVersion": str(body.get("resourceVersion") or "1.0"),
        "eventDescription": f"Any {event_type}",
        "consumerId": "webHooks",
        "consumerActionId": "httpRequest",
        "actionDescription": f"To host {url.hostname}",
        "publisherInputs": publisher_inputs,
        "consumerInputs": consumer_inputs,
        "createdBy": creator,
        "modifiedBy": creator,
        "createdDate": now,
        "modifiedDate": now,
        "_links": {"self": {"href": f"{instance}_apis/hooks/subscriptions/{sub_id}"}},
    }
    return Subscription(data=data)


def replace(sub: Subscription, body: Any) -> None:
    """`PUT subscriptions/{id}`: new inputs; a system-disabled subscription stays disabled (Sentry's note)."""
    if not isinstance(body, dict):
        raise _bad("The subscription is required.")
    consumer = _string_inputs(body.get("consumerInputs", sub.data["consumerInputs"]), "consumerInputs")
    if consumer.get("basicAuthPassword") == "********":
        consumer["basicAuthPassword"] = sub.data["consumerInputs"].get("basicAuthPassword", "")
    publisher = _string_inputs(body.get("publisherInputs", sub.data["publisherInputs"]), "publisherInputs")
    sub.data["consumerInputs"] = consumer
    sub.data["publisherInputs"] = {**publisher, "hostId": sub.data["publisherInputs"].get("hostId", "")}
    wanted = body.get("status")
    if wanted in ("enabled", "disabledByUser") and sub.data["status"] != "disabledBySystem":
        sub.data["status"] = wanted
        sub.failures = 0
    sub.data["modifiedDate"] = now_iso()


def _string_inputs(value: Any, name: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"'{name}' must be an object of string values.")
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def query_matches(sub: Subscription, query: dict[str, Any]) -> bool:
    """`POST _apis/hooks/subscriptionsquery` semantics for one subscription."""
    data = sub.data
    for key in ("publisherId", "eventType", "consumerId", "consumerActionId"):
        if query.get(key) and query[key] != data.get(key):
            return False
    for filters_key, inputs_key in (
        ("publisherInputFilters", "publisherInputs"),
        ("consumerInputFilters", "consumerInputs"),
    ):
        inputs = data.get(inputs_key) or {}
        for group in query.get(filters_key) or []:
            for cond in (group or {}).get("conditions") or []:
                if not _condition(inputs, cond):
                    return False
    return True


def _condition(inputs: dict[str, str], cond: dict[str, Any]) -> bool:
    actual = str(inputs.get(str(cond.get("inputId")), ""))
    expected = str(cond.get("inputValue") or "")
    if not cond.get("caseSensitive"):
        actual, expected = actual.lower(), expected.lower()
    equal = actual == expected
    return not equal if cond.get("operator") == "notEquals" else equal


def wants(
    sub: Subscription, event_type: str, item: WorkItem, changes: dict[str, Any] | None, *, comment: str | None = None
) -> bool:
    """Whether an active subscription's publisher inputs select this event (`commentPattern`: a substring)."""
    data = sub.data
    if data.get("eventType") != event_type or data.get("status") not in ACTIVE_STATUSES:
        return False
    inputs = data.get("publisherInputs") or {}
    if inputs.get("projectId") and inputs["projectId"].lower() != item.project_id:
        return False
    wanted_type = inputs.get("workItemType", "")
    if wanted_type and wanted_type.lower() != str(item.fields.get("System.WorkItemType", "")).lower():
        return False
    area = inputs.get("areaPath", "").lower()
    item_area = str(item.fields.get("System.AreaPath", "")).lower()
    if area and item_area != area and not item_area.startswith(area + "\\"):
        return False
    pattern = inputs.get("commentPattern", "")
    if event_type == "workitem.commented" and pattern and pattern.lower() not in (comment or "").lower():
        return False
    changed = [f.strip() for f in inputs.get("changedFields", "").split(",") if f.strip()]
    return not (changed and changes is not None and not any(f in changes for f in changed))


def record_result(sub: Subscription, status: int | None, *, probation_failures: int) -> None:
    """Apply one delivery outcome: 2xx re-enables, 410 kills, other failures probation then disable."""
    if sub.data.get("status") not in ACTIVE_STATUSES:
        return
    if status is not None and 200 <= status < 300:
        sub.failures = 0
        sub.data["status"] = "enabled"
    elif status == 410:
        sub.data["status"] = "disabledBySystem"
    else:
        sub.failures += 1
        sub.data["status"] = "disabledBySystem" if sub.failures >= probation_failures else "onProbation"
    sub.data["modifiedDate"] = now_iso()
