"""Management routes of integrations: install, view, organization config, work items, search."""

from __future__ import annotations

import azure.functions as func

from manage_http.common import ANON, bp, manage
from shared.flows import install, preflight, workitems


@bp.function_name("manage_integration_put")
@bp.route(route="manage/integrations/{account_id}", methods=["PUT"], auth_level=ANON)
def manage_integration_put(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: install.install(s, r["account_id"], r.json()))


@bp.function_name("manage_integration_get")
@bp.route(route="manage/integrations/{account_id}", methods=["GET"], auth_level=ANON)
def manage_integration_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: install.integration_view(s, r["account_id"]))


@bp.function_name("manage_org_config_put")
@bp.route(route="manage/integrations/{account_id}/organizations/{org_id}/config", methods=["PUT"],
          auth_level=ANON)
def manage_org_config_put(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: install.put_org_config(s, r["account_id"], r["org_id"], r.json()))


@bp.function_name("manage_ado_repositories")
@bp.route(route="manage/integrations/{account_id}/repositories", methods=["GET"], auth_level=ANON)
def manage_ado_repositories(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: install.ado_repositories(s, r["account_id"]))


@bp.function_name("manage_issue_create")
@bp.route(route="manage/integrations/{account_id}/organizations/{org_id}/issues", methods=["POST"],
          auth_level=ANON)
def manage_issue_create(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context,
                  lambda s, r: preflight.issue_request(s, r["account_id"], r["org_id"], r.json(), r.query))


@bp.function_name("manage_issue_link")
@bp.route(route="manage/integrations/{account_id}/organizations/{org_id}/issues/link", methods=["POST"],
          auth_level=ANON)
def manage_issue_link(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: workitems.link_issue(s, r["account_id"], r["org_id"], r.json()))


@bp.function_name("manage_search")
@bp.route(route="manage/integrations/{account_id}/search", methods=["GET"], auth_level=ANON)
def manage_search(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: workitems.search(s, r["account_id"], r.query))
