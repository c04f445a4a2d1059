"""The local tracker endpoint, over real HTTP, fed by the bundle's own webhook delivery."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devhost.receiver import Receiver
from shared.adapters.tracker_webhook import deliver, new_secret, sign
from shared.core import event_json, events

ROOT = Path(__file__).resolve().parents[2]
SECRET = new_secret()


def event(group_id: str = "grp-1") -> events.Event:
    return events.assignee_changed("org-1", group_id, None, "ana@example.com", source="azure_devops", rev=4)


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.fixture
def receiver(lines: list[str]) -> Iterator[Receiver]:
    with Receiver(SECRET, echo=lines.append) as running:
        yield running


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def test_a_verified_event_is_recorded_printed_and_answered_204(receiver: Receiver, lines: list[str],
                                                               session: requests.Session) -> None:
    sent = event()
    outcome = deliver(receiver.url, SECRET, sent, session=session)
    assert (outcome.kind, outcome.status) == ("delivered", 204)
    assert receiver.events == [event_json.to_payload(sent)]
    assert lines == [f"group.assignee_changed group=grp-1 id={sent.id}"]


def test_events_are_kept_in_arrival_order(receiver: Receiver, session: requests.Session) -> None:
    sent = [event(f"grp-{n}") for n in range(5)]
    for one in sent:
        deliver(receiver.url, SECRET, one, session=session)
    assert [e["id"] for e in receiver.wait_for(5)] == [one.id for one in sent]


def test_a_delivery_signed_with_another_secret_gets_401_and_a_warning(receiver: Receiver, lines: list[str],
                                                                      session: requests.Session) -> None:
    outcome = deliver(receiver.url, new_secret(), event(), session=session)
    assert (outcome.kind, outcome.status) == ("retry", 401)
    assert receiver.events == []
    assert receiver.rejected == 1
    assert lines[0].startswith("WARNING")


def test_a_tampered_body_gets_401(receiver: Receiver, session: requests.Session) -> None:
    body, headers = sign(SECRET, event(), now=time.time())
    answer = session.post(receiver.url, data=body.replace(b"ana@", b"eve@"), headers=headers, timeout=5)
    assert answer.status_code == 401
    assert receiver.rejected == 1


@pytest.mark.parametrize("headers", [{}, {"webhook-id": "x", "webhook-timestamp": "1", "webhook-signature": "junk"}])
def test_unsigned_or_garbled_requests_get_401(receiver: Receiver, session: requests.Session,
                                              headers: dict[str, str]) -> None:
    answer = session.post(receiver.url, data=b"{}", headers=headers, timeout=5)
    assert answer.status_code == 401
    assert receiver.rejected == 1


def test_while_down_it_answers_503_and_the_redelivery_arrives_once(receiver: Receiver,
                                                                   session: requests.Session) -> None:
    sent = event()
    receiver.down = True
    receiver.retry_after = 30
    first = deliver(receiver.url, SECRET, sent, session=session)
    assert (first.kind, first.status, first.retry_after) == ("retry", 503, 30.0)
    assert receiver.events == []
    receiver.down = False
    second = deliver(receiver.url, SECRET, sent, session=session)
    assert second.kind == "delivered"
    assert [e["id"] for e in receiver.events] == [sent.id]


def test_a_repeated_delivery_is_recorded_twice_for_the_tracker_to_dedupe(receiver: Receiver,
                                                                         session: requests.Session) -> None:
    sent = event()
    deliver(receiver.url, SECRET, sent, session=session)
    deliver(receiver.url, SECRET, sent, session=session)
    assert [e["id"] for e in receiver.events] == [sent.id, sent.id]


def test_wait_for_gives_up_after_its_timeout(receiver: Receiver) -> None:
    with pytest.raises(TimeoutError):
        receiver.wait_for(1, timeout=0.05)


# --- the command line ---------------------------------------------------------------------------


def _reader(process: subprocess.Popen[str]) -> queue.Queue[str]:
    found: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            found.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return found


def test_the_command_prints_each_verified_event_and_warns_on_bad_ones(session: requests.Session) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devhost.receiver", "--port", "0", "--secret", SECRET],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        output = _reader(process)
        banner = output.get(timeout=20)
        assert banner.startswith("receiving tracker events on http://127.0.0.1:")
        url = banner.rsplit(" ", 1)[1]
        sent = event()
        assert deliver(url, SECRET, sent, session=session).status == 204
        assert output.get(timeout=10) == f"group.assignee_changed group=grp-1 id={sent.id}"
        assert deliver(url, new_secret(), sent, session=session).status == 401
        assert output.get(timeout=10).startswith("WARNING")
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_command_refuses_to_start_without_a_well_formed_secret() -> None:
    environ = {k: v for k, v in os.environ.items() if k != "TRACKER_WEBHOOK_SECRET"}
    done = subprocess.run([sys.executable, "-m", "devhost.receiver", "--port", "0"], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=20)
    assert done.returncode == 2
    assert "TRACKER_WEBHOOK_SECRET" in done.stderr
