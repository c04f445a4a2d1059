"""End to end: tracker events from the sandbox Azure DevOps, through the devhost bundle, to a local receiver.

The bundle (function_app.py on the devhost, Azurite, the HTTPS sandbox) delivers over real HTTP to
`devhost.receiver.Receiver`, which verifies every signature with the `standardwebhooks` package as a
tracker would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import Bundle, wait_for
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError
from test_e2e import Org

from devhost.receiver import Receiver
from shared.adapters.tracker_webhook import new_secret
from shared.core import backoff


class Tracker:
    """A sandbox organization installed into the bundle, whose tracker organization has its own endpoint."""

    def __init__(self, org: Org, receiver: Receiver, secret: str) -> None:
        self.org = org
        self.receiver = receiver
        self.secret = secret
        status, view = org.bundle.api("PUT", f"manage/organizations/{org.tracker_org}/config",
                                      {"tracker_webhook_url": receiver.url, "tracker_webhook_secret": secret})
        assert status == 200, view
        assert view["tracker_webhook_secret_set"] is True and "secret" not in str(view).replace("secret_set", "")

    def unique(self) -> list[dict[str, Any]]:
        """The verified events, duplicates (same id) dropped, in order of first arrival."""
        seen: set[str] = set()
        found = []
        for event in self.receiver.events:
            if event["id"] not in seen:
                seen.add(event["id"])
                found.append(event)
        return found

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.receiver.events if e["type"] == kind]

    def feed(self, limit: int = 2) -> list[dict[str, Any]]:
        """The whole pull feed of the organization, read in pages of `limit`."""
        found: list[dict[str, Any]] = []
        after = None
        while True:
            query = f"?limit={limit}" + (f"&after={after}" if after else "")
            status, page = self.org.bundle.api("GET", f"manage/organizations/{self.org.tracker_org}/events{query}")
            assert status == 200, page
            found += page["events"]
            if not page["events"]:
                return found
            after = page["next"]


@pytest.fixture
def tracker(bundle: Bundle, sandbox_ado: Any, uid: str) -> Iterator[Tracker]:
    secret = new_secret()
    with Receiver(secret) as receiver:
        yield Tracker(Org(bundle, sandbox_ado, uid), receiver, secret)


def test_a_resolve_in_azure_devops_reaches_the_tracker_as_one_signed_event(tracker: Tracker) -> None:
    org = tracker.org
    key = org.create_work_item()
    [linked] = tracker.receiver.wait_for(1, timeout=30)
    assert (linked["type"], linked["group_id"], linked["data"]["work_item"]) == ("group.linked", "g1", key)

    org.sandbox.update_work_item(org.name, int(key), state="Resolved")
    wait_for(lambda: tracker.of_type("group.status_changed"), what="the status event")
    org.sandbox.wait_idle(10)
    [event] = tracker.of_type("group.status_changed")
    assert event["organization_id"] == org.tracker_org and event["group_id"] == "g1"
    assert {k: event["data"][k] for k in ("old", "new", "source", "integration_id", "work_item")} == {
        "old": "unresolved", "new": "resolved", "source": "azure_devops", "integration_id": org.account,
        "work_item": key}
    body, headers = tracker.receiver.received[-1]
    assert headers["webhook-id"] == event["id"] and headers["webhook-signature"].startswith("v1,")
    assert Webhook(tracker.secret).verify(body, headers) == event
    assert tracker.receiver.rejected == 0


def test_a_receiver_that_was_down_gets_every_event_in_order_once_it_is_back(
        tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    # The bundle runs in this process: shorten the retry schedule (5 s, 5 min, ...) to about a second
    # per retry, so the receiver can stay down across several attempts within a test.
    monkeypatch.setattr(backoff, "SCHEDULE", (1.0,) * len(backoff.SCHEDULE))
    org = tracker.org
    tracker.receiver.down = True
    key = org.create_work_item()
    org.sandbox.update_work_item(org.name, int(key), state="Resolved")
    org.sandbox.update_work_item(org.name, int(key), assigned_to=org.email)
    wait_for(lambda: org.group()["status"] == "resolved" and org.group()["assignee"] == "ann",
             what="the service hooks to change the group")

    def retried() -> list[Any]:
        status, body = org.bundle.api("GET", f"manage/organizations/{org.tracker_org}/deliveries?status=retrying")
        assert status == 200, body
        return [d for d in body["deliveries"] if d["attempts"] >= 2]

    [waiting] = wait_for(retried, what="a delivery retried while the receiver is down")
    assert waiting["type"] == "group.linked" and waiting["last_status"] == 503
    assert tracker.receiver.events == []

    tracker.receiver.down = False
    wait_for(lambda: len(tracker.unique()) >= 3, what="every event after the receiver came back")
    org.sandbox.wait_idle(10)
    events = tracker.unique()
    assert [e["type"] for e in events] == ["group.linked", "group.status_changed", "group.assignee_changed"]
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)  # in the order they were made
    assert [e["id"] for e in tracker.feed()] == [e["id"] for e in events]
    status, body = org.bundle.api("GET", f"manage/organizations/{org.tracker_org}/deliveries?status=delivered")
    assert status == 200
    assert [(d["id"], d["status"]) for d in body["deliveries"]] == [(waiting["id"], "delivered")]


def test_a_tampered_delivery_is_detected(tracker: Tracker) -> None:
    tracker.org.create_work_item()
    tracker.receiver.wait_for(1, timeout=30)
    body, headers = tracker.receiver.received[0]
    forged_body = body.replace(b'"group.linked"', b'"group.unlinked"')
    forged_signature = {**headers, "webhook-signature": "v1," + "A" * 43 + "="}
    for forged in ((forged_body, headers), (body, forged_signature)):
        with pytest.raises(WebhookVerificationError):
            Webhook(tracker.secret).verify(*forged)
        answer = requests.post(tracker.receiver.url, data=forged[0], headers=forged[1], timeout=10)
        assert answer.status_code == 401
    assert tracker.receiver.rejected == 2 and len(tracker.receiver.events) == 1


def test_the_pull_feed_returns_the_same_events(tracker: Tracker) -> None:
    org = tracker.org
    key = org.create_work_item()
    org.sandbox.update_work_item(org.name, int(key), state="Resolved")
    org.sandbox.update_work_item(org.name, int(key), state="Active")
    wait_for(lambda: len(tracker.unique()) >= 3, what="three events")
    org.sandbox.wait_idle(10)
    assert tracker.feed(limit=1) == tracker.unique()
    [kinds] = [[(e["type"], e["data"].get("new")) for e in tracker.feed()]]
    assert kinds == [("group.linked", None), ("group.status_changed", "resolved"),
                     ("group.status_changed", "unresolved")]
