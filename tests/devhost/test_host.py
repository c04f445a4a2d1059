"""The devhost runs tests/devhost/sample_app with host semantics, against a real Azurite."""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azure.storage.queue import QueueClient, TextBase64EncodePolicy
from conftest import wait_for

from devhost import azurite as azurite_process
from devhost.host import REPO_ROOT, Host
from devhost.http_server import compile_template
from devhost.queues import decode_body, retry_delay
from devhost.settings import HostError, QueueOptions, load_host_json, parse_timespan, resolve
from tests.devhost.sample_app import function_app as sample

APP = "tests.devhost.sample_app.function_app"
MAX_DEQUEUE = 3
HOST_JSON = {
    "version": "2.0",
    "extensions": {"queues": {"maxDequeueCount": MAX_DEQUEUE, "visibilityTimeout": "00:00:00", "batchSize": 8}},
}
SUFFIX = uuid.uuid4().hex[:8]
FAIL_QUEUE = f"devhost-fail-{SUFFIX}"
RECORD_QUEUE = f"devhost-record-{SUFFIX}"


@pytest.fixture(scope="module")
def storage() -> Iterator[str]:
    emulator = azurite_process.start()
    try:
        yield emulator.connection_string
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def app_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("app")
    values = {"SAMPLE_SCHEDULE": "*/1 * * * * *", "SAMPLE_FROM_FILE": "from-file", "SAMPLE_OVERRIDDEN": "from-file"}
    (root / "local.settings.json").write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return root


@pytest.fixture(scope="module")
def settings(storage: str) -> dict[str, str]:
    return {"AzureWebJobsStorage": storage, "SAMPLE_FAIL_QUEUE": FAIL_QUEUE, "SAMPLE_RECORD_QUEUE": RECORD_QUEUE}


@pytest.fixture(scope="module")
def host(app_root: Path, settings: dict[str, str]) -> Iterator[Host]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAMPLE_OVERRIDDEN", "from-env")
        with Host(app_module=APP, app_root=app_root, settings=settings, poll_interval_cap=0.05,
                  host_json=HOST_JSON) as running:
            yield running


def queue(storage: str, name: str, *, base64_encoded: bool = True) -> QueueClient:
    policy = TextBase64EncodePolicy() if base64_encoded else None
    client = QueueClient.from_connection_string(storage, name, message_encode_policy=policy)
    return client


def poison_messages(storage: str, name: str) -> list[str]:
    client = queue(storage, f"{name}-poison")
    try:
        return [m.content for m in client.peek_messages(max_messages=32)]
    except Exception:  # the poison queue does not exist yet
        return []


# -- HTTP ------------------------------------------------------------------------------------------


def test_unknown_route_is_404_json(host: Host) -> None:
    for path in ("/api/nope", "/api/hello", "/elsewhere", "/api/items/12/extra"):
        response = requests.get(host.url + path, timeout=5)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "Not found"}


def test_wrong_method_is_405_with_allow(host: Host) -> None:
    response = requests.post(host.url + "/api/hello/bob", data=b"x", timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert requests.get(host.url + "/api/items/12", timeout=5).status_code == 405


def test_route_params_query_and_headers(host: Host) -> None:
    response = requests.get(
        host.url + "/api/hello/J%C3%B6rg", params={"greeting": "Hi there"}, headers={"X-Sample": "yes"}, timeout=5
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"name": "Jörg", "greeting": "Hi there", "agent": "yes"}


def test_literal_route_wins_over_parameter(host: Host) -> None:
    assert requests.get(host.url + "/api/hello/world", timeout=5).text == "literal route"


def test_int_constraint_context_and_queue_output(host: Host) -> None:
    assert requests.post(host.url + "/api/items/abc", data=b"{}", timeout=5).status_code == 404
    marker = uuid.uuid4().hex
    response = requests.post(host.url + "/api/items/12", json={"marker": marker}, timeout=5)
    assert response.status_code == 201
    assert response.headers["X-Item"] == "yes"
    assert response.json() == {"item_id": "12", "function": "create_item", "has_invocation_id": True}
    # The output binding wrote a base64 message that the `records` queue trigger then received.
    seen = wait_for(lambda: [m for m in list(sample.received) if marker.encode() in m["body"]])
    assert json.loads(seen[0]["body"]) == {"marker": marker}


def test_function_exception_is_generic_500(host: Host, caplog: pytest.LogCaptureFixture) -> None:
    response = requests.get(host.url + "/api/boom", timeout=5)
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}
    assert "secret-internal-detail" not in response.text
    assert any(r.getMessage() == "devhost.http.function_failed" for r in caplog.records)


