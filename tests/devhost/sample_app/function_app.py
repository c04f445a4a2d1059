"""Sample function app for tests/devhost: HTTP, queue and timer functions that record what they saw.

Nothing here knows about the devhost; it would run the same under `func start`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

lock = threading.Lock()
failures: dict[str, int] = {}  # message body -> calls
attempts: dict[str, list[float]] = {}  # message body -> monotonic time of each call
received: list[dict[str, Any]] = []  # messages of the recording queue
ticks: list[bool] = []  # past_due of each `ticker` run
nightly_runs: list[bool] = []


@app.route(route="hello/{name}", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    document = {
        "name": req.route_params["name"],
        "greeting": req.params.get("greeting"),
        "agent": req.headers.get("x-sample"),
    }
    return func.HttpResponse(json.dumps(document), mimetype="application/json")


@app.route(route="hello/world", methods=["GET"])
def hello_world(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("literal route", status_code=200)


@app.route(route="items/{item_id:int}", methods=["POST"])
@app.queue_output(arg_name="out", queue_name="%SAMPLE_RECORD_QUEUE%", connection="AzureWebJobsStorage")
def create_item(req: func.HttpRequest, out: func.Out[str], context: func.Context) -> func.HttpResponse:
    out.set(req.get_body().decode("utf-8"))
    document = {"item_id": req.route_params["item_id"], "function": context.function_name,
                "has_invocation_id": bool(context.invocation_id)}
    return func.HttpResponse(json.dumps(document), status_code=201, headers={"X-Item": "yes"},
                             mimetype="application/json")


@app.route(route="settings/{name}", methods=["GET"])
def read_setting(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(os.environ.get(req.route_params["name"], "<unset>"))


@app.route(route="boom", methods=["GET"])
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("secret-internal-detail")


class Throttled(RuntimeError):
    """Carries a retry hint, which the Functions host ignores: the retry comes after `visibilityTimeout`."""

    retry_after = 3600.0


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_FAIL_QUEUE%", connection="AzureWebJobsStorage")
def always_fails(msg: func.QueueMessage) -> None:
    with lock:
        key = msg.get_body().decode("utf-8")
        failures[key] = failures.get(key, 0) + 1
        attempts.setdefault(key, []).append(time.monotonic())
    raise Throttled("always fails")


@app.queue_trigger(arg_name="msg", queue_name="%SAMPLE_RECORD_QUEUE%", connection="AzureWebJobsStorage")
def records(msg: func.QueueMessage) -> None:
    with lock:
        received.append(
            {"body": msg.get_body(), "dequeue_count": msg.dequeue_count, "id": msg.id, "at": time.monotonic()}
        )


@app.timer_trigger(arg_name="timer", schedule="%SAMPLE_SCHEDULE%", run_on_startup=False)
def ticker(timer: func.TimerRequest) -> None:
    with lock:
        ticks.append(timer.past_due)


@app.timer_trigger(arg_name="timer", schedule="0 0 3 1 1 *", run_on_startup=True)
def nightly(timer: func.TimerRequest) -> None:
    with lock:
        nightly_runs.append(timer.past_due)
