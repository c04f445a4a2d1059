"""App settings and host.json for the devhost, read the way Core Tools and the Functions host read them.

`local.settings.json` `Values` fill in what the environment does not already set; `%NAME%` in binding
values is resolved from the settings; `AzureFunctionsJobHost__a__b` settings override host.json keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

JOB_HOST_PREFIX = "AzureFunctionsJobHost__"
_PLACEHOLDER = re.compile(r"%([^%]+)%")
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d+))?)?$")


class HostError(RuntimeError):
    """The app cannot be hosted as configured (bad setting, host.json value or binding)."""


# Settings used in binding expressions that the bundle documents with a default (README "Settings").
# Core Tools would need them in local.settings.json and Azure gets them from the Bicep app settings.
BINDING_DEFAULTS = {"SUBSCRIPTION_SCHEDULE": "0 0 */6 * * *"}


def load_local_settings(path: Path) -> dict[str, str]:
    """The `Values` of a `local.settings.json` file, or nothing when the file does not exist."""
    if not path.is_file():
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise HostError(f"{path.name} is not valid JSON: {exc}") from None
    values = document.get("Values") if isinstance(document, dict) else None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise HostError(f"{path.name}: Values must be an object of strings")
    return {str(key): _as_text(value) for key, value in values.items()}


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def missing_from(environ: Mapping[str, str], file_values: Mapping[str, str]) -> dict[str, str]:
    """File values to export: a variable already set in the environment wins (as with Core Tools)."""
    return {key: value for key, value in file_values.items() if key not in environ}


def resolve(value: str, settings: Mapping[str, str], *, what: str) -> str:
    """Replace `%NAME%` placeholders with app settings; an unknown name is an error, as on the host."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in settings:
            raise HostError(f"{what}: '%{name}%' does not resolve to a value (app setting {name} is not set)")
        return settings[name]

    return _PLACEHOLDER.sub(lookup, value)


def load_host_json(path: Path, override: Mapping[str, Any] | None, environ: Mapping[str, str]) -> dict[str, Any]:
    """host.json (or `override` instead of the file), with `AzureFunctionsJobHost__...` settings applied."""
    if override is not None:
        document: dict[str, Any] = json.loads(json.dumps(override))
    elif path.is_file():
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise HostError(f"host.json is not valid JSON: {exc}") from None
    else:
        document = {"version": "2.0"}
    for key, value in environ.items():
        if key.startswith(JOB_HOST_PREFIX):
            _set_path(document, key[len(JOB_HOST_PREFIX):].split("__"), value)
    return document


def _set_path(document: dict[str, Any], path: list[str], value: str) -> None:
    node = document
    for part in path[:-1]:
        child = _get_ci(node, part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    existing = next((key for key in node if key.lower() == path[-1].lower()), path[-1])
    node[existing] = value


def _get_ci(node: Mapping[str, Any], key: str) -> Any:
    """host.json keys are case-insensitive."""
    return next((value for name, value in node.items() if name.lower() == key.lower()), None)


def parse_timespan(value: Any, *, what: str) -> float:
    """Seconds in a .NET TimeSpan string (`[d.]hh:mm[:ss[.fff]]`); plain numbers are seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _TIMESPAN.match(str(value).strip())
    if not match:
        raise HostError(f"host.json {what}: {value!r} is not a TimeSpan like 00:00:30")
    days, hours, minutes, seconds, fraction = match.groups()
    total = int(days or 0) * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
    return total + (float(f"0.{fraction}") if fraction else 0.0)


@dataclass(frozen=True)
class QueueOptions:
    """`extensions.queues` of host.json, with the queue extension's defaults (devhost polls every 2 s at most)."""

    batch_size: int = 16
    max_dequeue_count: int = 5
    visibility_timeout: float = 0.0
    max_polling_interval: float = 2.0
    message_encoding: str = "base64"

    @classmethod
    def from_host_json(cls, document: Mapping[str, Any]) -> QueueOptions:
        extensions = _get_ci(document, "extensions") or {}
        queues = _get_ci(extensions, "queues") or {}
        defaults = cls()

        def option(key: str) -> Any:
            return _get_ci(queues, key)

        batch_size = int(option("batchSize") or defaults.batch_size)
        max_dequeue = int(option("maxDequeueCount") or defaults.max_dequeue_count)
        encoding = str(option("messageEncoding") or defaults.message_encoding).lower()
        if not 1 <= batch_size <= 32:
            raise HostError("host.json extensions.queues.batchSize must be between 1 and 32")
        if max_dequeue < 1:
            raise HostError("host.json extensions.queues.maxDequeueCount must be at least 1")
        if encoding not in ("base64", "none"):
            raise HostError("host.json extensions.queues.messageEncoding must be base64 or none")
        visibility = option("visibilityTimeout")
        polling = option("maxPollingInterval")
        return cls(
            batch_size=batch_size,
            max_dequeue_count=max_dequeue,
            visibility_timeout=(
                parse_timespan(visibility, what="visibilityTimeout") if visibility is not None else 0.0
            ),
            max_polling_interval=max(
                0.1,
                parse_timespan(polling, what="maxPollingInterval")
                if polling is not None
                else defaults.max_polling_interval,
            ),
            message_encoding=encoding,
        )


def function_timeout(document: Mapping[str, Any], default: float = 300.0) -> float:
    """host.json `functionTimeout` in seconds (`-1` means unbounded: the default is used)."""
    value = _get_ci(document, "functionTimeout")
    if value is None or str(value).strip() == "-1":
        return default
    return parse_timespan(value, what="functionTimeout")


def storage_connection(name: str, settings: Mapping[str, str], *, what: str) -> str:
    """The connection string behind a binding's `connection` name (`AzureWebJobs` prefix optional)."""
    for candidate in (name, f"AzureWebJobs{name}"):
        value = settings.get(candidate, "").strip()
        if value:
            return value
    if any(key.startswith(f"{name}__") for key in settings):
        raise HostError(f"{what}: identity-based connection {name}__... is not supported by the devhost; "
                        f"set {name} to a connection string")
    raise HostError(f"{what}: app setting {name} (the storage connection string) is not set")
