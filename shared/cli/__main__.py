"""`python -m shared.cli`: install, status, reconcile, uninstall, replay-poison.

Exit status: 0 done; 1 the bundle refused or could not be reached (its `detail` is printed);
2 the command line or settings are wrong; 3 an uninstall that is not complete yet (run it again).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from shared.cli import poison, views
from shared.cli.client import DEFAULT_URL, Api, CliError

INCOMPLETE = 3


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m shared.cli", description="Operate an Azure DevOps sync bundle.")
    top.add_argument("--url", default=os.environ.get("BUNDLE_URL", DEFAULT_URL),
                     help="the bundle's base URL (default: $BUNDLE_URL or %(default)s)")
    top.add_argument("--json", action="store_true", help="print the API's JSON answer instead of tables")
    commands = top.add_subparsers(dest="command", required=True)

    install = commands.add_parser("install", help="install or re-install an integration")
    install.add_argument("account_id", help="the Azure DevOps organization (collection) id")
    install.add_argument("--account-name", required=True, help="the organization's name")
    install.add_argument("--organization-id", required=True, help="the tracker organization to link")
    install.add_argument("--domain-name", help="organization URL, e.g. https://dev.azure.com/fabrikam/")
    install.add_argument("--kind", choices=("pat", "oauth"), default="pat", help="credential kind (default: pat)")
    install.add_argument("--token-env", default="ADO_ACCESS_TOKEN", metavar="VAR",
                         help="environment variable holding the PAT or access token (default: %(default)s)")
    install.add_argument("--refresh-token-env", default="ADO_REFRESH_TOKEN", metavar="VAR",
                         help="environment variable holding the OAuth refresh token, if any (default: %(default)s)")
    install.add_argument("--expires-at", help="when the OAuth access token expires (ISO 8601 or unix seconds)")
    install.add_argument("--config", type=Path, metavar="FILE", help="a JSON file with the organization's sync config")

    for name, text in (("status", "show an integration"), ("reconcile", "re-read linked work items now"),
                       ("uninstall", "delete the service hooks and the credential; links stay")):
        command = commands.add_parser(name, help=text)
        command.add_argument("account_id")
        if name == "uninstall":
            command.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    replay = commands.add_parser("replay-poison", help="move messages from <queue>-poison back to <queue>")
    replay.add_argument("queue", help="e.g. sync-outbound, subscription-check, migrate-repo")
    replay.add_argument("--limit", type=int, help="move at most this many")
    replay.add_argument("--dry-run", action="store_true", help="only list what is waiting")
    return top


def install_body(args: argparse.Namespace) -> dict[str, Any]:
    """The PUT body; tokens come from the environment, never from the command line (shell history)."""
    token = os.environ.get(args.token_env)
    if not token:
        raise CliError(f"{args.token_env} is not set: export the {args.kind} token there", code=2)
    identity: dict[str, Any] = {"kind": args.kind, "access_token": token}
    refresh = os.environ.get(args.refresh_token_env)
    if args.kind == "oauth" and refresh:
        identity["refresh_token"] = refresh
    if args.expires_at:
        identity["expires_at"] = float(args.expires_at) if args.expires_at.replace(".", "", 1).isdigit() \
            else args.expires_at
    body: dict[str, Any] = {"account_name": args.account_name, "organization_id": args.organization_id,
                            "identity": identity}
    if args.domain_name:
        body["domain_name"] = args.domain_name
    if args.config:
        try:
            body["config"] = json.loads(args.config.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise CliError(f"--config {args.config}: {error}", code=2) from None
    return body


def run(args: argparse.Namespace, console: Console) -> int:
    if args.command == "replay-poison":
        if args.limit is not None and args.limit < 1:
            raise CliError("--limit must be at least 1", code=2)
        messages = poison.replay(args.queue, limit=args.limit, dry_run=args.dry_run)
        if args.json:
            console.print_json(data=[{"id": m.id, "dequeue_count": m.dequeue_count, "size": m.size}
                                     for m in messages])
        else:
            views.moved(console, args.queue, messages, dry_run=args.dry_run)
        return 0
    api = Api(args.url)
    account = args.account_id
    show: Callable[[Console, Any], None]
    if args.command == "install":
        answer = api.call("PUT", f"integrations/{account}", install_body(args))
        show = views.integration
    elif args.command == "status":
        answer = api.call("GET", f"integrations/{account}")
        show = views.integration
    elif args.command == "reconcile":
        answer = api.call("POST", f"integrations/{account}/reconcile")
        show = _plain
    else:
        if not args.yes and not _confirmed(account):
            raise CliError("not confirmed; nothing was changed (use --yes to skip the question)", code=2)
        answer = api.call("DELETE", f"integrations/{account}")
        show = views.uninstalled
    if args.json:
        console.print_json(data=answer)
    else:
        show(console, answer)
    complete = not (args.command == "uninstall" and not (answer or {}).get("uninstall", {}).get("complete"))
    return 0 if complete else INCOMPLETE


def _plain(console: Console, answer: Any) -> None:
    if answer is None:
        console.print("Accepted.")
    else:
        console.print_json(data=answer)


def _confirmed(account: str) -> bool:
    if not sys.stdin.isatty():
        return False
    reply = input(f"Uninstall {account}? Its service hooks and credential are deleted. [y/N] ")
    return reply.strip().lower() in ("y", "yes")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    console = Console()
    try:
        return run(args, console)
    except CliError as error:
        Console(stderr=True).print(f"[red]error:[/red] {error}", highlight=False)
        return error.code


if __name__ == "__main__":
    sys.exit(main())
