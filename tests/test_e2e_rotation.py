"""End to end: rotating the hook secret while Azure DevOps keeps delivering loses nothing.

function_app.py on the devhost, Azurite, and the HTTPS sandbox ADO, whose hooks deliver with the
secret they were created with, in order, from a queue (so a backlog of deliveries is in flight
while the hook is replaced).
"""

from __future__ import annotations

import http.client
import threading
import time
from urllib.parse import urlsplit

from conftest import MANAGE_KEY, Bundle, wait_for
from test_e2e import Org, org  # noqa: F401  (fixture)

from shared import compose
from shared.core import overlap
from shared.flows import lifecycle

CHANGES = 24
ROTATIONS = 3


def test_rotating_while_deliveries_arrive_loses_none(org: Org) -> None:  # noqa: F811
    key = int(org.create_work_item())
    first_hook = org.view["subscription"]["id"]  # type: ignore[index]
    states = ["Resolved" if n % 2 == 0 else "Active" for n in range(CHANGES)]
    done = threading.Event()

    def edit() -> None:
        for state in states:
            org.sandbox.update_work_item(org.name, key, state=state)
        done.set()

    editor = threading.Thread(target=edit)
    editor.start()
    rotated = []
    for _ in range(ROTATIONS):
        status, view = org.bundle.api("POST", f"manage/integrations/{org.account}/rotate-secret")
        assert status == 200, view
        rotated.append(view["subscription"]["id"])  # type: ignore[index]
    editor.join(timeout=60)
    assert done.is_set() and org.sandbox.wait_idle(60)

    mine = {first_hook, *rotated}
    deliveries = [d for d in org.sandbox.deliveries if d["subscription_id"] in mine]
    assert [d for d in deliveries if d["status"] != 200] == [], "a delivery was refused"
    last_rev = org.sandbox.work_item(org.name, key)["rev"]
    assert {d["rev"] for d in deliveries} >= set(range(last_rev - CHANGES + 1, last_rev + 1)), "a change was lost"
    wait_for(lambda: org.group()["status"] == "unresolved", what="the last change to arrive")
    kinds = [a["kind"] for a in org.group()["activity"]]
    assert (kinds.count("set_resolved"), kinds.count("set_unresolved")) == (CHANGES // 2, CHANGES // 2), kinds

    # The replaced hooks drained; once due, the subscription check deletes them and only the newest stays.
    later = compose.build(clock=lambda: time.time() + overlap.DRAIN_SECONDS + 1)
    lifecycle.check_subscription(later, {"integration_id": org.account, "organization_id": org.tracker_org})
    assert [h["id"] for h in org.sandbox.subscriptions(org.name)] == [rotated[-1]]
    org.sandbox.update_work_item(org.name, key, state="Resolved")
    wait_for(lambda: org.group()["status"] == "resolved", what="the newest hook to deliver")


def test_a_percent_encoded_dot_segment_id_is_never_a_route_to_another_record(bundle: Bundle, uid: str) -> None:
    url = urlsplit(bundle.url)
    for raw in ("%2E%2E", "%2e", ".%2E"):
        connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
        connection.request("PUT", f"/api/manage/organizations/o{uid}/groups/{raw}",
                           body=b'{"project_id": "p", "title": "t", "status": "unresolved", "assignee": null}',
                           headers={"Authorization": f"Bearer {MANAGE_KEY}", "Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        connection.close()
        assert response.status in (400, 404), (raw, response.status)
