"""Management route of reconciliation: queue a pass over an integration's linked work items."""

from __future__ import annotations

import azure.functions as func

from manage_http.common import ANON, bp, manage
from shared.flows import lifecycle


@bp.function_name("manage_integration_reconcile")
@bp.route(route="manage/integrations/{account_id}/reconcile", methods=["POST"], auth_level=ANON)
def manage_integration_reconcile(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: lifecycle.request_reconcile(s, r["account_id"]))
