"""Parsing and authentication of Azure DevOps service-hook deliveries.

Pure: no network or storage access. `parse` validates the envelope before anything is looked up;
`credential` extracts the shared secret (basic-auth password or `shared-secret` header).
Payloads (resourceVersion 1.0: identities are "Name <email>" strings):
https://learn.microsoft.com/azure/devops/service-hooks/events#workitem.updated

Azure DevOps Services and Server deliveries differ: Services names the organization twice in
`resourceContainers` (`collection` and `account`, different ids), Server names `collection`,
`server` and `project` and no `account`. Both carry `collection.id`, the integration's key. Server
identities are domain accounts, `Name <DOMAIN\\user>`, with no e-mail: `assignee_of` gives that
account, which the inbound flow turns into an e-mail through the collection's identities API.
https://learn.microsoft.com/azure/devops/service-hooks/events#resource-containers
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.core.errors import InvalidInput
from shared.core.keys import check_id
from shared.core.validate import DuplicateKey, is_number, strict_json

MAX_BODY = 2 * 1024 * 1024
WORKITEM_UPDATED = "workitem.updated"
_EMAIL_IN_BRACKETS = re.compile(r"<(.*)>")
_BARE_EMAIL = re.compile(r"^[^\s<>@]+@[^\s<>@]+$")
# A Windows domain account as Azure DevOps Server writes it: DOMAIN\user (no spaces, one backslash).
_ACCOUNT = re.compile(r"^[^\s<>@\\/]{1,64}\\[^\s<>@\\/]{1,104}$")

_UNSET = object()


@dataclass(frozen=True)
class Change:
    """A `{oldValue, newValue}` change record; `new` is None when ADO sent no newValue."""

    old: Any
    new: Any


@dataclass(frozen=True)
class Delivery:
    """The parts of a delivery the sync uses."""

    event_type: str
    collection_id: str
    work_item_id: str | None
    project_id: str | None
    work_item_type: str | None
    rev: int
    state: Change | None
    assigned_to: Change | None


def parse(body: bytes) -> Delivery:
    """Validate the envelope: 413 when too large, 400 when not JSON or missing required parts."""
    if len(body) > MAX_BODY:
        raise InvalidInput("Payload too large", status=413)
    try:
        payload = strict_json(body.decode("utf-8"))
    except DuplicateKey as error:
        raise InvalidInput(f"Payload is not valid: {error}") from error
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise InvalidInput("Payload is not valid JSON") from error
    if not isinstance(payload, dict):
        raise InvalidInput("Payload must be a JSON object")
    event_type = payload.get("eventType")
    if not isinstance(event_type, str) or not event_type:
        raise InvalidInput("Payload has no eventType", field="eventType")
    collection_id = _get(payload, "resourceContainers", "collection", "id")
    if not isinstance(collection_id, str | int) or isinstance(collection_id, bool) or not str(collection_id):
        raise InvalidInput("Payload has no resourceContainers.collection.id", field="resourceContainers")
    resource = payload.get("resource")
    resource = resource if isinstance(resource, dict) else {}
    fields = resource.get("fields")
    fields = fields if isinstance(fields, dict) else {}
    revision_fields = _get(resource, "revision", "fields")
    revision_fields = revision_fields if isinstance(revision_fields, dict) else {}
    project_id = _get(payload, "resourceContainers", "project", "id")
    wit = revision_fields.get("System.WorkItemType")
    return Delivery(
        event_type=event_type,
        collection_id=str(collection_id),
        work_item_id=_work_item_id(resource.get("workItemId")),
        project_id=_usable_id(project_id),
        work_item_type=_usable_id(wit),
        rev=_rev(resource),
        state=_change(fields.get("System.State")),
        assigned_to=_change(fields.get("System.AssignedTo")),
    )


def credentials(headers: Mapping[str, str]) -> list[str]:
    """The secrets a delivery carries: the basic-auth password and/or the `shared-secret` header."""
    found = []
    auth = headers.get("authorization") or ""
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):  # binascii.Error is a ValueError; so is non-ASCII input
            decoded = ""
        password = decoded.partition(":")[2]
        if password:
            found.append(password)
    header = headers.get("shared-secret")
    if header:
        found.append(header)
    return found


def email_of(value: Any) -> str | None:
    """The e-mail in an AssignedTo value: "Name <email>", a bare address, or an identity object."""
    if isinstance(value, dict):
        for key in ("uniqueName", "mailAddress"):
            candidate = value.get(key)
            if isinstance(candidate, str) and _BARE_EMAIL.match(candidate.strip()):
                return candidate.strip()
        display = value.get("displayName")
        return email_of(display) if isinstance(display, str) else None
    if not isinstance(value, str):
        return None
    match = _EMAIL_IN_BRACKETS.search(value)
    if match:
        found = match.group(1).strip()
        return found if _BARE_EMAIL.match(found) else None
    return value.strip() if _BARE_EMAIL.match(value.strip()) else None


def account_of(value: Any) -> str | None:
    """The domain account (`DOMAIN\\user`) in an Azure DevOps Server AssignedTo value: a
    "Name <DOMAIN\\user>" string, a bare account, or an identity object's `uniqueName`."""
    if isinstance(value, dict):
        unique = value.get("uniqueName")
        return account_of(unique) if isinstance(unique, str) else None
    if not isinstance(value, str):
        return None
    match = _EMAIL_IN_BRACKETS.search(value)
    found = (match.group(1) if match else value).strip()
    return found if _ACCOUNT.match(found) else None


def assignee_of(value: Any) -> str | None:
    """What identifies an AssignedTo value, lower-cased: the e-mail (Services) or the domain account (Server)."""
    found = email_of(value) or account_of(value)
    return found.lower() if found else None


def is_account(assignee: str) -> bool:
    """Whether an `assignee_of` result is a Server domain account rather than an e-mail."""
    return "\\" in assignee


def _usable_id(value: Any) -> str | None:
    """A payload value usable as (part of) a storage key, else None (it is then not used)."""
    try:
        return check_id(value, "id") if isinstance(value, str) else None
    except InvalidInput:
        return None


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _change(record: Any) -> Change | None:
    if not isinstance(record, dict) or not record:
        return None
    return Change(old=record.get("oldValue"), new=record.get("newValue"))


def _work_item_id(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return str(value)
    if isinstance(value, str) and is_number(value) and len(value) < 20:
        return value
    return None


def _rev(resource: dict[str, Any]) -> int:
    for value in (resource.get("rev"), _get(resource, "revision", "rev"), _get(resource, "fields", "System.Rev",
                                                                                "newValue")):
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
            return value
    return 0
