"""Queue triggers: subscription check, repository migration, outbound sync to Azure DevOps, tracker events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import azure.functions as func

from shared.compose import Services, services
from shared.flows import jobs, lifecycle, migration, outbound, relay
from shared.telemetry import invocation_id

bp = func.Blueprint()
CONNECTION = "AzureWebJobsStorage"


def _run(queue: str, msg: func.QueueMessage, context: func.Context,
         handler: Callable[[Services, dict[str, Any]], None]) -> None:
    svc = services()
    jobs.run(queue, msg.get_body(), lambda message: handler(svc, message), send=svc.send,
             dequeue_count=msg.dequeue_count or 1, invocation_id=invocation_id(context))


@bp.function_name("subscription_check")
@bp.queue_trigger(arg_name="msg", queue_name="subscription-check", connection=CONNECTION)
def subscription_check(msg: func.QueueMessage, context: func.Context) -> None:
    _run("subscription-check", msg, context, lifecycle.check_subscription)


@bp.function_name("migrate_repo")
@bp.queue_trigger(arg_name="msg", queue_name="migrate-repo", connection=CONNECTION)
def migrate_repo(msg: func.QueueMessage, context: func.Context) -> None:
    _run("migrate-repo", msg, context, migration.migrate_repository)


@bp.function_name("sync_outbound")
@bp.queue_trigger(arg_name="msg", queue_name="sync-outbound", connection=CONNECTION)
def sync_outbound(msg: func.QueueMessage, context: func.Context) -> None:
    _run("sync-outbound", msg, context, outbound.handle)


@bp.function_name("tracker_events")
@bp.queue_trigger(arg_name="msg", queue_name="tracker-events", connection=CONNECTION)
def tracker_events(msg: func.QueueMessage, context: func.Context) -> None:
    _run("tracker-events", msg, context, relay.relay)
