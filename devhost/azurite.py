"""Start and stop the Azurite storage emulator (npm `azurite`, installed by `npm ci`).

Used by the tests (in memory, free ports) and by `make run` (data kept in `.azurite/`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENING = re.compile(r"Azurite (Blob|Queue|Table) service is successfully listening at http://[^:]+:(\d+)")


def connection_string(host: str, blob: int, queue: int, table: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
        f"BlobEndpoint=http://{host}:{blob}/{ACCOUNT};QueueEndpoint=http://{host}:{queue}/{ACCOUNT};"
        f"TableEndpoint=http://{host}:{table}/{ACCOUNT};"
    )


def executable() -> str:
    local = ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if not found:
        raise RuntimeError("azurite is not installed: run `npm ci` in the repository root")
    return found


@dataclass
class Azurite:
    """A running Azurite process and the ports it listens on."""

    process: subprocess.Popen[str]
    host: str
    ports: dict[str, int] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)

    @property
    def connection_string(self) -> str:
        return connection_string(self.host, self.ports["blob"], self.ports["queue"], self.ports["table"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def restart(self) -> None:
        """Start again on the same ports (used to simulate a storage outage)."""
        self.stop()
        fresh = _launch(self.args, self.host, timeout=30)
        self.process = fresh.process


def start(
    *,
    host: str = "127.0.0.1",
    blob_port: int = 0,
    queue_port: int = 0,
    table_port: int = 0,
    location: str | None = None,
    timeout: float = 30.0,
) -> Azurite:
    """Start Azurite and wait until its three services listen. Port 0 picks a free port."""
    args = [
        executable(),
        "--silent",
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--loose",
        "--blobHost", host, "--queueHost", host, "--tableHost", host,
        "--blobPort", str(blob_port), "--queuePort", str(queue_port), "--tablePort", str(table_port),
    ]
    if location:
        Path(location).mkdir(parents=True, exist_ok=True)
        args += ["--location", location]
    else:
        args += ["--inMemoryPersistence"]
    azurite = _launch(args, host, timeout=timeout)
    # Pin the chosen ports so a restart comes back where clients expect it.
    pinned = list(args)
    for name in ("blob", "queue", "table"):
        pinned[pinned.index(f"--{name}Port") + 1] = str(azurite.ports[name])
    azurite.args = pinned
    return azurite


def _launch(args: list[str], host: str, *, timeout: float) -> Azurite:
    process = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "AZURITE_ACCEPT_EULA": "true"},
    )
    azurite = Azurite(process=process, host=host)
    ready = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            match = _LISTENING.search(line)
            if match:
                azurite.ports[match.group(1).lower()] = int(match.group(2))
                if len(azurite.ports) == 3:
                    ready.set()

    threading.Thread(target=read, name="azurite-output", daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"Azurite did not start (exit code {process.poll()})")
    return azurite
