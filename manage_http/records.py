"""Management routes of the tracker's records (users, groups, repositories), and `GET /api/health`."""

from __future__ import annotations

import azure.functions as func

from manage_http.common import ANON, bp, manage
from shared.adapters.http import respond
from shared.compose import services
from shared.flows import tracker
from shared.telemetry import invocation_id


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=ANON)
def health(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return respond(lambda: tracker.health(services()), event="health", invocation_id=invocation_id(context))


@bp.function_name("manage_user_put")
@bp.route(route="manage/organizations/{org_id}/users/{user_id}", methods=["PUT"], auth_level=ANON)
def manage_user_put(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: tracker.put_user(s, r["org_id"], r["user_id"], r.json()))


@bp.function_name("manage_user_get")
@bp.route(route="manage/organizations/{org_id}/users/{user_id}", methods=["GET"], auth_level=ANON)
def manage_user_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: tracker.get_user(s, r["org_id"], r["user_id"]))


@bp.function_name("manage_group_put")
@bp.route(route="manage/organizations/{org_id}/groups/{group_id}", methods=["PUT"], auth_level=ANON)
def manage_group_put(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: tracker.put_group(s, r["org_id"], r["group_id"], r.json()))


@bp.function_name("manage_group_patch")
@bp.route(route="manage/organizations/{org_id}/groups/{group_id}", methods=["PATCH"], auth_level=ANON)
def manage_group_patch(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: tracker.patch_group(s, r["org_id"], r["group_id"], r.json()))


@bp.function_name("manage_group_get")
@bp.route(route="manage/organizations/{org_id}/groups/{group_id}", methods=["GET"], auth_level=ANON)
def manage_group_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: tracker.get_group(s, r["org_id"], r["group_id"]))


@bp.function_name("manage_repository_put")
@bp.route(route="manage/organizations/{org_id}/repositories/{repo_id}", methods=["PUT"], auth_level=ANON)
def manage_repository_put(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: tracker.put_repository(s, r["org_id"], r["repo_id"], r.json()))


@bp.function_name("manage_repository_get")
@bp.route(route="manage/organizations/{org_id}/repositories/{repo_id}", methods=["GET"], auth_level=ANON)
def manage_repository_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: tracker.get_repository(s, r["org_id"], r["repo_id"]))
