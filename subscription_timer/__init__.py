"""Timer triggers: the six-hourly kickoff that queues a subscription check for each due link, and the
tracker-events sweep that relays outboxes whose notice was lost."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import telemetry
from shared.compose import services
from shared.flows import lifecycle, relay
from shared.telemetry import invocation_id

bp = func.Blueprint()
log = logging.getLogger(__name__)
SWEEP_SCHEDULE = "0 */10 * * * *"  # every ten minutes


@bp.function_name("subscription_timer")
@bp.timer_trigger(arg_name="timer", schedule="%SUBSCRIPTION_SCHEDULE%", run_on_startup=False, use_monitor=True)
def subscription_timer(timer: func.TimerRequest, context: func.Context) -> None:
    with telemetry.invocation(invocation_id(context)):
        if timer.past_due:
            log.info("kickoff.past_due")
        lifecycle.kickoff(services())


@bp.function_name("tracker_events_sweep")
@bp.timer_trigger(arg_name="timer", schedule=SWEEP_SCHEDULE, run_on_startup=False, use_monitor=True)
def tracker_events_sweep(timer: func.TimerRequest, context: func.Context) -> None:
    with telemetry.invocation(invocation_id(context)):
        relay.sweep(services())
