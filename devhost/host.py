"""The devhost: runs every function of a Python v2 function app with Functions host semantics.

It has no list of functions of its own: it indexes the app (`app.get_functions()`) and serves
HTTP triggers, polls queue triggers and schedules timer triggers from their bindings. Settings
come from the environment and `local.settings.json` (the environment wins) and are exported to
`os.environ` before the app is imported; `stop()` restores the environment.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from devhost import functions
from devhost.functions import Function, Result
from devhost.http_server import Router, Server
from devhost.queues import SHUTDOWN_GRACE, QueueClients, QueuePoller
from devhost.settings import (
    BINDING_DEFAULTS,
    HostError,
    QueueOptions,
    function_timeout,
    load_host_json,
    load_local_settings,
    missing_from,
    resolve,
    storage_connection,
)
from devhost.timers import TimerRunner

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
JOIN_SECONDS = 5.0


class Host:
    """A running function app: HTTP server, queue pollers and timers. Usable as a context manager.

    `settings` are applied over the environment (tests use them instead of mutating `os.environ`);
    `host_json` replaces the app's host.json; `poll_interval_cap` caps the empty-queue back-off.
    """

    def __init__(
        self,
        *,
        app_module: str = "function_app",
        app_root: Path = REPO_ROOT,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: Mapping[str, str] | None = None,
        poll_interval_cap: float | None = None,
        host_json: Mapping[str, Any] | None = None,
    ) -> None:
        self.app_module = app_module
        self.app_root = Path(app_root)
        self.bind = (host, port)
        self.extra_settings = dict(settings or {})
        self.poll_interval_cap = poll_interval_cap
        self.host_json_override = host_json
        self.functions: list[Function] = []
        self.options = QueueOptions()
        self._stop = threading.Event()
        self._saved_env: dict[str, str | None] = {}
        self._server: Server | None = None
        self._server_thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._clients = QueueClients()
        self._pollers: list[QueuePoller] = []
        self._timers: list[TimerRunner] = []
        self._resolved: dict[str, dict[str, str]] = {}

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> Host:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise HostError("the host is not running")
        address, port = self._server.server_address[:2]
        return f"http://{address!s}:{port}"

    def start(self) -> None:
        """Export settings, index the app, then start the HTTP server, pollers and timers."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        self._export_settings()
        document = load_host_json(self.app_root / "host.json", self.host_json_override, os.environ)
        self.options = QueueOptions.from_host_json(document)
        lease = int(function_timeout(document))
        self.functions = self._supported(functions.load(self.app_module, self.app_root))
        self._resolve_bindings()
        self._pool = ThreadPoolExecutor(self.options.batch_size, thread_name_prefix="devhost-queue-worker")
        poll_cap = self.options.max_polling_interval
        if self.poll_interval_cap is not None:
            poll_cap = min(poll_cap, self.poll_interval_cap)
        for function in self.functions:
            values = self._resolved[function.name]
            if function.trigger_type == "queueTrigger":
                self._pollers.append(QueuePoller(
                    function, queue_name=values["queueName"], connection=values["connection"],
                    clients=self._clients, options=self.options, pool=self._pool, run=self.run,
                    stop=self._stop, lease_seconds=lease, poll_cap=poll_cap,
                ))
            elif function.trigger_type == "timerTrigger":
                self._timers.append(TimerRunner(
                    function, expression=values["schedule"],
                    run_on_startup=bool(function.trigger.get("runOnStartup")), run=self.run, stop=self._stop,
                ))
        self._server = Server(self.bind, Router(self.functions), self.run, self.run_admin)
        self._server_thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="devhost-http", daemon=True
        )
        self._server_thread.start()
        workers: list[QueuePoller | TimerRunner] = [*self._pollers, *self._timers]
        for worker in workers:
            worker.start()
        log.info("devhost.started", extra={"url": self.url, "functions": [f.name for f in self.functions]})

    def stop(self) -> None:
        """Stop promptly: no new work, close the server, release queued messages, restore the environment."""
        self._stop.set()
        server, thread = self._server, self._server_thread
        self._server, self._server_thread = None, None
        if server is not None:
            if thread is not None and thread.is_alive():
                server.shutdown()
                thread.join(JOIN_SECONDS)
            server.server_close()
        workers: list[QueuePoller | TimerRunner] = [*self._pollers, *self._timers]
        for worker in workers:
            worker.join(JOIN_SECONDS + SHUTDOWN_GRACE)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._clients.close()
        self._restore_settings()

    # -- settings --------------------------------------------------------------------------------

    def _export_settings(self) -> None:
        file_values = load_local_settings(self.app_root / "local.settings.json")
        known = {**os.environ, **file_values, **self.extra_settings}
        exported = {**missing_from(known, BINDING_DEFAULTS), **missing_from(os.environ, file_values),
                    **self.extra_settings}
        for key, value in exported.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value
        _reset_app_config()

    def _restore_settings(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self._saved_env:
            _reset_app_config()
        self._saved_env = {}

    def _supported(self, indexed: list[Function]) -> list[Function]:
        kept = []
        for function in indexed:
            problems = functions.unsupported_bindings(function)
            if problems:
                log.warning("devhost.function.skipped", extra={"function": function.name, "bindings": problems})
            else:
                kept.append(function)
        return kept

    def _resolve_bindings(self) -> None:
        """Resolve `%SETTING%` values and queue connections now, so a bad setting fails at start."""
        settings = dict(os.environ)
        for function in self.functions:
            trigger = function.trigger
            values: dict[str, str] = {}
            what = f"function {function.name}"
            if function.trigger_type == "queueTrigger":
                values["queueName"] = resolve(str(trigger["queueName"]), settings, what=what).lower()
                values["connection"] = storage_connection(
                    str(trigger.get("connection") or "AzureWebJobsStorage"), settings, what=what
                )
            elif function.trigger_type == "timerTrigger":
                values["schedule"] = resolve(str(trigger["schedule"]), settings, what=what)
            for binding in function.outputs():
                if binding.get("type") == "queue":
                    name = binding["name"]
                    values[f"{name}.queueName"] = resolve(str(binding["queueName"]), settings, what=what).lower()
                    values[f"{name}.connection"] = storage_connection(
                        str(binding.get("connection") or "AzureWebJobsStorage"), settings, what=what
                    )
            self._resolved[function.name] = values

    # -- invocation ------------------------------------------------------------------------------

    def run(self, function: Function, trigger_value: Any) -> Result:
        """Invoke a function and deliver its queue output bindings (only after it succeeded)."""
        result = functions.invoke(function, trigger_value)
        values = self._resolved[function.name]
        for binding in function.outputs():
            name = binding["name"]
            value = result.value if name == "$return" else result.outputs.get(name)
            if binding.get("type") == "queue" and value is not None:
                self._clients.send(
                    values[f"{name}.connection"], values[f"{name}.queueName"], value, self.options.message_encoding
                )
        return result

    def run_admin(self, name: str, body: bytes) -> int:
        """`POST /admin/functions/<name>`: start a non-HTTP function in the background (202)."""
        function = next((f for f in self.functions if f.name.lower() == name.lower()), None)
        if function is None:
            return 404
        if function.trigger_type == "httpTrigger":
            return 400
        if function.trigger_type == "timerTrigger":
            from azure.functions.timer import TimerRequest

            trigger_value: Any = TimerRequest(past_due=False)
        else:
            from azure.functions.queue import QueueMessage

            trigger_value = QueueMessage(  # type: ignore[no-untyped-call]
                id=str(uuid.uuid4()), body=_admin_input(body).encode("utf-8"), dequeue_count=1
            )
        threading.Thread(
            target=self._run_logged, args=(function, trigger_value), name=f"devhost-admin-{function.name}",
            daemon=True,
        ).start()
        return 202

    def _run_logged(self, function: Function, trigger_value: Any) -> None:
        try:
            self.run(function, trigger_value)
        except Exception:
            log.exception("devhost.admin.function_failed", extra={"function": function.name})

    def describe(self) -> list[str]:
        """`name: trigger detail` for every function (for the startup banner)."""
        lines = []
        for function in self.functions:
            values = self._resolved.get(function.name, {})
            detail = {
                "queueTrigger": f"queue={values.get('queueName')}",
                "timerTrigger": f"schedule={values.get('schedule')!r}",
            }.get(function.trigger_type, "")
            lines.append(f"{function.name}: {function.trigger_type} {detail}".rstrip())
        return lines

    def routes(self) -> list[str]:
        """`METHODS url` for every HTTP function (for the startup banner)."""
        lines = []
        for route in Router(self.functions).routes:
            methods = ",".join(sorted(route.methods)) if route.methods else "*"
            lines.append(f"{route.function.name}: [{methods}] {self.url}/api/{route.template}")
        return lines


def _admin_input(body: bytes) -> str:
    """The `input` of an admin request body (`{"input": "..."}`), as the host's admin API takes it."""
    if not body.strip():
        return ""
    try:
        document = json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")
    value = document.get("input", "") if isinstance(document, dict) else document
    return value if isinstance(value, str) else json.dumps(value)


def _reset_app_config() -> None:
    """Drop the app's cached settings (`shared.config`), when the app has that module."""
    try:
        from shared import config
    except ImportError:
        return
    config.reset()
