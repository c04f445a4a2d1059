"""`python -m devhost`: run the function app locally (Core Tools' `func start`, without Core Tools).

Prints the functions it found and the URLs of the HTTP routes; Ctrl-C or SIGTERM stops it cleanly.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from devhost.console import configure_logging
from devhost.host import REPO_ROOT, Host
from devhost.settings import HostError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (default 7071)")
    parser.add_argument("--app", default="function_app", help="app module to import (default function_app)")
    parser.add_argument("--app-root", type=Path, default=REPO_ROOT, help="folder with host.json and the app")
    parser.add_argument("--verbose", action="store_true", help="also log every storage request")
    args = parser.parse_args(argv)

    configure_logging(verbose=args.verbose)

    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        signal.signal(signum, signal.SIG_DFL)  # a second Ctrl-C stops at once

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    host = Host(app_module=args.app, app_root=args.app_root, host=args.host, port=args.port)
    try:
        host.start()
    except (HostError, OSError, ImportError) as exc:
        print(f"devhost: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        print("Functions:")
        for line in host.describe():
            print(f"  {line}")
        print("HTTP routes:")
        for line in host.routes():
            print(f"  {line}")
        print(f"Admin: POST {host.url}/admin/functions/<name>   (Ctrl-C to stop)", flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        host.stop()
    print("devhost: stopped", flush=True)
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # The host already gave running invocations their grace period; do not wait for stragglers.
    os._exit(code)
