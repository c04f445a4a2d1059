"""What the command line prints for a person: rich tables of an integration and of what a command did."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from shared.cli.poison import Moved

FLAGS = {"sync_status_reverse": "status ← ADO", "sync_forward_assignment": "assignee → ADO",
         "sync_reverse_assignment": "assignee ← ADO", "sync_comments": "comments"}


def _text(value: Any) -> str:
    return "—" if value is None or value == "" else str(value)


def integration(console: Console, view: dict[str, Any]) -> None:
    """The integration, its service hook and its organizations (never secrets: the API has none)."""
    table = Table(title=f"Integration {view.get('account_id')}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    subscription = view.get("subscription") or {}
    rows = (("account name", view.get("account_name")), ("organization URL", view.get("domain_name")),
            ("status", view.get("status")), ("service hook", subscription.get("id")),
            ("hook status", subscription.get("status")), ("last checked", subscription.get("last_checked")),
            ("last delivery", subscription.get("last_delivery")), ("problem", view.get("problem")))
    for label, value in rows:
        table.add_row(label, _text(value))
    console.print(table)
    organizations(console, view.get("organizations") or [])


def organizations(console: Console, links: Sequence[dict[str, Any]]) -> None:
    table = Table(title="Organizations", title_justify="left")
    for column in ("organization", "link", "status → ADO", *FLAGS.values()):
        table.add_column(column)
    for link in links:
        config = link.get("config") or {}
        forward = config.get("sync_status_forward") or {}
        table.add_row(_text(link.get("organization_id")), _text(link.get("status")),
                      f"{len(forward)} project(s)" if forward else "off",
                      *("yes" if config.get(flag) else "no" for flag in FLAGS))
    console.print(table if links else "No organizations are linked.")


def uninstalled(console: Console, view: dict[str, Any]) -> None:
    report = view.get("uninstall") or {}
    table = Table(title=f"Uninstall of {view.get('account_id')}", title_justify="left")
    table.add_column("service hook")
    table.add_column("result")
    for hook in report.get("service_hooks_deleted") or []:
        table.add_row(hook, "[green]deleted[/green]")
    for failure in report.get("service_hooks_failed") or []:
        table.add_row(_text(failure.get("id")), f"[red]not deleted[/red]: {_text(failure.get('detail'))}")
    console.print(table if table.row_count else "No service hook was left to delete.")
    console.print(f"credential deleted: {'yes' if report.get('credential_deleted') else 'no (kept for a retry)'}")
    if report.get("complete"):
        console.print("[green]Uninstalled.[/green] Links and history stay readable; install again with `install`.")
    else:
        console.print("[yellow]Not complete[/yellow]: run uninstall again once Azure DevOps answers, or delete the "
                      "hooks listed above in Azure DevOps (Project settings > Service hooks).")


def moved(console: Console, queue: str, messages: Sequence[Moved], *, dry_run: bool) -> None:
    verb = "waiting in" if dry_run else "moved from"
    if not messages:
        console.print(f"No message is waiting in {queue}-poison.")
        return
    table = Table(title=f"{len(messages)} message(s) {verb} {queue}-poison", title_justify="left")
    for column in ("message id", "first inserted", "tries", "bytes"):
        table.add_column(column)
    for message in messages:
        inserted = message.inserted.isoformat(timespec="seconds") if message.inserted else None
        table.add_row(message.id, _text(inserted), str(message.dequeue_count), str(message.size))
    console.print(table)
