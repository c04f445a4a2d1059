"""Run the sandbox Azure DevOps standalone: `python -m devhost.sandbox_ado [--port 7072] [--state-dir .sandbox]`.

Seeds one organization, project, user and PAT, writes `ca.pem` and an `env` file (the app
settings that point the bundle at the sandbox) into the state directory, and serves until
SIGINT/SIGTERM. Tests import `SandboxAdo` from here.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from types import FrameType

from devhost.sandbox import SandboxAdo

__all__ = ["SandboxAdo", "main", "seed"]

DEFAULT_ACCOUNT_ID = "00000000-0000-4000-8000-00000000a001"
DEFAULT_PROJECT_ID = "00000000-0000-4000-8000-00000000b001"
DEFAULT_PAT = "sandbox-pat-0000000000000000000000000000"


def seed(sandbox: SandboxAdo, org: str = "sandbox", account_id: str = DEFAULT_ACCOUNT_ID) -> str:
    """One organization with a project, a user and a PAT (returned): what a newcomer plays with."""
    sandbox.add_organization(org, account_id)
    sandbox.add_project(org, "Sandbox", DEFAULT_PROJECT_ID)
    sandbox.add_user(org, "Sandbox User", "sandbox.user@example.com")
    return sandbox.add_pat(org, DEFAULT_PAT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost.sandbox_ado", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7072)
    parser.add_argument("--state-dir", default=".sandbox")
    parser.add_argument("--org", default="sandbox")
    parser.add_argument("--account-id", default=DEFAULT_ACCOUNT_ID)
    args = parser.parse_args(argv)

    sandbox = SandboxAdo(host=args.host, port=args.port, state_dir=args.state_dir)
    pat = seed(sandbox, args.org, args.account_id)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    sandbox.start()
    try:
        token = sandbox.issue_token(args.org, expires_in=3600)
        env = sandbox.environment()
        partial = Path(args.state_dir, "env.partial")  # written whole, then renamed: readers never see half
        partial.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        partial.replace(Path(args.state_dir, "env"))
        print(f"Sandbox Azure DevOps listening on {sandbox.url}")
        print(f"  organization {args.org}: {sandbox.instance_url(args.org)} (account id {args.account_id})")
        print(f"  project Sandbox ({DEFAULT_PROJECT_ID}), user Sandbox User <sandbox.user@example.com>")
        print(f"  PAT (Basic ':' + PAT): {pat}")
        print(f"  refresh token (1 use): {token['refresh_token']}")
        print(f"Environment (also in {Path(args.state_dir, 'env')}):")
        for key, value in env.items():
            print(f"  {key}={value}")
        print("Press Ctrl+C to stop.", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