def test_oversized_body_is_413_and_disconnects_do_not_hurt(host: Host) -> None:
    port = int(host.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"POST /api/items/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 200000000\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 413")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"POST /api/items/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"half")
    assert requests.get(host.url + "/api/hello/after", timeout=5).status_code == 200


# -- queues ----------------------------------------------------------------------------------------


def test_valid_base64_json_message_reaches_function_decoded(host: Host, storage: str) -> None:
    marker = uuid.uuid4().hex
    sent = queue(storage, RECORD_QUEUE).send_message(json.dumps({"marker": marker}))
    seen = wait_for(lambda: [m for m in list(sample.received) if m["id"] == sent.id])
    assert json.loads(seen[0]["body"]) == {"marker": marker}
    assert seen[0]["dequeue_count"] == 1


def test_failing_message_is_poisoned_after_exactly_max_dequeue_count(host: Host, storage: str) -> None:
    marker = f"fail-{uuid.uuid4().hex}"
    queue(storage, FAIL_QUEUE).send_message(marker)
    poisoned = wait_for(lambda: poison_messages(storage, FAIL_QUEUE))
    assert sample.failures[marker] == MAX_DEQUEUE
    assert poisoned == [base64.b64encode(marker.encode()).decode()]  # the original, still-encoded text
    time.sleep(0.5)
    assert sample.failures[marker] == MAX_DEQUEUE  # deleted from the source queue: no more attempts
    assert list(queue(storage, FAIL_QUEUE).peek_messages()) == []


def test_undecodable_message_is_poisoned_without_calling_the_function(
    host: Host, storage: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="devhost.queues")
    raw = queue(storage, RECORD_QUEUE, base64_encoded=False)
    not_base64 = raw.send_message("not base64 {%}")
    not_utf8 = raw.send_message(base64.b64encode(b"\xff\xfe\xfd").decode())
    poisoned = wait_for(lambda: len(poison_messages(storage, RECORD_QUEUE)) == 2 and poison_messages(
        storage, RECORD_QUEUE))
    assert sorted(poisoned) == sorted(["not base64 {%}", base64.b64encode(b"\xff\xfe\xfd").decode()])
    assert not [m for m in list(sample.received) if m["id"] in (not_base64.id, not_utf8.id)]
    for message in (not_base64, not_utf8):
        attempts = [r.dequeue_count for r in caplog.records  # type: ignore[attr-defined]
                    if r.getMessage() == "devhost.queue.undecodable" and r.message_id == message.id]
        assert sorted(attempts) == list(range(1, MAX_DEQUEUE + 1))


def test_failed_message_returns_after_visibility_timeout_whatever_the_function_hints(
    host: Host, storage: str
) -> None:
    marker = f"hint-{uuid.uuid4().hex}"
    queue(storage, FAIL_QUEUE).send_message(marker)
    wait_for(lambda: poison_messages(storage, FAIL_QUEUE) and sample.failures.get(marker) == MAX_DEQUEUE, timeout=20)
    times = sample.attempts[marker]
    # visibilityTimeout 0: each retry follows at once, although the exception asked for an hour
    assert max(b - a for a, b in itertools.pairwise(times)) < 5


def test_retry_delay_is_the_visibility_timeout_only() -> None:
    assert retry_delay(QueueOptions()) == 0
    assert retry_delay(QueueOptions(visibility_timeout=2.0)) == 2
    assert retry_delay(QueueOptions(visibility_timeout=30 * 24 * 3600.0)) == 7 * 24 * 3600


def test_sender_visibility_delay_is_kept(host: Host, storage: str) -> None:
    marker = uuid.uuid4().hex
    sent_at = time.monotonic()
    sent = queue(storage, RECORD_QUEUE).send_message(json.dumps({"delayed": marker}), visibility_timeout=2)
    seen = wait_for(lambda: [m for m in list(sample.received) if m["id"] == sent.id], timeout=15)
    assert seen[0]["at"] - sent_at >= 1.9
    assert seen[0]["dequeue_count"] == 1


def test_decode_body() -> None:
    assert decode_body("eyJhIjogMX0=", "base64") == b'{"a": 1}'
    assert decode_body('{"a": 1}', "none") == b'{"a": 1}'
    with pytest.raises(ValueError):
        decode_body('{"a": 1}', "base64")


