"""JSON shapes the sandbox answers with: work items, projects, repositories, subscriptions, events.

Pure: builds dicts from the records in `model.py`. Event shapes (resourceVersion 1.0) follow the
service hooks event reference and the payloads of tests/fixtures/ado-webhooks/:
https://learn.microsoft.com/azure/devops/service-hooks/events
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import quote

from devhost.sandbox.model import Org, Project, Repository, Subscription, User, WorkItem, now_iso

MASK = "********"
CONFIDENTIAL_INPUTS = ("basicAuthPassword",)


def instance_url(base_url: str, org: Org) -> str:
    """`https://host/{org}/` (Services) or `https://host/tfs/{collection}/` (Azure DevOps Server)."""
    return f"{base_url}tfs/{quote(org.name)}/" if org.server else f"{base_url}{quote(org.name)}/"


def resource_containers(base_url: str, org: Org, project_id: str) -> dict[str, Any]:
    """Services: collection + account (different ids); Server: collection + server, no account.

    https://learn.microsoft.com/azure/devops/service-hooks/events#resource-containers
    """
    inst = instance_url(base_url, org)
    if org.server:
        return {
            "collection": {"id": org.account_id, "baseUrl": inst},
            "server": {"id": org.server_id, "baseUrl": f"{base_url}tfs/"},
            "project": {"id": project_id, "baseUrl": inst},
        }
    return {
        "collection": {"id": org.account_id, "baseUrl": inst},
        "account": {"id": org.host_account_id, "baseUrl": inst},
        "project": {"id": project_id, "baseUrl": inst},
    }


def work_item(base_url: str, org: Org, item: WorkItem, *, fields: list[str] | None = None) -> dict[str, Any]:
    """`GET _apis/wit/workitems/{id}`; identity fields stay `Name <email>` strings.

    With `fields`, only those (that have a value) and no relations, as ADO answers `fields=`.
    """
    inst = instance_url(base_url, org)
    project = org.projects[item.project_id]
    url = f"{inst}{project.id}/_apis/wit/workItems/{item.id}"
    body: dict[str, Any] = {
        "id": item.id,
        "rev": item.rev,
        "fields": _pick(item, fields),
        "url": url,
        "_links": {
            "self": {"href": url},
            "workItemUpdates": {"href": f"{url}/updates"},
            "workItemRevisions": {"href": f"{url}/revisions"},
            "html": {"href": f"{inst}{quote(project.name)}/_workitems/edit/{item.id}"},
        },
    }
    if item.relations and fields is None:
        body["relations"] = copy.deepcopy(item.relations)
    if item.multiline:
        body["multilineFieldsFormat"] = dict(item.multiline)
    return body


def _pick(item: WorkItem, fields: list[str] | None) -> dict[str, Any]:
    if fields is None:
        return dict(item.fields)
    values = {**item.fields, "System.Id": item.id, "System.Rev": item.rev}
    lowered = {k.lower(): k for k in values}
    return {lowered[f.lower()]: values[lowered[f.lower()]] for f in fields if f.lower() in lowered}


def project(base_url: str, org: Org, proj: Project) -> dict[str, Any]:
    return {
        "id": proj.id,
        "name": proj.name,
        "description": "",
        "url": f"{instance_url(base_url, org)}_apis/projects/{proj.id}",
        "state": "wellFormed",
        "revision": proj.revision,
        "visibility": "private",
        "lastUpdateTime": "2024-01-01T00:00:00Z",
    }


def repository(base_url: str, org: Org, repo: Repository) -> dict[str, Any]:
    inst = instance_url(base_url, org)
    proj = org.projects[repo.project_id]
    web = f"{inst}{quote(proj.name)}/_git/{quote(repo.name)}"
    return {
        "id": repo.id,
        "name": repo.name,
        "url": f"{inst}{proj.id}/_apis/git/repositories/{repo.id}",
        "project": {"id": proj.id, "name": proj.name, "state": "wellFormed", "visibility": "private"},
        "defaultBranch": "refs/heads/main",
        "size": 0,
        "remoteUrl": web.replace("https://", f"https://{quote(org.name)}@", 1),
        "webUrl": web,
        "isDisabled": False,
        "_links": {"web": {"href": web}},
    }


def subscription(sub: Subscription, *, masked: bool = True) -> dict[str, Any]:
    body = copy.deepcopy(sub.data)
    if masked:
        inputs = body.get("consumerInputs") or {}
        for key in CONFIDENTIAL_INPUTS:
            if inputs.get(key):
                inputs[key] = MASK
    if body.get("status") == "onProbation":
        body["probationRetries"] = sub.failures
    return body


def updated_resource(
    base_url: str, org: Org, item: WorkItem, changes: dict[str, dict[str, Any]], actor: User
) -> dict[str, Any]:
    """`resource` of `workitem.updated`: `id` is the update number, `fields` only what changed."""
    inst = instance_url(base_url, org)
    wi_url = f"{inst}{item.project_id}/_apis/wit/workItems/{item.id}"
    update_url = f"{wi_url}/updates/{item.rev}"
    revision_url = f"{wi_url}/revisions/{item.rev}"
    return {
        "id": item.rev,
        "workItemId": item.id,
        "rev": item.rev,
        "revisedBy": actor.identity_ref(inst),
        "revisedDate": "9999-01-01T00:00:00Z",
        "fields": copy.deepcopy(changes),
        "_links": {
            "self": {"href": update_url},
            "workItemUpdates": {"href": f"{wi_url}/updates"},
            "html": {"href": f"{inst}web/wi.aspx?pcguid={org.account_id}&id={item.id}"},
            "parent": {"href": wi_url},
        },
        "url": update_url,
        "revision": {
            "id": item.id,
            "rev": item.rev,
            "fields": dict(item.fields),
            "url": revision_url,
            "_links": {
                "self": {"href": revision_url},
                "workItemRevisions": {"href": f"{wi_url}/revisions"},
                "parent": {"href": wi_url},
            },
        },
    }


def messages(
    base_url: str, org: Org, event_type: str, item: WorkItem, actor: User, comment: str | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """`message` and `detailedMessage` as the service-hook events reference shows them."""
    verb = "commented on" if event_type == "workitem.commented" else event_type.split(".", 1)[1]
    kind = item.fields.get("System.WorkItemType", "Work item")
    title = item.fields.get("System.Title", "")
    link = f"{instance_url(base_url, org)}web/wi.aspx?pcguid={org.account_id}&id={item.id}"
    tail = f"({title}) {verb} by {actor.display_name}."
    short = {
        "text": f"{kind} #{item.id} {tail}\r\n({link})",
        "html": f'<a href="{link.replace("&", "&amp;")}">{kind} #{item.id}</a> {tail}',
        "markdown": f"[{kind} #{item.id}]({link}) {tail}",
    }
    extra = comment if comment is not None else f"State: {item.fields.get('System.State', '')}"
    detail = {
        "text": f"{short['text']}\r\n{extra}",
        "html": f"{short['html']}<br/>{extra}",
        "markdown": f"{short['markdown']}\r\n{extra}",
    }
    return short, detail


def event(
    base_url: str,
    org: Org,
    sub: Subscription,
    *,
    event_id: str,
    event_type: str,
    item: WorkItem,
    resource: dict[str, Any],
    actor: User,
    comment: str | None = None,
) -> dict[str, Any]:
    """One notification of an event to one subscription, honouring its *ToSend inputs."""
    inputs = sub.data.get("consumerInputs") or {}
    short, detail = messages(base_url, org, event_type, item, actor, comment)
    details_to_send = str(inputs.get("resourceDetailsToSend") or "all").lower()
    if details_to_send == "none":
        sent_resource: dict[str, Any] | None = None
    elif details_to_send == "minimal":
        sent_resource = {k: resource[k] for k in ("id", "workItemId", "rev", "url", "_links") if k in resource}
    else:
        sent_resource = resource
    return {
        "subscriptionId": sub.data["id"],
        "notificationId": sub.notifications,
        "id": event_id,
        "eventType": event_type,
        "publisherId": "tfs",
        "message": None if str(inputs.get("messagesToSend") or "").lower() == "none" else short,
        "detailedMessage": None if str(inputs.get("detailedMessagesToSend") or "").lower() == "none" else detail,
        "resource": sent_resource,
        "resourceVersion": "1.0",
        "resourceContainers": resource_containers(base_url, org, item.project_id),
        "createdDate": now_iso(),
    }


def connection_data(base_url: str, org: Org, user: User) -> dict[str, Any]:
    """`GET {org}/_apis/connectionData`: `instanceId` is the collection id (events' `collection.id`).

    https://learn.microsoft.com/previous-versions/dn343179(v=vs.120) (ConnectionData.InstanceId)
    """
    inst = instance_url(base_url, org)
    descriptor = (
        f"System.Security.Principal.WindowsIdentity;S-1-5-21-{int(user.id.replace('-', ''), 16) % 10**9}"
        if org.server
        else f"Microsoft.IdentityModel.Claims.ClaimsIdentity;sandbox\\{user.email}"
    )
    identity = {
        "id": user.id,
        "descriptor": descriptor,
        "subjectDescriptor": user.descriptor,
        "providerDisplayName": user.display_name,
        "isActive": True,
        "properties": {"Account": {"$type": "System.String", "$value": user.unique_name}},
        "resourceVersion": 2,
        "metaTypeId": 0,
    }
    path = "/" + inst.split("://", 1)[1].split("/", 1)[1]
    return {
        "authenticatedUser": identity,
        "authorizedUser": identity,
        "instanceId": org.account_id,
        "deploymentId": org.host_account_id,
        "deploymentType": "onPremises" if org.server else "hosted",
        "locationServiceData": {
            "serviceOwner": "00025394-6065-48ca-87d9-7f5672854ef7",
            "defaultAccessMappingMoniker": "PublicAccessMapping",
            "lastChangeId": 1,
            "lastChangeId64": 1,
            "accessMappings": [
                {
                    "displayName": "Public Access Mapping",
                    "moniker": "PublicAccessMapping",
                    "accessPoint": inst,
                    "serviceOwner": "00025394-6065-48ca-87d9-7f5672854ef7",
                    "virtualDirectory": "",
                }
            ],
        },
        "webApplicationRelativeDirectory": path,
    }
