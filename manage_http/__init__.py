"""HTTP triggers: the management API under `/api/manage/...`, and `GET /api/health`.

Thin adapter: authenticate with the bearer key, parse the JSON body, call a handler in `shared/`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import azure.functions as func

from shared import install, tracker, workitems
from shared.config import settings
from shared.http import Reply, check_bearer, json_object, respond
from shared.telemetry import invocation_id

bp = func.Blueprint()
ANON = func.AuthLevel.ANONYMOUS


def _manage(
    req: func.HttpRequest, context: func.Context, handler: Callable[..., Reply], *, body: bool = False
) -> func.HttpResponse:
    """Authenticate, then call `handler(**route_params[, body=...])`."""

    def run() -> Reply:
        check_bearer(req.headers, settings().manage_api_key)
        kwargs: dict[str, Any] = dict(req.route_params)
        if body:
            kwargs["body"] = json_object(req.get_body() or b"")
        return handler(**kwargs)

    return respond(run, event="manage", invocation_id=invocation_id(context))


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=ANON)
def health(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return respond(tracker.health, event="health", invocation_id=invocation_id(context))


@bp.function_name("manage_integration_put")
@bp.route(route="manage/integrations/{account_id}", methods=["PUT"], auth_level=ANON)
def manage_integration_put(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, install.install, body=True)


@bp.function_name("manage_integration_get")
@bp.route(route="manage/integrations/{account_id}", methods=["GET"], auth_level=ANON)
def manage_integration_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, install.integration_view)


@bp.function_name("manage_org_config_put")
@bp.route(route="manage/integrations/{account_id}/organizations/{org_id}/config", methods=["PUT"],
          auth_level=ANON)
def manage_org_config_put(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, install.put_org_config, body=True)


@bp.function_name("manage_ado_repositories")
@bp.route(route="manage/integrations/{account_id}/repositories", methods=["GET"], auth_level=ANON)
def manage_ado_repositories(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, install.ado_repositories)


@bp.function_name("manage_issue_create")
@bp.route(route="manage/integrations/{account_id}/organizations/{org_id}/issues", methods=["POST"],
          auth_level=ANON)
def manage_issue_create(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, workitems.create_issue, body=True)


@bp.function_name("manage_issue_link")
@bp.route(route="manage/integrations/{account_id}/organizations/{org_id}/issues/link", methods=["POST"],
          auth_level=ANON)
def manage_issue_link(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, workitems.link_issue, body=True)


@bp.function_name("manage_search")
@bp.route(route="manage/integrations/{account_id}/search", methods=["GET"], auth_level=ANON)
def manage_search(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    params = dict(req.params)
    return _manage(req, context, lambda account_id: workitems.search(account_id, params))


@bp.function_name("manage_user_put")
@bp.route(route="manage/organizations/{org_id}/users/{user_id}", methods=["PUT"], auth_level=ANON)
def manage_user_put(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, tracker.put_user, body=True)


@bp.function_name("manage_user_get")
@bp.route(route="manage/organizations/{org_id}/users/{user_id}", methods=["GET"], auth_level=ANON)
def manage_user_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, tracker.get_user)


@bp.function_name("manage_group_put")
@bp.route(route="manage/organizations/{org_id}/groups/{group_id}", methods=["PUT"], auth_level=ANON)
def manage_group_put(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, tracker.put_group, body=True)


@bp.function_name("manage_group_patch")
@bp.route(route="manage/organizations/{org_id}/groups/{group_id}", methods=["PATCH"], auth_level=ANON)
def manage_group_patch(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, tracker.patch_group, body=True)


@bp.function_name("manage_group_get")
@bp.route(route="manage/organizations/{org_id}/groups/{group_id}", methods=["GET"], auth_level=ANON)
def manage_group_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, tracker.get_group)


@bp.function_name("manage_repository_put")
@bp.route(route="manage/organizations/{org_id}/repositories/{repo_id}", methods=["PUT"], auth_level=ANON)
def manage_repository_put(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, tracker.put_repository, body=True)


@bp.function_name("manage_repository_get")
@bp.route(route="manage/organizations/{org_id}/repositories/{repo_id}", methods=["GET"], auth_level=ANON)
def manage_repository_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, tracker.get_repository)
