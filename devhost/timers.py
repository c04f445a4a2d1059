"""Timer triggers: NCRONTAB schedules (six fields, seconds first; five also accepted) in UTC.

One thread per timer function; a run that is still going is never overlapped (as with the host's
singleton lock) and missed occurrences are skipped, not replayed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from azure.functions.timer import TimerRequest
from croniter import croniter
from croniter.croniter import CroniterError

from devhost.functions import Function
from devhost.settings import HostError

log = logging.getLogger(__name__)

LATE_AFTER_SECONDS = 1.0
Runner = Callable[[Function, Any], Any]


def schedule(expression: str, start: datetime) -> croniter:
    """An iterator over the occurrences of an NCRONTAB expression after `start`."""
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise HostError(f"schedule {expression!r} must have six fields (second minute hour day month weekday)")
    try:
        return croniter(expression, start, second_at_beginning=len(fields) == 6)
    except (CroniterError, ValueError) as exc:
        raise HostError(f"schedule {expression!r} is not valid NCRONTAB: {exc}") from None


class TimerRunner:
    """Runs one timer function on its schedule until `stop` is set."""

    def __init__(
        self,
        function: Function,
        *,
        expression: str,
        run_on_startup: bool,
        run: Runner,
        stop: threading.Event,
    ) -> None:
        schedule(expression, datetime.now(UTC))  # fail at start on a bad expression
        self.function = function
        self.expression = expression
        self.run_on_startup = run_on_startup
        self.run_function = run
        self.stop = stop
        self.thread = threading.Thread(target=self._loop, name=f"devhost-timer-{function.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread.ident is not None:
            self.thread.join(timeout)

    def next_run(self, after: datetime) -> datetime:
        nxt: datetime = schedule(self.expression, after).get_next(datetime)
        return nxt

    def _loop(self) -> None:
        if self.run_on_startup:
            self._fire(past_due=False)
        while not self.stop.is_set():
            due = self.next_run(datetime.now(UTC))
            while not self.stop.is_set():
                remaining = (due - datetime.now(UTC)).total_seconds()
                if remaining <= 0:
                    break
                self.stop.wait(min(remaining, 60.0))
            if self.stop.is_set():
                return
            late = (datetime.now(UTC) - due).total_seconds()
            self._fire(past_due=late > LATE_AFTER_SECONDS)

    def _fire(self, *, past_due: bool) -> None:
        try:
            self.run_function(self.function, TimerRequest(past_due=past_due))
        except Exception:
            log.exception("devhost.timer.function_failed", extra={"function": self.function.name})