# -- timers and admin ------------------------------------------------------------------------------


def test_timer_schedule_from_local_settings_runs(host: Host) -> None:
    start = len(sample.ticks)
    wait_for(lambda: len(sample.ticks) >= start + 2, timeout=5)
    assert not any(sample.ticks)  # on time: not past due


def test_admin_runs_timer_and_run_on_startup(host: Host) -> None:
    wait_for(lambda: len(sample.nightly_runs) >= 1)  # runOnStartup
    before = len(sample.nightly_runs)
    response = requests.post(host.url + "/admin/functions/nightly", json={}, timeout=5)
    assert response.status_code == 202
    wait_for(lambda: len(sample.nightly_runs) == before + 1)
    assert sample.nightly_runs[-1] is False


def test_admin_runs_queue_function_and_rejects_others(host: Host) -> None:
    marker = uuid.uuid4().hex
    response = requests.post(host.url + "/admin/functions/records", json={"input": marker}, timeout=5)
    assert response.status_code == 202
    wait_for(lambda: [m for m in list(sample.received) if m["body"] == marker.encode()])
    assert requests.post(host.url + "/admin/functions/nope", timeout=5).status_code == 404
    assert requests.post(host.url + "/admin/functions/hello", timeout=5).status_code in (400, 404)


# -- settings and lifecycle ------------------------------------------------------------------------


def test_local_settings_loaded_but_environment_wins(host: Host) -> None:
    assert requests.get(host.url + "/api/settings/SAMPLE_FROM_FILE", timeout=5).text == "from-file"
    assert requests.get(host.url + "/api/settings/SAMPLE_OVERRIDDEN", timeout=5).text == "from-env"


def test_bad_schedule_fails_start_and_restores_environment(host: Host, app_root: Path, storage: str) -> None:
    before = dict(os.environ)
    broken = Host(app_module=APP, app_root=app_root, host_json=HOST_JSON,
                  settings={**host.extra_settings, "SAMPLE_SCHEDULE": "every day", "SAMPLE_NEW": "x"})
    with pytest.raises(HostError, match="every day"):
        broken.start()
    assert dict(os.environ) == before


def test_placeholders_resolve_from_settings() -> None:
    assert resolve("%A%-%B%", {"A": "x", "B": "y"}, what="t") == "x-y"
    with pytest.raises(HostError, match="MISSING"):
        resolve("%MISSING%", {}, what="function f")


def test_host_json_settings_and_timespans(tmp_path: Path) -> None:
    (tmp_path / "host.json").write_text(json.dumps({"extensions": {"queues": {"maxDequeueCount": 7}}}))
    env = {"AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:01:30"}
    options = QueueOptions.from_host_json(load_host_json(tmp_path / "host.json", None, env))
    assert (options.max_dequeue_count, options.visibility_timeout, options.batch_size) == (7, 90.0, 16)
    assert parse_timespan("1.00:00:01.5", what="x") == 86401.5


def test_route_template_syntax() -> None:
    pattern, _ = compile_template("files/{id:int}/{name?}")
    assert pattern.match("/files/3/a.txt")
    assert pattern.match("/files/3")
    assert not pattern.match("/files/x")
    rest, _ = compile_template("raw/{*path}")
    match = rest.match("/raw/a/b/c")
    assert match and match.group("path") == "a/b/c"


def test_cli_serves_and_exits_cleanly_on_sigint(app_root: Path, settings: dict[str, str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **settings, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "devhost", "--port", str(port), "--app", APP, "--app-root", str(app_root)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Admin:"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(20), "".join(lines)
        assert f"http://127.0.0.1:{port}/api/hello/{{name}}" in "".join(lines)
        assert requests.get(f"http://127.0.0.1:{port}/api/hello/cli", timeout=5).json()["name"] == "cli"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(5)
    assert "devhost: stopped" in "".join(lines)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_stop_closes_keepalive_connections_and_threads(app_root: Path, settings: dict[str, str]) -> None:
    before = set(threading.enumerate())
    second = Host(app_module=APP, app_root=app_root, settings=settings, host_json=HOST_JSON, poll_interval_cap=0.05)
    second.start()
    url = second.url
    with requests.Session() as session:  # keeps its connection open after the response
        assert session.get(url + "/api/hello/keep", timeout=5).status_code == 200
        second.stop()
        wait_for(lambda: not [t for t in set(threading.enumerate()) - before if t.is_alive()], timeout=3)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=1).close()
