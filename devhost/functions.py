"""Index a Python v2 function app the way the worker does, and invoke one of its functions.

The app module must hold exactly one `azure.functions.FunctionRegister`; `get_functions()` is called
once per app object (it is not idempotent), so several hosts in one process share the index.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys
import threading
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

from devhost.settings import HostError

SUPPORTED_TRIGGERS = ("httpTrigger", "queueTrigger", "timerTrigger")
_index_lock = threading.Lock()
_indexed: dict[int, tuple[object, list[Any]]] = {}


@dataclass(frozen=True)
class Function:
    """One indexed function: its name, trigger binding and other bindings (as in function.json)."""

    name: str
    trigger: dict[str, Any]
    bindings: list[dict[str, Any]]
    user_function: Callable[..., Any]
    directory: str = ""

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    def outputs(self) -> list[dict[str, Any]]:
        return [b for b in self.bindings if b is not self.trigger and str(b.get("direction")).upper() == "OUT"]


class Out:
    """A `func.Out[...]` output binding value collected during one invocation."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, value: Any) -> None:
        self._value = value

    def get(self) -> Any:
        return self._value


@dataclass(frozen=True)
class Context:
    """What the worker passes to a parameter named `context`."""

    invocation_id: str
    function_name: str
    function_directory: str
    trace_context: None = None
    retry_context: None = None
    thread_local_storage: threading.local = field(default_factory=threading.local)


@dataclass
class Result:
    """The return value of an invocation and the values set on its output bindings."""

    value: Any
    outputs: dict[str, Any]


def load(app_module: str, app_root: Path) -> list[Function]:
    """Import the app module (app root on `sys.path`) and index its functions."""
    root = str(app_root)
    if root not in sys.path:
        sys.path.insert(0, root)
    module = importlib.import_module(app_module)
    apps = [value for value in vars(module).values() if isinstance(value, func.FunctionRegister)]
    if not apps:
        raise HostError(f"Could not find top level function app instances in {app_module}")
    if len(apps) > 1:
        raise HostError(f"More than one FunctionApp or other top level function app instances in {app_module}")
    app = apps[0]
    with _index_lock:
        if id(app) not in _indexed:
            _indexed[id(app)] = (app, list(app.get_functions()))
        indexed = _indexed[id(app)][1]
    directory = str(Path(module.__file__ or root).parent)
    return [_describe(fn, directory) for fn in indexed]


def _describe(fn: Any, directory: str) -> Function:
    bindings = json.loads(fn.get_function_json())["bindings"]
    triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
    if len(triggers) != 1:
        raise HostError(f"function {fn.get_function_name()} must have exactly one trigger")
    _check_context(fn.get_function_name(), fn.get_user_function())
    return Function(
        name=fn.get_function_name(),
        trigger=triggers[0],
        bindings=bindings,
        user_function=fn.get_user_function(),
        directory=directory,
    )


def _check_context(name: str, user_function: Any) -> None:
    """Refuse a `context` parameter the Python worker would refuse (it must be azure.functions.Context)."""
    if "context" not in inspect.signature(user_function).parameters:
        return
    try:
        hint = typing.get_type_hints(user_function).get("context")
    except Exception as exc:  # unresolvable annotations fail on the worker too
        raise HostError(f"function {name}: cannot resolve its type hints ({exc})") from None
    if hint is not None and hint is not func.Context:
        raise HostError(f"function {name}: the 'context' parameter must be annotated azure.functions.Context, "
                        f"got {hint!r} (the Functions worker refuses to load it)")


def unsupported_bindings(function: Function) -> list[str]:
    """Binding types the devhost cannot provide for this function (it is skipped when non-empty)."""
    problems = []
    if function.trigger_type not in SUPPORTED_TRIGGERS:
        problems.append(function.trigger_type)
    for binding in function.bindings:
        if binding is function.trigger:
            continue
        supported = binding.get("type") in ("http", "queue") and str(binding.get("direction")).upper() == "OUT"
        if not supported:
            problems.append(str(binding.get("type")))
    return problems


def invoke(function: Function, trigger_value: Any) -> Result:
    """Call the user function with its trigger value, a `context` if wanted and `Out` objects."""
    signature = inspect.signature(function.user_function)
    outputs = {b["name"]: Out() for b in function.outputs() if b["name"] != "$return"}
    kwargs: dict[str, Any] = {}
    for name in signature.parameters:
        if name == function.trigger["name"]:
            kwargs[name] = trigger_value
        elif name in outputs:
            kwargs[name] = outputs[name]
        elif name == "context":
            kwargs[name] = Context(
                invocation_id=str(uuid.uuid4()),
                function_name=function.name,
                function_directory=function.directory,
            )
    value = function.user_function(**kwargs)
    if inspect.isawaitable(value):
        value = asyncio.run(_await(value))
    return Result(value=value, outputs={name: out.get() for name, out in outputs.items()})


async def _await(awaitable: Any) -> Any:
    return await awaitable

