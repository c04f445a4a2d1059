"""Comment sync both ways, against the HTTPS sandbox ADO and a real Azurite: pushes, deliveries, echoes.

The services record what they put on queues, so the test runs each `sync-outbound` message itself and
sees what was sent again (and with which delay).
"""

from __future__ import annotations

import base64
import copy
import json
import time
from dataclasses import dataclass, replace
from typing import Any

import pytest
from conftest import RecordingSend, load_fixture

from shared import compose
from shared.adapters import ado_comments
from shared.compose import Services
from shared.core import commentsync
from shared.core.errors import AdoTimeout, BundleError, InvalidInput, NotFound, TransientError
from shared.core.events import Event
from shared.core.models import Group, Identity, Integration, Link, OrgLink
from shared.core.secrets import hash_secret
from shared.flows import comments, comments_inbound, inbound, outbound, reconcile

pytestmark = pytest.mark.usefixtures("azurite")

SECRET = "hook-secret-" + "c" * 52
COMMENT_SECRET = "comment-secret-" + "d" * 49
BODY = ("Steps:\n\n- open the page\n- click *Save*\n\n```python\nprint(1 < 2)\n```\n\n"
        "See [the docs](https://example.com/docs) <script>alert(1)</script> [x](javascript:alert(2))")


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    svc: Services
    clock: Clock
    sandbox: Any
    org: str
    account_id: str
    project_id: str
    org_id: str
    key: str

    @property
    def sent(self) -> RecordingSend:
        return self.svc.send  # type: ignore[return-value]

    def put(self, comment_id: str, body: str = BODY, *, group: str = "g1", author: str = "Ann Smith") -> dict[str, Any]:
        self.sent.sent.clear()
        reply = comments.put_comment(self.svc, self.org_id, group, comment_id,
                                     {"author": {"name": author, "email": "ann@example.com"}, "body": body})
        assert reply.status == 200
        return dict(reply.body)

    def queued(self) -> list[dict[str, Any]]:
        found = [m for m in self.sent.messages(comments.QUEUE)]
        self.sent.sent.clear()
        return found

    def run(self, message: dict[str, Any]) -> None:
        outbound.handle(self.svc, message)

    def comment_calls(self) -> list[tuple[str, str]]:
        return [(c["method"], c["path"].rsplit("/_apis/", 1)[-1]) for c in self.sandbox.calls
                if c["path"].startswith(f"/{self.org}/") and "/hooks/" not in c["path"]]

    def ado_comments(self, *, deleted: bool = False) -> list[dict[str, Any]]:
        return ado_comments.newest(self.svc.ado(self.integration()), self.project_id, self.key, top=200,
                                   include_deleted=deleted)

    def integration(self) -> Integration:
        found = self.svc.store.integrations.get(self.account_id)
        assert found is not None
        return found

    def view(self, comment_id: str, group: str = "g1") -> dict[str, Any]:
        return dict(comments.get_comment(self.svc, self.org_id, group, comment_id).body)

    def group_comments(self, group: str = "g1") -> dict[str, Any]:
        """Comments brought in from Azure DevOps, by id, as the management API shows them."""
        found = {}
        for activity in self.svc.store.groups.activity(self.org_id, group):
            if activity.kind == "comment_from_ado":
                cid = activity.data["comment_id"]
                found[cid] = self.view(cid, group)
        return found

    def events(self, group: str = "g1") -> list[Event]:
        return [e for e, _ in self.svc.store.groups.outbox(self.org_id, group) if e.type == "group.comment_added"]

    def human_comment(self, html: str, author: str = "bob@example.com") -> dict[str, Any]:
        return dict(self.sandbox.add_comment(self.org, int(self.key), html, author=author))

    def delivery(self, comment: dict[str, Any], *, version: int | None = None) -> bytes:
        """The `workitem.commented` delivery of an ADO comment (as captured payloads carry it)."""
        payload = copy.deepcopy(load_fixture("workitem-commented.json"))
        payload["resourceContainers"]["collection"]["id"] = self.account_id
        payload["resourceContainers"]["project"]["id"] = self.project_id
        item = self.sandbox.work_item(self.org, int(self.key))
        resource = payload["resource"]
        resource.update(id=int(self.key), rev=item["rev"])
        author = comment["createdBy"]
        resource["fields"].update({"System.History": comment["text"],
                                   "System.ChangedBy": f"{author['displayName']} <{author['uniqueName']}>",
                                   "System.ChangedDate": comment["createdDate"]})
        resource["commentVersionRef"].update(commentId=comment["id"], version=version or comment["version"])
        return json.dumps(payload).encode()

    def deliver(self, body: bytes, secret: str = COMMENT_SECRET) -> int:
        """The HTTP status the webhook answers (errors mapped as the HTTP adapter maps them)."""
        auth = base64.b64encode(f":{secret}".encode()).decode()
        try:
            return inbound.handle(self.svc, body, {"authorization": f"Basic {auth}"}).status
        except BundleError as error:
            return error.status

    def link(self, group: str) -> None:
        self.svc.store.groups.put(Group(org_id=self.org_id, group_id=group, project_id="p1", title="Boom"))
        self.svc.store.groups.add_link(Link(org_id=self.org_id, group_id=group, account_id=self.account_id,
                                            key=self.key, project_id=self.project_id))


