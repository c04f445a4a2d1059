"""Management routes of credentials: rotate an integration's service-hook secret."""

from __future__ import annotations

import azure.functions as func

from manage_http.common import ANON, bp, manage
from shared.flows import rotation


@bp.function_name("manage_rotate_secret")
@bp.route(route="manage/integrations/{account_id}/rotate-secret", methods=["POST"], auth_level=ANON)
def manage_rotate_secret(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: rotation.rotate_secret(s, r["account_id"]))
