"""What every management route shares: the blueprint, and authentication with the management key."""

from __future__ import annotations

from collections.abc import Callable

import azure.functions as func

from shared.adapters.http import Request, check_bearer, respond
from shared.compose import Services, services
from shared.config import settings
from shared.core.reply import Reply
from shared.telemetry import invocation_id

bp = func.Blueprint()
ANON = func.AuthLevel.ANONYMOUS
Handler = Callable[[Services, Request], Reply]


def manage(req: func.HttpRequest, context: func.Context, handler: Handler) -> func.HttpResponse:
    """Authenticate with the management key, then run `handler`."""

    def run() -> Reply:
        check_bearer(req.headers, settings().manage_api_key)
        return handler(services(), Request(req))

    return respond(run, event="manage", invocation_id=invocation_id(context))
