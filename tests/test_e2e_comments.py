"""End to end: comments both ways through function_app.py on the devhost, Azurite and the HTTPS sandbox ADO.

The sandbox delivers its service hooks (`workitem.updated` and `workitem.commented`) to the bundle's
webhook route, so every echo the bundle could produce really happens here.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Bundle, wait_for


class Org:
    """A sandbox organization installed with comment sync, a group and a work item linked to it."""

    def __init__(self, bundle: Bundle, sandbox: Any, uid: str) -> None:
        self.bundle, self.sandbox = bundle, sandbox
        self.name = f"e2c{uid}"
        self.account = sandbox.add_organization(self.name)
        self.project = sandbox.add_project(self.name, "Web")
        self.email = f"bob-{uid}@example.com"
        sandbox.add_user(self.name, "Bob Builder", self.email)
        self.tracker_org = f"tc{uid}"
        status, view = bundle.api("PUT", f"manage/integrations/{self.account}", {
            "account_name": self.name, "organization_id": self.tracker_org,
            "domain_name": sandbox.instance_url(self.name),
            "identity": {"kind": "pat", "access_token": sandbox.add_pat(self.name)},
            "config": {"sync_comments": True}})
        assert status == 200, view
        assert view["comment_subscription"]["status"] == "enabled"  # type: ignore[index]
        self.key = self.new_group("g1")
        # The create wrote the description as the work item's first comment (`System.History`).
        (self.description,) = self.ado_comments()

    def new_group(self, group: str, key: str | None = None) -> str:
        assert self.bundle.api("PUT", f"manage/organizations/{self.tracker_org}/groups/{group}",
                               {"project_id": "web", "title": "TypeError"})[0] == 200
        base = f"manage/integrations/{self.account}/organizations/{self.tracker_org}/issues"
        if key is None:
            status, issue = self.bundle.api("POST", base, {"group_id": group, "project": self.project,
                                                           "work_item_type": "Bug", "title": "TypeError",
                                                           "description": "boom"})
        else:
            status, issue = self.bundle.api("POST", base + "/link", {"group_id": group, "key": key})
        assert status in (200, 201), issue
        return str(issue["key"])  # type: ignore[index]

    def comment_path(self, comment_id: str, group: str = "g1") -> str:
        return f"manage/organizations/{self.tracker_org}/groups/{group}/comments/{comment_id}"

    def ado_comments(self) -> list[dict[str, Any]]:
        """The work item's comments in the sandbox, the description comment of its creation excepted."""
        with self.sandbox.state.lock:
            org = self.sandbox.state.org(self.name)
            item = self.sandbox.state.item(org, int(self.key))
            found = [{"id": c.id, "text": c.current.text, "deleted": c.current.is_deleted} for c in item.comments]
        return [c for c in found if c["id"] != getattr(self, "description", {}).get("id")]

    def from_ado(self, group: str = "g1") -> list[dict[str, Any]]:
        """The group's comments that came from Azure DevOps, as the management API shows them."""
        status, body = self.bundle.api("GET", f"manage/organizations/{self.tracker_org}/groups/{group}")
        assert status == 200
        found = []
        for activity in body["activity"]:  # type: ignore[index]
            if activity["kind"] == "comment_from_ado":
                status, comment = self.bundle.api("GET", self.comment_path(activity["data"]["comment_id"], group))
                assert status == 200
                found.append(comment)
        return found

    def deliveries_ok(self) -> bool:
        self.sandbox.wait_idle(10)
        mine = [d for d in self.sandbox.deliveries if str(d.get("url", "")).startswith(self.bundle.url)
                and d["work_item_id"] == int(self.key)]
        return bool(mine) and all(d["status"] == 200 for d in mine)


@pytest.fixture
def org(bundle: Bundle, sandbox_ado: Any, uid: str) -> Org:
    return Org(bundle, sandbox_ado, uid)


def test_tracker_comments_reach_the_work_item_and_never_come_back(org: Org) -> None:
    body = "Fixed in **2.1**:\n\n- `retry()` added\n\n<script>alert(1)</script>"
    status, view = org.bundle.api("PUT", org.comment_path("c1"),
                                  {"author": {"name": "Ann", "email": "ann@example.com"}, "body": body})
    assert status == 200 and view["origin"] == "tracker"  # type: ignore[index]

    (posted,) = wait_for(org.ado_comments, what="the comment to reach Azure DevOps")
    assert posted["text"].startswith("<p><em>Ann wrote:</em></p>") and "<strong>2.1</strong>" in posted["text"]
    assert "<li><code>retry()</code> added</li>" in posted["text"] and "&lt;script&gt;" in posted["text"]
    wait_for(lambda: org.bundle.api("GET", org.comment_path("c1"))[1]["work_items"][0]["state"] == "posted",
             what="the post to be recorded")

    status, _ = org.bundle.api("PUT", org.comment_path("c1"), {"author": {"name": "Ann"}, "body": "Fixed in 2.2"})
    assert status == 200
    wait_for(lambda: "Fixed in 2.2" in org.ado_comments()[0]["text"], what="the edit to reach Azure DevOps")
    assert [c["id"] for c in org.ado_comments()] == [posted["id"]]

    assert org.bundle.api("DELETE", org.comment_path("c1"))[0] == 200
    wait_for(lambda: org.ado_comments()[0]["deleted"], what="the delete to reach Azure DevOps")

    # The service hooks of our own comment (and of the description) were delivered, accepted, and
    # brought nothing back.
    assert wait_for(org.deliveries_ok, what="the hooks to be delivered")
    assert org.from_ado() == []


def test_ado_comments_reach_every_linked_group_once(org: Org) -> None:
    org.new_group("g2", key=org.key)
    html = '<div>Please check <a href="https://example.com/log">the log</a></div><ul><li>first</li></ul>'
    org.sandbox.add_comment(org.name, int(org.key), html, author=org.email)

    for group in ("g1", "g2"):
        (comment,) = wait_for(lambda group=group: org.from_ado(group), what=f"the comment in {group}")
        assert comment["body"] == "Please check [the log](https://example.com/log)\n\n- first"
        assert comment["author"] == {"name": "Bob Builder", "email": org.email}
    assert wait_for(org.deliveries_ok, what="the hooks to be delivered")
    assert [len(org.from_ado(group)) for group in ("g1", "g2")] == [1, 1]

    # The tracker writing back the comment it was sent (same id, same text) is not posted again.
    comment_id = org.from_ado()[0]["comment_id"]
    status, _ = org.bundle.api("PUT", org.comment_path(comment_id), {"author": {"name": "Bob Builder"},
                                                                     "body": org.from_ado()[0]["body"]})
    assert status == 200
    assert len(org.ado_comments()) == 1