@pytest.fixture
def world(sandbox_ado: Any, uid: str) -> World:
    clock = Clock()
    svc = compose.build(clock=clock, send=RecordingSend())
    org = f"cm{uid}"
    account_id = sandbox_ado.add_organization(org)
    project_id = sandbox_ado.add_project(org, "Fabrikam")
    sandbox_ado.add_user(org, "Bob Builder", "bob@example.com")
    token = sandbox_ado.issue_token(org)
    integrations = svc.store.integrations
    integrations.save(Integration(account_id=account_id, account_name=org, domain_name=sandbox_ado.instance_url(org),
                                  secret_hash=hash_secret(SECRET), comment_secret_hash=hash_secret(COMMENT_SECRET)))
    integrations.save_identity(account_id, Identity(kind="oauth", access_token=token["access_token"],
                                                    refresh_token=token["refresh_token"],
                                                    expires_at=token["expires_at"]))
    integrations.save_org_link(OrgLink(account_id=account_id, org_id=uid, config={"sync_comments": True}))
    key = str(sandbox_ado.create_work_item(org, "Fabrikam", title="Boom")["id"])
    found = World(svc, clock, sandbox_ado, org, account_id, project_id, uid, key)
    found.link("g1")
    return found


# --- tracker → Azure DevOps ----------------------------------------------------------------------


def test_a_comment_is_one_post_of_safe_html_with_its_author(world: World) -> None:
    world.put("c1")
    (message,) = world.queued()
    assert message == {"kind": "comment", "integration_id": world.account_id, "organization_id": world.org_id,
                       "group_id": "g1", "key": world.key, "comment_id": "c1", "version": 1}
    world.sandbox.reset_calls()

    world.run(message)

    assert world.comment_calls() == [("POST", f"wit/workItems/{world.key}/comments")]
    assert world.sandbox.calls[0]["query"]["api-version"] == "7.1-preview.4"
    (posted,) = world.ado_comments()
    text = posted["text"]
    assert text.startswith("<p><em>Ann Smith wrote:</em></p>")
    assert "<li>open the page</li>" in text and "<em>Save</em>" in text
    assert '<code class="language-python">print(1 &lt; 2)' in text
    assert '<a href="https://example.com/docs">the docs</a>' in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script" not in text
    assert "javascript:" not in text
    view = world.view("c1")
    assert view["work_items"] == [{"account_id": world.account_id, "key": world.key, "ado_comment_id": posted["id"],
                                   "state": "posted", "version": 1, "problem": None}]


def test_the_same_message_twice_posts_once_and_an_edit_patches_that_comment(world: World) -> None:
    world.put("c1", "first")
    (message,) = world.queued()
    world.sandbox.reset_calls()
    world.run(message)
    world.run(message)  # a duplicate delivery of the message
    assert world.comment_calls() == [("POST", f"wit/workItems/{world.key}/comments")]
    (posted,) = world.ado_comments()

    world.put("c1", "second, **edited**")
    (edit,) = world.queued()
    world.sandbox.reset_calls()
    world.run(message)  # the old message late: pushes the current text
    world.run(edit)  # already done: no call

    assert world.comment_calls() == [("PATCH", f"wit/workItems/{world.key}/comments/{posted['id']}")]
    (after,) = world.ado_comments()
    assert after["id"] == posted["id"] and after["version"] == 2
    assert "second, <strong>edited</strong>" in after["text"]

    world.put("c1", "second, **edited**")  # the same text again: nothing new to push
    (same,) = world.queued()
    world.sandbox.reset_calls()
    world.run(same)
    assert world.comment_calls() == []


