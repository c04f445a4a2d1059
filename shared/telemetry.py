"""Observability: invocation context on every log record, and optional export to Application Insights.

Log messages are stable dotted event names (`webhook.rejected.bad_secret`, `subscription_check.replaced`)
with context in `extra` (account, organization, work item). `invocation()` binds the Functions
invocation id for the duration of a call, and every record then carries `invocation_id`.
OpenTelemetry export (`azure-monitor-opentelemetry`) is switched on by the first invocation when
`APPLICATIONINSIGHTS_CONNECTION_STRING` is set, unless the worker already does it
(`PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true`): never both, which would duplicate telemetry.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)

_invocation: contextvars.ContextVar[str | None] = contextvars.ContextVar("invocation_id", default=None)
_factory_lock = threading.Lock()
_factory_installed = False
_configured = False


def _install_record_factory() -> None:
    global _factory_installed
    with _factory_lock:
        if _factory_installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            invocation_id = _invocation.get()
            if invocation_id and not hasattr(record, "invocation_id"):
                record.invocation_id = invocation_id
            return record

        logging.setLogRecordFactory(factory)
        _factory_installed = True


def invocation_id(context: object) -> str | None:
    """The invocation id of a Functions `context` (None when a caller passes no context)."""
    value = getattr(context, "invocation_id", None)
    return value if isinstance(value, str) else None


@contextlib.contextmanager
def invocation(invocation_id: str | None) -> Iterator[None]:
    """Tag every log record written inside the block with the Functions invocation id."""
    ensure_configured()
    token = _invocation.set(invocation_id)
    try:
        yield
    finally:
        _invocation.reset(token)


def ensure_configured(
    environ: Mapping[str, str] | None = None,
    configure: Callable[..., Any] | None = None,
) -> bool:
    """Install the record factory and, when asked for, Application Insights export. True if exporting."""
    global _configured
    _install_record_factory()
    if _configured:
        return True
    environ = os.environ if environ is None else environ
    if not environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        return False
    if environ.get("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY", "").lower() == "true":
        return False  # the worker configures it; configuring again would duplicate every record
    if configure is None:
        try:
            from azure.monitor.opentelemetry import configure_azure_monitor
        except ImportError:
            log.warning("telemetry.exporter_missing")
            return False
        configure = configure_azure_monitor
    try:
        configure(connection_string=environ["APPLICATIONINSIGHTS_CONNECTION_STRING"])
    except Exception as error:  # telemetry must never take the app down
        log.warning("telemetry.configure_failed", extra={"error": type(error).__name__})
        return False
    _configured = True
    return True
