"""Background delivery of service-hook notifications, like ADO's: in order, after the API call returns.

For an organization put on hold, notifications are kept instead, for a test to deliver itself (in
any order, twice, or never).

Does network I/O (HTTP POSTs to subscribers). Transient answers (408/502/503/504, connection
errors, timeouts) are retried a few times quickly; the final outcome goes to `State.delivery_result`.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from typing import Any

import requests

from devhost.sandbox.state import Job, State

log = logging.getLogger(__name__)

_TRANSIENT = (408, 502, 503, 504)


class Deliverer:
    """One worker thread draining a FIFO queue, so deliveries per subscription stay ordered."""

    def __init__(self, state: State, *, timeout: float, transient_retries: int = 2, backoff: float = 0.05) -> None:
        self.state = state
        self.timeout = timeout
        self.transient_retries = transient_retries
        self.backoff = backoff
        self.deliveries: list[dict[str, Any]] = []
        self.held: dict[str, list[Job]] = {}  # org → notifications kept for the test to deliver
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._pending = 0
        self._idle = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._session = requests.Session()
        self._session.trust_env = False  # never route loopback deliveries through an environment proxy

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="sandbox-ado-delivery", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)
        self._session.close()

    def enqueue(self, job: Job) -> None:
        with self._idle:
            if job.org in self.held:
                self.held[job.org].append(job)
                return
            self._pending += 1
        self._queue.put(job)

    def hold(self, org: str, held: bool = True) -> None:
        """Keep the notifications of `org` instead of sending them (a test then drops, duplicates,
        reorders or delays them itself, see `take_held`); `held=False` sends again from now on."""
        with self._idle:
            if held:
                self.held.setdefault(org.lower(), [])
            else:
                self.held.pop(org.lower(), None)

    def take_held(self, org: str) -> list[Job]:
        """The notifications of `org` kept since the last call, oldest first."""
        with self._idle:
            jobs = self.held.get(org.lower(), [])
            if org.lower() in self.held:
                self.held[org.lower()] = []
            return jobs

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                if not self._stopping.is_set() and self.state.is_active(job.org, job.subscription_id):
                    self._deliver(job)
            except Exception:  # the worker must survive a bug in one delivery
                log.exception("sandbox_ado.delivery.crashed")
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, job: Job) -> None:
        body = json.dumps(job.payload).encode()
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "VSServices/16.255.0",
            **job.headers,
        }
        auth = (job.username, job.password) if job.username or job.password else None
        status: int | None = None
        for attempt in range(1, self.transient_retries + 2):
            status, error = self._post(job.url, body, headers, auth)
            self._record(job, attempt, status, error)
            if status is not None and status not in _TRANSIENT:
                break
            if attempt <= self.transient_retries and self._stopping.wait(self.backoff * 2 ** (attempt - 1)):
                return
        self.state.delivery_result(job.org, job.subscription_id, status)

    def _post(
        self, url: str, body: bytes, headers: dict[str, str], auth: tuple[str, str] | None
    ) -> tuple[int | None, str | None]:
        try:
            resp = self._session.post(url, data=body, headers=headers, auth=auth, timeout=self.timeout)
        except requests.Timeout:
            return None, "timeout"
        except requests.RequestException as exc:
            return None, type(exc).__name__
        resp.close()
        return resp.status_code, None

    def _record(self, job: Job, attempt: int, status: int | None, error: str | None) -> None:
        resource = job.payload.get("resource") or {}
        entry = {
            "subscription_id": job.subscription_id,
            "url": job.url,
            "status": status,
            "error": error,
            "event_id": job.payload.get("id"),
            "event_type": job.payload.get("eventType"),
            "notification_id": job.payload.get("notificationId"),
            "work_item_id": job.work_item_id,
            "rev": resource.get("rev"),
            "attempt": attempt,
        }
        self.deliveries.append(entry)
        log.info(
            "sandbox_ado.delivery.sent",
            extra={k: entry[k] for k in ("subscription_id", "status", "error", "work_item_id", "attempt")},
        )
