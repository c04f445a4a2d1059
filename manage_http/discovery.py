"""Management routes that read Azure DevOps for an administrator: projects, work item types with their
fields and states, area and iteration paths, users (paging and caching: `shared.flows.discovery`)."""

from __future__ import annotations

import azure.functions as func

from manage_http.common import ANON, bp, manage
from shared.flows import discovery

PROJECTS = "manage/integrations/{account_id}/projects"


@bp.function_name("manage_ado_projects")
@bp.route(route=PROJECTS, methods=["GET"], auth_level=ANON)
def manage_ado_projects(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: discovery.projects(s, r["account_id"], r.query))


@bp.function_name("manage_ado_work_item_types")
@bp.route(route=PROJECTS + "/{project}/work-item-types", methods=["GET"], auth_level=ANON)
def manage_ado_work_item_types(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: discovery.work_item_types(s, r["account_id"], r["project"], r.query))


@bp.function_name("manage_ado_states")
@bp.route(route=PROJECTS + "/{project}/work-item-types/{type}/states", methods=["GET"], auth_level=ANON)
def manage_ado_states(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context,
                  lambda s, r: discovery.states(s, r["account_id"], r["project"], r["type"], r.query))


@bp.function_name("manage_ado_areas")
@bp.route(route=PROJECTS + "/{project}/areas", methods=["GET"], auth_level=ANON)
def manage_ado_areas(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: discovery.areas(s, r["account_id"], r["project"], r.query))


@bp.function_name("manage_ado_iterations")
@bp.route(route=PROJECTS + "/{project}/iterations", methods=["GET"], auth_level=ANON)
def manage_ado_iterations(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: discovery.iterations(s, r["account_id"], r["project"], r.query))


@bp.function_name("manage_ado_users")
@bp.route(route="manage/integrations/{account_id}/users", methods=["GET"], auth_level=ANON)
def manage_ado_users(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: discovery.users(s, r["account_id"], r.query))
