"""Checks of host.json (runtime, extension bundle, queue retry policy) and .funcignore (what ships)."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOST_JSON = ROOT / "host.json"
FUNCIGNORE = ROOT / ".funcignore"

# Never packaged: tests and tooling, local state and secrets, infrastructure and docs.
NOT_DEPLOYED = ["tests", "devhost", "bench", "infra", ".venv", "node_modules", "local.settings.json", "docs"]

TIMESPAN = re.compile(r"^(\d{2}):([0-5]\d):([0-5]\d)(\.\d+)?$")


@pytest.fixture(scope="module")
def host() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(HOST_JSON.read_text())
    return document


def test_runtime_schema_version(host: dict[str, Any]) -> None:
    assert host["version"] == "2.0"


def test_extension_bundle_v4(host: dict[str, Any]) -> None:
    # Flex Consumption needs bundle >= 4; there is no bundle 5 to allow.
    assert host["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    }


def test_queue_policy(host: dict[str, Any]) -> None:
    assert "queues" not in host, "top-level `queues` is the v1 schema; use extensions.queues"
    queues = host["extensions"]["queues"]
    assert isinstance(queues["maxDequeueCount"], int) and queues["maxDequeueCount"] >= 1
    # The producers (azure-storage-queue with TextBase64EncodePolicy) and the devhost expect base64.
    assert queues["messageEncoding"] == "base64"
    assert isinstance(queues["batchSize"], int) and 1 <= queues["batchSize"] <= 32
    match = TIMESPAN.match(queues["visibilityTimeout"])
    assert match, "visibilityTimeout must be an hh:mm:ss timespan"
    hours, minutes, seconds = (int(part) for part in match.groups()[:3])
    assert hours * 3600 + minutes * 60 + seconds > 0, "0 retries a failed message at once, with no back-off"


def test_function_timeout_is_valid_for_flex(host: dict[str, Any]) -> None:
    timeout = host.get("functionTimeout")
    if timeout is not None:
        assert timeout == "-1" or TIMESPAN.match(timeout), timeout


def funcignore_patterns() -> list[str]:
    if not FUNCIGNORE.exists():
        pytest.fail(".funcignore is missing: publishing would ship tests, tooling and local settings")
    patterns = []
    for line in FUNCIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        patterns.append(line.strip("/"))
    return patterns


@pytest.mark.parametrize("entry", NOT_DEPLOYED)
def test_funcignore_leaves_out(entry: str) -> None:
    patterns = funcignore_patterns()
    assert any(fnmatch.fnmatch(entry, pattern) for pattern in patterns), f".funcignore has no line for {entry}"


def test_funcignore_keeps_the_app() -> None:
    patterns = funcignore_patterns()
    for needed in ("function_app.py", "host.json", "requirements.txt", "shared"):
        assert not any(fnmatch.fnmatch(needed, pattern) for pattern in patterns), needed
