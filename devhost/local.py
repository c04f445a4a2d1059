"""`make run`: the whole bundle locally, on embedded defaults, in one command.

Starts Azurite (data in `.azurite/`), the HTTPS sandbox Azure DevOps (port 7072) and the devhost
(port 7071); installs the sandbox organization into the bundle so the webhook round trip works
at once; prints what to try; and stops everything on Ctrl-C. Settings already in the environment
(or in local.settings.json) win over the defaults used here.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import urllib.request
from pathlib import Path
from types import FrameType

from devhost import azurite
from devhost.console import configure_logging
from devhost.host import REPO_ROOT, Host
from devhost.sandbox_ado import DEFAULT_ACCOUNT_ID, DEFAULT_PROJECT_ID, SandboxAdo, seed
from devhost.settings import load_local_settings

DEV_KEY = "local-dev-key"
HTTP_PORT = 7071
SANDBOX_PORT = 7072
STORAGE_PORTS = (10000, 10001, 10002)


def free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def main() -> int:
    configure_logging()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        signal.signal(signum, signal.SIG_DFL)  # a second Ctrl-C stops at once

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    ports = STORAGE_PORTS if all(free(p) for p in STORAGE_PORTS) else (0, 0, 0)
    storage = azurite.start(blob_port=ports[0], queue_port=ports[1], table_port=ports[2],
                            location=str(REPO_ROOT / ".azurite"))
    sandbox = SandboxAdo(port=SANDBOX_PORT if free(SANDBOX_PORT) else 0, state_dir=str(REPO_ROOT / ".sandbox"))
    pat = seed(sandbox)
    host: Host | None = None
    try:
        sandbox.start()
        defaults = {
            "AzureWebJobsStorage": storage.connection_string,
            "MANAGE_API_KEY": DEV_KEY,
            "WEBHOOK_URL": f"http://127.0.0.1:{HTTP_PORT}/api/vsts/issue-updated",
            **sandbox.environment(),
        }
        configured = {**load_local_settings(REPO_ROOT / "local.settings.json"), **os.environ}
        settings = {k: v for k, v in defaults.items() if k not in configured}
        # Trust the sandbox's CA on top of whatever CAs are trusted already (real Azure DevOps too).
        settings["REQUESTS_CA_BUNDLE"] = _combined_ca_bundle(sandbox.ca_pem_path)
        host = Host(port=HTTP_PORT, settings=settings)
        host.start()
        key = configured.get("MANAGE_API_KEY", DEV_KEY)
        installed = _install_sandbox(host.url, key, pat, sandbox.instance_url("sandbox"))
        _print_welcome(host.url, sandbox.url, key, installed)
        while not stop.wait(0.5):
            pass
    finally:
        print("Stopping...", flush=True)
        if host is not None:
            host.stop()
        sandbox.stop()
        storage.stop()
    return 0


def _combined_ca_bundle(sandbox_ca: str) -> str:
    import certifi

    existing = os.environ.get("REQUESTS_CA_BUNDLE") or certifi.where()
    combined = REPO_ROOT / ".sandbox" / "ca-bundle.pem"
    parts = [Path(existing).read_text() if Path(existing).is_file() else "", Path(sandbox_ca).read_text()]
    combined.write_text("\n".join(parts))
    return str(combined)


def _install_sandbox(base: str, key: str, pat: str, instance: str) -> str | None:
    """Install the sandbox organization through the management API; returns an error text or None."""
    body = {
        "account_name": "sandbox",
        "organization_id": "demo",
        "domain_name": instance,
        "identity": {"kind": "pat", "access_token": pat},
        "config": {
            "sync_status_forward": {DEFAULT_PROJECT_ID: {"on_resolve": "Resolved", "on_unresolve": "Active"}},
            "sync_status_reverse": True,
            "sync_forward_assignment": True,
            "sync_reverse_assignment": True,
        },
    }
    request = urllib.request.Request(
        f"{base}/api/manage/integrations/{DEFAULT_ACCOUNT_ID}", data=json.dumps(body).encode(), method="PUT",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
        return None
    except Exception as error:  # reported to the user; the host keeps running
        return str(error)


def _print_welcome(base: str, sandbox_url: str, key: str, install_error: str | None) -> None:
    account = DEFAULT_ACCOUNT_ID
    lines = [
        "",
        f"Bundle:          {base}/api  (health: {base}/api/health)",
        f"Sandbox ADO:     {sandbox_url}sandbox/  (organization 'sandbox', project 'Sandbox')",
        f"Storage:         Azurite, data in {Path(REPO_ROOT, '.azurite')}",
        f"Management key:  {'(your MANAGE_API_KEY)' if key != DEV_KEY else DEV_KEY}",
        "",
        "Installed integration " + account + " for organization 'demo'"
        if install_error is None else f"Sandbox install failed: {install_error}",
        "Try the round trip (see README, 'Try it'): create a group, a work item, resolve it in the sandbox.",
        "Press Ctrl+C to stop.",
    ]
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything was stopped with a grace period for running invocations; do not wait for stragglers.
    os._exit(code)