def test_delete_removes_the_ado_comment_once(world: World) -> None:
    world.put("c1", "to be removed")
    world.run(world.queued()[0])
    (posted,) = world.ado_comments()

    reply = comments.delete_comment(world.svc, world.org_id, "g1", "c1")
    assert reply.body["deleted"] is True
    (message,) = world.queued()
    world.sandbox.reset_calls()
    world.run(message)
    comments.delete_comment(world.svc, world.org_id, "g1", "c1")  # a repeated DELETE
    world.run(world.queued()[0])

    assert world.comment_calls() == [("DELETE", f"wit/workItems/{world.key}/comments/{posted['id']}")]
    assert world.ado_comments() == []
    assert world.view("c1")["work_items"][0]["state"] == "deleted"
    with pytest.raises(InvalidInput) as refused:
        world.put("c1", "again")
    assert refused.value.status == 409


def test_a_lost_answer_is_recovered_not_posted_again(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ado_comments.add

    def posted_then_timed_out(*args: Any, **kwargs: Any) -> dict[str, Any]:
        real(*args, **kwargs)
        raise AdoTimeout("read timed out")

    world.put("c1", "exactly once")
    (message,) = world.queued()
    monkeypatch.setattr(ado_comments, "add", posted_then_timed_out)
    with pytest.raises(TransientError):
        world.run(message)
    monkeypatch.setattr(ado_comments, "add", real)
    assert world.view("c1")["work_items"][0]["state"] == "pending"
    world.sandbox.reset_calls()

    world.run(message)  # the queue's retry

    assert [m for m, _ in world.comment_calls()] == ["GET", "GET"]  # newest comments, then who we are
    (posted,) = world.ado_comments()
    assert world.view("c1")["work_items"][0] == {"account_id": world.account_id, "key": world.key,
                                                  "ado_comment_id": posted["id"], "state": "posted", "version": 1,
                                                  "problem": None}


def test_a_create_that_never_reached_ado_is_posted_on_retry(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ado_comments.add

    def unreachable(*args: Any, **kwargs: Any) -> dict[str, Any]:
        raise AdoTimeout("connect timed out")

    world.put("c1", "after an outage")
    (message,) = world.queued()
    monkeypatch.setattr(ado_comments, "add", unreachable)
    with pytest.raises(TransientError):
        world.run(message)
    monkeypatch.setattr(ado_comments, "add", real)

    world.run(message)

    assert len(world.ado_comments()) == 1
    assert world.view("c1")["work_items"][0]["state"] == "posted"


def test_a_push_meeting_another_push_is_sent_again_for_after_its_lease(world: World,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    world.put("c1", "slow")
    (message,) = world.queued()
    real = ado_comments.add
    seen: list[Any] = []

    def with_a_second_worker(*args: Any, **kwargs: Any) -> dict[str, Any]:
        world.run(message)  # a duplicate message handled while this push holds the lease
        seen.extend(world.sent.sent)
        return real(*args, **kwargs)

    monkeypatch.setattr(ado_comments, "add", with_a_second_worker)
    world.run(message)

    ((queue, again, delay),) = seen
    assert queue == comments.QUEUE and again == message and delay is not None and delay > 60
    assert len(world.ado_comments()) == 1


def test_comment_sync_off_sends_nothing(world: World) -> None:
    world.put("c1", "posted while on")
    (message,) = world.queued()
    world.svc.store.integrations.save_org_link(OrgLink(account_id=world.account_id, org_id=world.org_id,
                                                       config={"sync_comments": False}))
    world.put("c2", "written while off")
    assert world.queued() == []
    world.sandbox.reset_calls()
    world.run(message)
    assert world.comment_calls() == [] and world.ado_comments() == []


def test_rejected_requests_change_nothing(world: World) -> None:
    bad = [{}, {"body": "x"}, {"author": {"name": ""}, "body": "x"}, {"author": {"name": "A"}, "body": ""},
           {"author": {"name": "A", "email": "nope"}, "body": "x"}, {"author": "A", "body": "x"},
           {"author": {"name": "A"}, "body": "x" * 100_001}, {"author": {"name": "A"}, "body": "x", "extra": 1}]
    for body in bad:
        with pytest.raises(InvalidInput):
            comments.put_comment(world.svc, world.org_id, "g1", "c1", body)
    with pytest.raises(NotFound):
        comments.get_comment(world.svc, world.org_id, "g1", "c1")
    with pytest.raises(NotFound):
        comments.put_comment(world.svc, world.org_id, "nope", "c1", {"author": {"name": "A"}, "body": "x"})
    with pytest.raises(NotFound):
        comments.delete_comment(world.svc, world.org_id, "g1", "c1")
    with pytest.raises(InvalidInput):
        comments.put_comment(world.svc, world.org_id, "g1", "a|b", {"author": {"name": "A"}, "body": "x"})
    assert world.queued() == []


# --- Azure DevOps → tracker ----------------------------------------------------------------------


def test_an_ado_comment_becomes_a_group_comment_and_one_event(world: World) -> None:
    html = ('<div><a href="#" data-vss-mention="version:2.0,1">@Ann Smith</a>&nbsp;see <b>this</b>:</div>'
            '<ul><li>one &lt;script&gt;</li></ul><script>alert(1)</script>')
    comment = world.human_comment(html)

    assert world.deliver(world.delivery(comment)) == 200

    cid = commentsync.inbound_comment_id(world.account_id, world.key, comment["id"])
    view = world.view(cid)
    assert view["origin"] == "azure_devops" and view["author"] == {"name": "Bob Builder", "email": "bob@example.com"}
    assert view["body"] == "@Ann Smith see **this**:\n\n- one \\<script>"
    assert view["source"] == {"account_id": world.account_id, "key": world.key, "ado_comment_id": comment["id"]}
    (event,) = world.events()
    assert event.data["text"] == view["body"] and event.data["comment_id"] == cid
    assert event.data["source"] == "azure_devops" and event.data["actor"] == "bob@example.com"
    assert event.data["work_item"] == world.key and event.data["integration_id"] == world.account_id
    assert world.sent.messages("tracker-events") == [{"organization_id": world.org_id, "group_id": "g1"}]


def test_duplicates_and_reordered_versions_are_stored_once(world: World) -> None:
    comment = world.human_comment("<p>v1</p>")
    first = world.delivery(comment)
    edited = world.sandbox.edit_comment(world.org, int(world.key), comment["id"], "<p>v2</p>",
                                        author="bob@example.com")
    second = world.delivery(edited)

    for body in (second, first, second, first):  # the edit arrives first, then everything again
        assert world.deliver(body) == 200

    (only,) = world.group_comments().values()
    assert only["body"] == "v2"
    assert [e.data["text"] for e in world.events()] == ["v2"]


def test_an_edit_delivered_later_updates_the_comment_and_tells_the_tracker_again(world: World) -> None:
    comment = world.human_comment("<p>v1</p>")
    world.deliver(world.delivery(comment))
    edited = world.sandbox.edit_comment(world.org, int(world.key), comment["id"], "<p>v2</p>",
                                        author="bob@example.com")

    world.deliver(world.delivery(edited))

    (only,) = world.group_comments().values()
    assert only["body"] == "v2" and only["version"] == 2
    assert [(e.data["text"], e.data["comment_id"]) for e in world.events()] == [
        ("v1", only["comment_id"]), ("v2", only["comment_id"])]


def test_our_own_comment_never_comes_back(world: World) -> None:
    world.put("c1", "from the tracker")
    world.run(world.queued()[0])
    (posted,) = world.ado_comments()

    assert world.deliver(world.delivery(posted)) == 200

    assert world.group_comments() == {} and world.events() == []


def test_our_own_comment_delivered_before_its_post_is_recorded_is_not_brought_in(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ado_comments.add
    statuses: list[int] = []

    def delivered_at_once(*args: Any, **kwargs: Any) -> dict[str, Any]:
        answer = real(*args, **kwargs)
        statuses.append(world.deliver(world.delivery(answer)))  # the hook wins the race with the record
        return answer

    world.put("c1", "racing its own hook")
    monkeypatch.setattr(ado_comments, "add", delivered_at_once)
    world.run(world.queued()[0])

    assert statuses == [200]
    assert world.group_comments() == {} and world.events() == []
    assert world.view("c1")["work_items"][0]["state"] == "posted"


def test_a_comment_on_a_work_item_linked_to_two_groups_reaches_both(world: World) -> None:
    world.link("g2")
    world.put("c1", "only from g1", group="g1")
    world.run(world.queued()[0])
    (ours,) = world.ado_comments()
    comment = world.human_comment("<p>for both</p>")

    for body in (world.delivery(ours), world.delivery(comment)):
        assert world.deliver(body) == 200

    for group in ("g1", "g2"):
        (only,) = world.group_comments(group).values()
        assert only["body"] == "for both"
        assert [e.data["text"] for e in world.events(group)] == ["for both"]


def test_comments_are_brought_in_only_for_organizations_that_sync_them(world: World) -> None:
    world.svc.store.integrations.save_org_link(OrgLink(account_id=world.account_id, org_id=world.org_id,
                                                       config={"sync_comments": False}))
    comment = world.human_comment("<p>not synced</p>")
    assert world.deliver(world.delivery(comment)) == 200
    assert world.group_comments() == {} and world.events() == []


def test_the_history_only_update_of_a_comment_changes_nothing(world: World) -> None:
    payload = load_fixture("workitem-updated-state-active-to-resolved.json")
    payload["resourceContainers"]["collection"]["id"] = world.account_id
    resource = payload["resource"]
    resource.update(workItemId=int(world.key), rev=9)
    resource["fields"] = {"System.History": {"newValue": "<p>hi</p>"}, "System.CommentCount": {"oldValue": 0,
                                                                                                "newValue": 1}}
    before = world.svc.store.groups.activity(world.org_id, "g1")

    assert world.deliver(json.dumps(payload).encode(), SECRET) == 200

    assert world.svc.store.groups.activity(world.org_id, "g1") == before


def test_each_hook_is_authenticated_by_its_own_secret(world: World) -> None:
    comment = world.human_comment("<p>hi</p>")
    assert world.deliver(world.delivery(comment), SECRET) == 401
    assert world.deliver(world.delivery(comment), "") == 401
    assert world.group_comments() == {}
    updated = load_fixture("workitem-updated-state-active-to-resolved.json")
    updated["resourceContainers"]["collection"]["id"] = world.account_id
    assert world.deliver(json.dumps(updated).encode(), COMMENT_SECRET) == 401


def test_a_malformed_comment_delivery_is_refused_before_anything_is_read(world: World) -> None:
    comment = world.human_comment("<p>hi</p>")
    payload = json.loads(world.delivery(comment))
    payload["resource"]["fields"]["System.History"] = ""
    assert world.deliver(json.dumps(payload).encode()) == 400


def test_the_comments_scan_brings_edits_and_deletes(world: World) -> None:
    edited = world.human_comment("<p>before</p>")
    removed = world.human_comment("<p>short-lived</p>")
    for comment in (edited, removed):
        world.deliver(world.delivery(comment))
    world.sandbox.edit_comment(world.org, int(world.key), edited["id"], "<p>after</p>", author="bob@example.com")
    world.sandbox.delete_comment(world.org, int(world.key), removed["id"], author="bob@example.com")
    world.human_comment("<p>not delivered (yet)</p>")
    world.put("c1", "ours")
    world.run(world.queued()[0])
    state = world.svc.store.integrations.read(world.account_id)
    world.sandbox.reset_calls()

    reconcile.reconcile(world.svc, world.integration(), state.links)

    found = {c["source"]["ado_comment_id"]: c for c in world.group_comments().values()}
    assert set(found) == {edited["id"], removed["id"]}
    assert found[edited["id"]]["body"] == "after" and found[removed["id"]]["deleted"] is True
    assert [e.data["text"] for e in world.events()] == ["before", "short-lived", "after"]
    assert [m for m, path in world.comment_calls() if "/comments" in path] == ["GET"]  # one list per work item
    reconcile.reconcile(world.svc, world.integration(), state.links)  # nothing new: no change
    assert len(world.events()) == 3


def test_the_comment_made_with_the_work_item_is_not_brought_in(world: World) -> None:
    item = world.sandbox.create_work_item(world.org, "Fabrikam", title="Made with a description",
                                          **{"System.History": "<p>the description</p>"})
    world.key = str(item["id"])
    world.link("g3")
    (first,) = world.ado_comments()

    assert world.deliver(world.delivery(first)) == 200

    assert world.group_comments("g3") == {} and world.events("g3") == []


def test_scan_of_an_organization_without_comment_sync_reads_nothing(world: World) -> None:
    world.svc.store.integrations.save_org_link(replace(
        world.svc.store.integrations.read(world.account_id).links[0], config={"sync_comments": False}))
    world.sandbox.reset_calls()
    state = world.svc.store.integrations.read(world.account_id)
    assert comments_inbound.reconcile(world.svc, world.integration(), state.links,
                                      {world.key: [(world.org_id, "g1")]}) == 0
    assert world.comment_calls() == []


def test_comment_ids_are_any_usable_id(world: World) -> None:
    for comment_id in ("it's 1", "ünïcode-✓", "x" * 128):
        world.put(comment_id, f"body of {comment_id}")
        world.run(world.queued()[0])
        assert world.view(comment_id)["work_items"][0]["state"] == "posted"
    assert len(world.ado_comments()) == 3
