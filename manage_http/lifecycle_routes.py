"""Management routes that take things apart: uninstall, unlink an organization, unlink a work item."""

from __future__ import annotations

import azure.functions as func

from manage_http.common import ANON, bp, manage
from shared.flows import uninstall, unlink


@bp.function_name("manage_integration_delete")
@bp.route(route="manage/integrations/{account_id}", methods=["DELETE"], auth_level=ANON)
def manage_integration_delete(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: uninstall.uninstall(s, r["account_id"]))


@bp.function_name("manage_org_unlink")
@bp.route(route="manage/integrations/{account_id}/organizations/{org_id}", methods=["DELETE"], auth_level=ANON)
def manage_org_unlink(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: uninstall.unlink_organization(s, r["account_id"], r["org_id"]))


@bp.function_name("manage_link_delete")
@bp.route(route="manage/organizations/{org_id}/groups/{group_id}/links/{account_id}/{key}", methods=["DELETE"],
          auth_level=ANON)
def manage_link_delete(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: unlink.unlink_work_item(
        s, r["org_id"], r["group_id"], r["account_id"], r["key"],
        comment=unlink.wants_comment(r.query, r.json_or_empty())))
