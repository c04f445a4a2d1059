"""HTTP trigger: the Azure DevOps service-hook receiver, `POST /api/vsts/issue-updated`."""

from __future__ import annotations

import azure.functions as func

from shared.adapters.http import respond
from shared.compose import services
from shared.flows import inbound
from shared.telemetry import invocation_id

bp = func.Blueprint()


@bp.function_name("webhook_http")
@bp.route(route="vsts/issue-updated", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
def webhook_http(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    body = req.get_body() or b""
    return respond(lambda: inbound.handle(services(), body, req.headers), event="webhook",
                   invocation_id=invocation_id(context))
