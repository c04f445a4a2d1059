"""HTTP triggers: the management API under `/api/manage/...`, and `GET /api/health`.

Thin adapter: authenticate with the bearer key, then call a flow with the services and the route's
parameters, each bound by name in the route's own function (so mypy checks every call).
"""

from __future__ import annotations

from collections.abc import Callable

import azure.functions as func

from shared.adapters.http import Request, check_bearer, respond
from shared.compose import Services, services
from shared.config import settings
from shared.core.reply import Reply
from shared.flows import install, tracker, workitems
from shared.telemetry import invocation_id

bp = func.Blueprint()
ANON = func.AuthLevel.ANONYMOUS
Handler = Callable[[Services, Request], Reply]


def _manage(req: func.HttpRequest, context: func.Context, handler: Handler) -> func.HttpResponse:
    """Authenticate with the management key, then run `handler`."""

    def run() -> Reply:
        check_bearer(req.headers, settings().manage_api_key)
        return handler(services(), Request(req))

    return respond(run, event="manage", invocation_id=invocation_id(context))


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=ANON)
def health(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return respond(lambda: tracker.health(services()), event="health", invocation_id=invocation_id(context))


@bp.function_name("manage_integration_put")
@bp.route(route="manage/integrations/{account_id}", methods=["PUT"], auth_level=ANON)
def manage_integration_put(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, lambda s, r: install.install(s, r["account_id"], r.json()))


@bp.function_name("manage_integration_get")
@bp.route(route="manage/integrations/{account_id}", methods=["GET"], auth_level=ANON)
def manage_integration_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, lambda s, r: install.integration_view(s, r["account_id"]))


@bp.function_name("manage_org_config_put")
@bp.route(route="manage/integrations/{account_id}/organizations/{org_id}/config", methods=["PUT"],
          auth_level=ANON)
def manage_org_config_put(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, lambda s, r: install.put_org_config(s, r["account_id"], r["org_id"], r.json()))


@bp.function_name("manage_ado_repositories")
@bp.route(route="manage/integrations/{account_id}/repositories", methods=["GET"], auth_level=ANON)
def manage_ado_repositories(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, lambda s, r: install.ado_repositories(s, r["account_id"]))


@bp.function_name("manage_issue_create")
@bp.route(route="manage/integrations/{account_id}/organizations/{org_id}/issues", methods=["POST"],
          auth_level=ANON)
def manage_issue_create(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, lambda s, r: workitems.create_issue(s, r["account_id"], r["org_id"], r.json()))


@bp.function_name("manage_issue_link")
@bp.route(route="manage/integrations/{account_id}/organizations/{org_id}/issues/link", methods=["POST"],
          auth_level=ANON)
def manage_issue_link(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, lambda s, r: workitems.link_issue(s, r["account_id"], r["org_id"], r.json()))


@bp.function_name("manage_search")
@bp.route(route="manage/integrations/{account_id}/search", methods=["GET"], auth_level=ANON)
def manage_search(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, lambda s, r: workitems.search(s, r["account_id"], r.query))


@bp.function_name("manage_user_put")
@bp.route(route="manage/organizations/{org_id}/users/{user_id}", methods=["PUT"], auth_level=ANON)
def manage_user_put(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, lambda s, r: tracker.put_user(s, r["org_id"], r["user_id"], r.json()))


@bp.function_name("manage_user_get")
@bp.route(route="manage/organizations/{org_id}/users/{user_id}", methods=["GET"], auth_level=ANON)
def manage_user_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, lambda s, r: tracker.get_user(s, r["org_id"], r["user_id"]))


@bp.function_name("manage_group_put")
@bp.route(route="manage/organizations/{org_id}/groups/{group_id}", methods=["PUT"], auth_level=ANON)
def manage_group_put(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, lambda s, r: tracker.put_group(s, r["org_id"], r["group_id"], r.json()))


@bp.function_name("manage_group_patch")
@bp.route(route="manage/organizations/{org_id}/groups/{group_id}", methods=["PATCH"], auth_level=ANON)
def manage_group_patch(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, lambda s, r: tracker.patch_group(s, r["org_id"], r["group_id"], r.json()))


@bp.function_name("manage_group_get")
@bp.route(route="manage/organizations/{org_id}/groups/{group_id}", methods=["GET"], auth_level=ANON)
def manage_group_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, lambda s, r: tracker.get_group(s, r["org_id"], r["group_id"]))


@bp.function_name("manage_repository_put")
@bp.route(route="manage/organizations/{org_id}/repositories/{repo_id}", methods=["PUT"], auth_level=ANON)
def manage_repository_put(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, lambda s, r: tracker.put_repository(s, r["org_id"], r["repo_id"], r.json()))


@bp.function_name("manage_repository_get")
@bp.route(route="manage/organizations/{org_id}/repositories/{repo_id}", methods=["GET"], auth_level=ANON)
def manage_repository_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _manage(req, context, lambda s, r: tracker.get_repository(s, r["org_id"], r["repo_id"]))
