"""The operators' command line against a running bundle (devhost, Azurite, sandbox) and Azurite's queues."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import responses
from conftest import MANAGE_KEY, Bundle

from shared.adapters import storage
from shared.cli.__main__ import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cli_env(env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    env.setenv("MANAGE_API_KEY", MANAGE_KEY)
    env.setenv("COLUMNS", "200")  # rich tables at full width
    return env


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def organization(sandbox_ado: Any, uid: str) -> dict[str, str]:
    name = f"cli{uid}"
    return {"name": name, "account": sandbox_ado.add_organization(name), "pat": sandbox_ado.add_pat(name),
            "url": sandbox_ado.instance_url(name), "tracker": f"tcli{uid}"}


def test_install_status_uninstall(bundle: Bundle, sandbox_ado: Any, organization: dict[str, str],
                                  cli_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                  tmp_path: Path) -> None:
    account, name = organization["account"], organization["name"]
    cli_env.setenv("ADO_ACCESS_TOKEN", organization["pat"])
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"sync_comments": True}))

    code, out, _ = cli(capsys, "--url", bundle.url, "install", account, "--account-name", name,
                       "--organization-id", organization["tracker"], "--domain-name", organization["url"],
                       "--config", str(config))
    assert code == 0
    assert f"Integration {account}" in out and "active" in out and organization["tracker"] in out
    assert organization["pat"] not in out
    # sync_comments on: the comments hook too; the status shows the updates hook
    [hook] = [s for s in sandbox_ado.subscriptions(name) if s["eventType"] == "workitem.updated"]
    assert [s["eventType"] for s in sandbox_ado.subscriptions(name)].count("workitem.commented") == 1

    code, out, _ = cli(capsys, "--url", bundle.url, "status", account)
    assert code == 0 and hook["id"] in out and "enabled" in out
    row = next(line for line in out.splitlines() if organization["tracker"] in line)
    assert row.split("│")[-2].strip() == "yes"  # sync_comments, the last column

    code, out, _ = cli(capsys, "--url", bundle.url, "--json", "status", account)
    assert code == 0 and json.loads(out) == bundle.api("GET", f"manage/integrations/{account}")[1]

    code, out, _ = cli(capsys, "--url", bundle.url, "uninstall", account, "--yes")
    assert code == 0 and hook["id"] in out and "deleted" in out and "Uninstalled." in out
    assert sandbox_ado.subscriptions(name) == []
    code, out, _ = cli(capsys, "--url", bundle.url, "status", account)
    assert code == 0 and "disabled" in out


def test_uninstall_asks_first_and_does_nothing_without_a_yes(bundle: Bundle, cli_env: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "--url", bundle.url, "uninstall", "anything")  # stdin is not a terminal
    assert code == 2 and "not confirmed" in err


def test_errors_print_the_bundles_detail(bundle: Bundle, cli_env: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str], uid: str) -> None:
    code, out, err = cli(capsys, "--url", bundle.url, "status", f"none-{uid}")
    assert code == 1 and out == "" and "404" in err and "not installed" in err
    cli_env.setenv("MANAGE_API_KEY", "wrong")
    code, _, err = cli(capsys, "--url", bundle.url, "status", f"none-{uid}")
    assert code == 1 and "401" in err


def test_no_key_or_no_token_is_a_usage_error(cli_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cli_env.delenv("MANAGE_API_KEY")
    assert cli(capsys, "status", "a")[0] == 2
    cli_env.setenv("MANAGE_API_KEY", MANAGE_KEY)
    cli_env.delenv("ADO_ACCESS_TOKEN", raising=False)
    code, _, err = cli(capsys, "install", "a", "--account-name", "n", "--organization-id", "o")
    assert code == 2 and "ADO_ACCESS_TOKEN" in err


@responses.activate
def test_reconcile_posts_to_the_reconcile_route(cli_env: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    route = responses.post("http://bundle.test/api/manage/integrations/acc-1/reconcile", status=202,
                           json={"queued": True})
    code, out, _ = cli(capsys, "--url", "http://bundle.test/", "reconcile", "acc-1")
    assert code == 0 and json.loads(out) == {"queued": True}
    assert route.calls[0].request.headers["Authorization"] == f"Bearer {MANAGE_KEY}"


# --- replay-poison ----------------------------------------------------------------------------------


def put_raw(queue: str, texts: list[str]) -> None:
    client = storage.queue(queue)  # base64, as the Functions host writes (and moves) messages
    for text in texts:
        client.send_message(text)


def raw_contents(queue: str) -> list[str]:
    from azure.core.exceptions import ResourceNotFoundError
    from azure.storage.queue import QueueClient

    from shared import config

    client = QueueClient.from_connection_string(config.settings().storage_connection or "", queue)
    try:
        return sorted(m.content for m in client.peek_messages(max_messages=32))
    except ResourceNotFoundError:
        return []


def test_replay_poison_moves_messages_back_unchanged(azurite: Any, cli_env: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str], uid: str) -> None:
    queue = f"replay-{uid}"
    texts = [json.dumps({"n": n}) for n in range(3)]
    put_raw(f"{queue}-poison", texts)
    stored = raw_contents(f"{queue}-poison")
    assert [json.loads(base64.b64decode(s)) for s in stored] == [{"n": n} for n in range(3)]

    code, out, _ = cli(capsys, "replay-poison", queue, "--dry-run")
    assert code == 0 and "3 message(s) waiting in" in out and raw_contents(queue) == []

    code, out, _ = cli(capsys, "replay-poison", queue, "--limit", "1")
    assert code == 0 and "1 message(s) moved" in out
    assert len(raw_contents(queue)) == 1 and len(raw_contents(f"{queue}-poison")) == 2

    code, out, _ = cli(capsys, "replay-poison", queue)
    assert code == 0 and "2 message(s) moved" in out
    assert raw_contents(queue) == stored and raw_contents(f"{queue}-poison") == []

    code, out, _ = cli(capsys, "replay-poison", queue)
    assert code == 0 and "No message is waiting" in out


@pytest.mark.parametrize("queue", ["sync-outbound-poison", "Bad_Name", "a" * 60])
def test_replay_poison_refuses_names_that_are_not_queues(azurite: Any, cli_env: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str], queue: str) -> None:
    code, _, err = cli(capsys, "replay-poison", queue)
    assert code == 1 and "not a queue name" in err


def test_the_cli_does_not_load_the_functions_runtime() -> None:
    script = "import sys, shared.cli.__main__; print('azure.functions' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=True)
    assert result.stdout.strip() == "False"
