"""Management routes of tracker events: the pull feed, deliveries and replay, the organization's endpoint."""

from __future__ import annotations

import azure.functions as func

from manage_http.common import ANON, bp, manage
from shared.flows import event_api


@bp.function_name("manage_events_get")
@bp.route(route="manage/organizations/{org_id}/events", methods=["GET"], auth_level=ANON)
def manage_events_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: event_api.events(s, r["org_id"], r.query))


@bp.function_name("manage_deliveries_get")
@bp.route(route="manage/organizations/{org_id}/deliveries", methods=["GET"], auth_level=ANON)
def manage_deliveries_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: event_api.deliveries(s, r["org_id"], r.query))


@bp.function_name("manage_delivery_replay")
@bp.route(route="manage/organizations/{org_id}/deliveries/{delivery_id}/replay", methods=["POST"],
          auth_level=ANON)
def manage_delivery_replay(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: event_api.replay(s, r["org_id"], r["delivery_id"]))


@bp.function_name("manage_tracker_config_put")
@bp.route(route="manage/organizations/{org_id}/config", methods=["PUT"], auth_level=ANON)
def manage_tracker_config_put(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: event_api.put_config(s, r["org_id"], r.json()))


@bp.function_name("manage_tracker_config_get")
@bp.route(route="manage/organizations/{org_id}/config", methods=["GET"], auth_level=ANON)
def manage_tracker_config_get(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return manage(req, context, lambda s, r: event_api.get_config(s, r["org_id"]))
