"""JSON Schemas (2020-12, as OpenAPI 3.1 uses them) of the bodies the HTTP routes take and answer.

Request schemas say what the validators in `shared.core` accept; answer schemas say what the
handlers build. Keep both true: the schemathesis tests send what these allow and check every answer
against them.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

ID: Schema = {
    "type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[^/\\\\#?|\\u0000-\\u001f\\u007f-\\u009f]+$",
    "description": "An id usable as a table key: no / \\ # ? | or control characters, not blank, not only dots.",
}
TEXT: Schema = {"type": "string"}
TOKEN: Schema = {"type": "string", "pattern": "^[\\x21-\\x7e]+$", "maxLength": 16000,
                 "description": "printable ASCII without spaces (it is sent in an HTTP header)"}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = {"type": ["string", "null"], "description": "ISO 8601 UTC"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None, *, closed: bool = False) -> Schema:
    """An object with `required` and `optional` properties (`closed`: nothing else is allowed)."""
    schema: Schema = {"type": "object", "properties": {**required, **(optional or {})}, "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


def array(items: Schema, **limits: int) -> Schema:
    return {"type": "array", "items": items, **limits}


STATUS_MAPPING: Schema = {
    "type": "object", "propertyNames": ID,
    "additionalProperties": obj({}, {"on_resolve": TEXT, "on_unresolve": TEXT}),
    "description": "Azure DevOps project id → the states to set when the group is resolved / unresolved.",
}

SCHEMAS: dict[str, Schema] = {
    "Error": obj({"detail": TEXT}),
    "Health": obj({"status": {"const": "ok"}}),
    "OpenApiDocument": obj({"openapi": TEXT, "info": {"type": "object"}, "paths": {"type": "object"}}),
    "OrgConfig": obj({}, {
        "sync_status_forward": nullable(STATUS_MAPPING),
        "sync_status_reverse": BOOL,
        "sync_forward_assignment": BOOL,
        "sync_reverse_assignment": BOOL,
        "sync_comments": BOOL,
        "inbound_status": {"type": "object"},
        "project_issue_defaults": {"type": "object"},
        "resolution_strategy": {"enum": ["resolve", "resolve_current_release", "resolve_next_release"]},
    }, closed=True),
    "Identity": {"anyOf": [
        obj({"kind": {"enum": ["oauth", "pat"]}, "access_token": TOKEN}, {
            "refresh_token": nullable(TOKEN),
            "expires_at": {"type": ["string", "number", "null"], "description": "ISO 8601, or unix seconds"},
        }),
        obj({"kind": {"const": "managed_identity"}}, {"client_id": {"type": ["string", "null"]}}),
        obj({"kind": {"const": "service_principal"}, "tenant_id": TEXT, "client_id": TEXT},
            {"secret_ref": TEXT, "certificate_ref": TEXT}),
    ]},
    "InstallRequest": obj(
        {"account_name": {"type": "string", "minLength": 1, "maxLength": 256}, "organization_id": ID,
         "identity": ref("Identity")},
        {"domain_name": {"type": ["string", "null"], "maxLength": 2048,
                         "description": "The organization URL, e.g. https://dev.azure.com/fabrikam/"},
         "config": nullable(ref("OrgConfig"))}),
    "OrgLink": obj({"organization_id": TEXT, "status": {"enum": ["active", "inactive"]},
                    "config": {"type": "object"}}),
    "Integration": obj({
        "account_id": TEXT, "account_name": TEXT, "domain_name": TEXT, "status": {"enum": ["active", "disabled"]},
        "subscription": obj({"id": {"type": ["string", "null"]}, "status": {"type": ["string", "null"]},
                             "last_checked": TIME, "last_delivery": TIME}),
        "organizations": array(ref("OrgLink")),
        "problem": {"type": ["string", "null"]},
    }, {
        "deployment": {"enum": ["services", "server", None]},
        "comment_subscription": obj({"id": {"type": ["string", "null"]}, "status": {"type": ["string", "null"]}}),
        "last_reconciled": TIME,
        "repaired": {"type": "integer", "description": "links the last reconciliation brought back in sync"},
    }),
    "Uninstalled": {"allOf": [ref("Integration"), obj({"uninstall": obj({
        "service_hooks_deleted": array(TEXT),
        "service_hooks_failed": array(obj({"id": {"type": ["string", "null"]}, "detail": TEXT})),
        "credential_deleted": BOOL,
        "complete": BOOL,
    })})]},
    "AdoRepository": obj({"name": TEXT, "identifier": TEXT}),
    "AdoRepositories": array(ref("AdoRepository")),
    "IssueCreate": obj(
        {"group_id": ID, "title": {"type": "string", "minLength": 1}},
        {"project": ID, "work_item_type": ID, "description": {"type": ["string", "null"]},
         "area_path": {"type": ["string", "null"]},
         "iteration_path": {"type": ["string", "null"]}, "tags": array(TEXT, maxItems=200),
         "fields": {"type": "object", "maxProperties": 100,
                    "additionalProperties": {"type": ["string", "number", "boolean"]}}}),
    "IssueLink": obj({"group_id": ID, "key": {"type": ["string", "integer"]}}),
    "Issue": obj({"key": TEXT, "title": TEXT, "description": TEXT, "url": TEXT,
                  "metadata": obj({"display_name": TEXT})}),
    "IssueOrDryRun": {"anyOf": [ref("Issue"), obj({"valid": BOOL, "errors": array(obj({"field": TEXT,
                                                                                       "message": TEXT}))},
                                                  {"request": {"type": "object"}, "existing": {"type": "object"}})]},
    "AdoProjects": array(obj({"id": TEXT, "name": TEXT}, {"description": {"type": ["string", "null"]}})),
    "AdoStates": array(ref("AdoState")),
    "AdoState": obj({"name": TEXT}, {"category": {"type": ["string", "null"]}, "color": {"type": ["string", "null"]}}),
    "AdoWorkItemTypes": array(obj({"name": TEXT, "reference_name": {"type": ["string", "null"]}}, {
        "description": {"type": ["string", "null"]}, "color": {"type": ["string", "null"]},
        "is_disabled": {"type": ["boolean", "null"]}, "states": array(ref("AdoState")),
        "fields": array(obj({"name": TEXT, "reference_name": TEXT}, {
            "required": BOOL, "allowed_values": array({}), "default_value": {}}))})),
    "AdoPaths": array(obj({"path": TEXT, "name": TEXT}, {
        "id": {"type": ["integer", "null"]}, "identifier": {"type": ["string", "null"]},
        "start_date": {"type": ["string", "null"]}, "finish_date": {"type": ["string", "null"]}})),
    "AdoUsers": array(obj({"display_name": {"type": ["string", "null"]}}, {
        "email": {"type": ["string", "null"]}, "principal_name": {"type": ["string", "null"]},
        "descriptor": {"type": ["string", "null"]}, "origin": {"type": ["string", "null"]}})),
    "CommentRequest": obj({"author": obj({"name": {"type": "string", "minLength": 1}},
                                          {"email": {"type": ["string", "null"]}}),
                           "body": {"type": "string", "minLength": 1, "maxLength": 100000}}),
    "Comment": obj({
        "comment_id": TEXT, "origin": TEXT, "author": obj({"name": {"type": ["string", "null"]}},
                                                          {"email": {"type": ["string", "null"]}}),
        "body": TEXT, "deleted": BOOL, "version": {"type": "integer"},
        "source": {"type": ["object", "null"]},
        "work_items": array(obj({"account_id": TEXT, "key": TEXT}, {
            "ado_comment_id": {"type": ["integer", "string", "null"]}, "state": TEXT,
            "version": {"type": ["integer", "null"]}, "problem": {"type": ["string", "null"]}})),
    }),
    "Event": obj({"id": TEXT, "type": TEXT, "created": TEXT, "organization_id": TEXT,
                  "group_id": {"type": ["string", "null"]}, "data": {"type": "object"}}),
    "EventPage": obj({"events": array(ref("Event")), "next": {"type": ["string", "null"]}}),
    "Delivery": obj({"id": TEXT, "event_id": TEXT, "status": TEXT}, {
        "type": TEXT, "group_id": {"type": ["string", "null"]}, "attempts": {"type": "integer"},
        "last_status": {"type": ["integer", "null"]}, "last_reason": {"type": ["string", "null"]},
        "last_attempt": TIME, "next_attempt": TIME, "replays": {"type": "integer"}}),
    "DeliveryPage": obj({"deliveries": array(ref("Delivery")), "next": {"type": ["string", "null"]}}),
    "Replayed": obj({"delivery": ref("Delivery")}),
    "TrackerConfigRequest": obj({"tracker_webhook_url": {"type": ["string", "null"]}},
                                {"tracker_webhook_secret": {"type": ["string", "null"]}}),
    "TrackerConfig": obj({"organization_id": TEXT, "tracker_webhook_url": {"type": ["string", "null"]},
                          "tracker_webhook_secret_set": BOOL}, {"delivery": TEXT, "endpoint_gone": BOOL}),
    "Reconcile": obj({"account_id": TEXT, "queued": {"type": "object"}}),
    "SearchChoice": obj({"label": TEXT, "value": TEXT}),
    "SearchChoices": array(ref("SearchChoice")),
    "UserRequest": obj({}, {"emails": array({"type": "string", "maxLength": 320, "pattern": "@"}, maxItems=40),
                            "projects": array(ID, maxItems=100)}),
    "User": obj({"org_id": TEXT, "user_id": TEXT, "emails": array(TEXT), "projects": array(TEXT)}),
    "GroupRequest": obj({"project_id": ID, "title": {"type": "string", "minLength": 1, "maxLength": 4000}}, {
        "status": {"enum": ["unresolved", "resolved", None]}, "assignee": nullable(ID)}),
    "GroupChange": {**obj({}, {"status": {"enum": ["unresolved", "resolved", None]}, "assignee": nullable(ID)}),
                    "minProperties": 1},
    "Group": obj({
        "org_id": TEXT, "group_id": TEXT, "project_id": TEXT, "title": TEXT,
        "status": {"enum": ["unresolved", "resolved"]}, "assignee": {"type": ["string", "null"]},
        "links": array(obj({"account_id": TEXT, "key": TEXT, "url": TEXT, "display_name": TEXT,
                            "project_id": {"type": ["string", "null"]}})),
        "activity": array(obj({"kind": TEXT, "data": {"type": "object"}, "created": TIME})),
    }),
    "Unlinked": obj({
        "org_id": TEXT, "group_id": TEXT, "account_id": TEXT, "key": TEXT,
        "removed": {"type": "boolean", "description": "false when the link was already gone"},
        "comment": nullable(obj({"status": {"enum": ["added", "failed", "skipped"]}},
                                {"id": {"type": ["integer", "string", "null"]}, "detail": TEXT})),
    }),
    "UnlinkOptions": obj({}, {"comment": {"type": ["boolean", "null"]}}, closed=True),
    "RepositoryRequest": obj(
        {"name": {"type": "string", "minLength": 1, "maxLength": 1000},
         "provider": {"type": "string", "minLength": 1, "maxLength": 200}},
        {"external_id": {"type": ["string", "null"], "maxLength": 1000},
         "config": nullable(obj({}, {"project": TEXT, "name": TEXT})),
         "integration_id": nullable(ID), "status": {"enum": ["active", "disabled", None]}}),
    "Repository": obj({
        "org_id": TEXT, "repo_id": TEXT, "name": TEXT, "provider": TEXT, "external_id": TEXT,
        "config": {"type": "object"}, "integration_id": {"type": ["string", "null"]},
        "status": {"enum": ["active", "disabled"]},
    }),
    "ServiceHookEvent": obj(
        {"eventType": TEXT,
         "resourceContainers": obj({"collection": obj({"id": {"type": ["string", "integer"]}})})},
        {"id": TEXT, "resource": {"type": "object"}}),
}
