"""Management routes of group comments: write, delete and read one comment."""

from __future__ import annotations

import azure.functions as func

from manage_http.common import ANON, bp, manage
from shared.flows import comments

ROUTE = "manage/organizations/{org_id}/groups/{group_id}/comments/{comment_id}"


@bp.function_name("manage_comment_put")
@bp.route(route=ROUTE, methods=["PUT"], auth_level=ANON)
def manage_comment_put(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: comments.put_comment(s, r["org_id"], r["group_id"], r["comment_id"],
                                                                  r.json()))


@bp.function_name("manage_comment_delete")
@bp.route(route=ROUTE, methods=["DELETE"], auth_level=ANON)
def manage_comment_delete(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: comments.delete_comment(s, r["org_id"], r["group_id"], r["comment_id"]))


@bp.function_name("manage_comment_get")
@bp.route(route=ROUTE, methods=["GET"], auth_level=ANON)
def manage_comment_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: comments.get_comment(s, r["org_id"], r["group_id"], r["comment_id"]))
