"""`GET /api/openapi.json` (no auth): the OpenAPI 3.1 document of every route."""

from __future__ import annotations

import azure.functions as func

from manage_http.common import ANON, bp
from shared.adapters.http import respond
from shared.core.reply import Reply
from shared.openapi import document
from shared.telemetry import invocation_id


@bp.function_name("openapi_document")
@bp.route(route="openapi.json", methods=["GET"], auth_level=ANON)
def openapi_document(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return respond(lambda: Reply(body=document()), event="openapi", invocation_id=invocation_id(context))
