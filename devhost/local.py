"""`make run`: the whole bundle locally, on embedded defaults, in one command.

Starts Azurite (data in `.azurite/`), the HTTPS sandbox Azure DevOps (port 7072), a local tracker
endpoint (`devhost.receiver`, port 7073, with a `whsec_` secret made for this run) and the devhost
(port 7071); installs the sandbox organization into the bundle so the webhook round trip works
at once; prints what to try, then every tracker event the bundle sends (verified against its
signature); and stops everything on Ctrl-C. Settings already in the environment (or in
local.settings.json) win over the defaults used here.
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
from devhost.receiver import DEFAULT_PORT as RECEIVER_PORT
from devhost.receiver import Receiver
from devhost.sandbox_ado import DEFAULT_ACCOUNT_ID, DEFAULT_PROJECT_ID, SandboxAdo, seed
from devhost.settings import load_local_settings
from shared.adapters.tracker_webhook import check_secret, new_secret
from shared.core.errors import ConfigError

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
    configured = {**load_local_settings(REPO_ROOT / "local.settings.json"), **os.environ}
    # The tracker's side: a local endpoint that verifies each event's signature and prints it.
    secret = configured.get("TRACKER_WEBHOOK_SECRET") or ""
    try:
        check_secret(secret)
    except ConfigError:  # none, or malformed (the bundle will say so in its deliveries)
        secret = new_secret()
    receiver: Receiver | None = None
    try:
        sandbox.start()
        receiver = Receiver(secret, RECEIVER_PORT if free(RECEIVER_PORT) else 0,
                            echo=lambda line: print(f"tracker event: {line}", flush=True)).start()
        defaults = {
            "AzureWebJobsStorage": storage.connection_string,
            "MANAGE_API_KEY": DEV_KEY,
            "WEBHOOK_URL": f"http://127.0.0.1:{HTTP_PORT}/api/vsts/issue-updated",
            "TRACKER_WEBHOOK_URL": receiver.url,
            "TRACKER_WEBHOOK_SECRET": secret,
            **sandbox.environment(),
        }
        settings = {k: v for k, v in defaults.items() if k not in configured}
        # Trust the sandbox's CA on top of whatever CAs are trusted already (real Azure DevOps too).
        settings["REQUESTS_CA_BUNDLE"] = _combined_ca_bundle(sandbox.ca_pem_path)
        host = Host(port=HTTP_PORT, settings=settings)
        host.start()
        key = configured.get("MANAGE_API_KEY", DEV_KEY)
        installed = _install_sandbox(host.url, key, pat, sandbox.instance_url("sandbox"))
        events_to = configured.get("TRACKER_WEBHOOK_URL") or receiver.url
        _print_welcome(host.url, sandbox.url, key, installed, events_to, receiver.url)
        while not stop.wait(0.5):
            pass
    finally:
        print("Stopping...", flush=True)
        if host is not None:
            host.stop()
        if receiver is not None:
            receiver.stop()
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


def _print_welcome(base: str, sandbox_url: str, key: str, install_error: str | None, events_to: str,
                   receiver_url: str) -> None:
    account = DEFAULT_ACCOUNT_ID
    lines = [
        "",
        f"Bundle:          {base}/api  (health: {base}/api/health)",
        f"Sandbox ADO:     {sandbox_url}sandbox/  (organization 'sandbox', project 'Sandbox')",
        f"Storage:         Azurite, data in {Path(REPO_ROOT, '.azurite')}",
        f"Management key:  {'(your MANAGE_API_KEY)' if key != DEV_KEY else DEV_KEY}",
        f"Tracker events:  signed webhooks to {events_to}"
        + ("  (the local receiver: each verified event is printed below as 'tracker event: ...')"
           if events_to == receiver_url else f"  (your TRACKER_WEBHOOK_URL; {receiver_url} stays idle)"),
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
