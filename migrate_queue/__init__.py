"""Queue triggers: subscription check, repository migration, and outbound sync to Azure DevOps."""

from __future__ import annotations

import azure.functions as func

from shared import jobs, lifecycle, migrate, outbound_sync
from shared.telemetry import invocation_id

bp = func.Blueprint()
CONNECTION = "AzureWebJobsStorage"


@bp.function_name("subscription_check")
@bp.queue_trigger(arg_name="msg", queue_name="subscription-check", connection=CONNECTION)
def subscription_check(msg: func.QueueMessage, context: func.Context) -> None:
    jobs.run("subscription-check", msg.get_body(), lifecycle.check_subscription,
             dequeue_count=msg.dequeue_count or 1, invocation_id=invocation_id(context))


@bp.function_name("migrate_repo")
@bp.queue_trigger(arg_name="msg", queue_name="migrate-repo", connection=CONNECTION)
def migrate_repo(msg: func.QueueMessage, context: func.Context) -> None:
    jobs.run("migrate-repo", msg.get_body(), migrate.migrate_repository, dequeue_count=msg.dequeue_count or 1,
             invocation_id=invocation_id(context))


@bp.function_name("sync_outbound")
@bp.queue_trigger(arg_name="msg", queue_name="sync-outbound", connection=CONNECTION)
def sync_outbound(msg: func.QueueMessage, context: func.Context) -> None:
    jobs.run("sync-outbound", msg.get_body(), outbound_sync.sync_work_item,
             dequeue_count=msg.dequeue_count or 1, invocation_id=invocation_id(context))
