"""Store contract tests against a real Azurite."""

from __future__ import annotations

import threading

import pytest

from shared.adapters import store
from shared.core.errors import InvalidInput
from shared.core.models import (
    Activity,
    Group,
    GroupChange,
    GroupState,
    Identity,
    Integration,
    Link,
    OrgLink,
    Repository,
    User,
)

pytestmark = pytest.mark.usefixtures("azurite")


def test_integration_and_links_round_trip(uid: str) -> None:
    store.save_integration(Integration(account_id=uid, account_name="acme", domain_name="https://acme/",
                                       subscription_id="sub-1", secret_hash="h", last_checked=12.5))
    store.save_org_link(OrgLink(account_id=uid, org_id="o1", config={"sync_status_reverse": True}))
    store.save_org_link(OrgLink(account_id=uid, org_id="o2"))
    store.save_identity(uid, Identity(kind="oauth", access_token="tok", refresh_token="ref", expires_at=99.0))

    state = store.read_integration(uid)

    assert state.integration is not None
    assert state.integration.account_name == "acme"
    assert state.integration.subscription_id == "sub-1"
    assert state.integration.last_checked == 12.5
    assert sorted(link.org_id for link in state.links) == ["o1", "o2"]
    assert state.links[0].config == {"sync_status_reverse": True}
    assert "tok" not in repr(state)


def test_identity_saves_only_with_current_etag(uid: str) -> None:
    store.save_identity(uid, Identity(kind="oauth", access_token="a1", refresh_token="r1", expires_at=1.0))
    loaded = store.load_identity(uid)
    assert loaded is not None
    identity, etag = loaded
    assert identity.refresh_token == "r1"

    assert store.save_identity(uid, Identity(kind="oauth", access_token="a2", refresh_token="r2"), etag)
    assert not store.save_identity(uid, Identity(kind="oauth", access_token="a3", refresh_token="r3"), etag)
    final = store.load_identity(uid)
    assert final is not None and final[0].access_token == "a2"


def test_user_email_index_follows_replacements(uid: str) -> None:
    store.put_user(User(org_id=uid, user_id="u1", emails=["Ann@Example.com", "a#b@x.io"], projects=["p1"]))
    assert _user_ids(uid, "ann@example.com") == ["u1"]
    assert _user_ids(uid, "A#B@x.io") == ["u1"]

    store.put_user(User(org_id=uid, user_id="u1", emails=["new@example.com"], projects=["p1", "p2"]))

    assert _user_ids(uid, "ann@example.com") == []
    assert _user_ids(uid, "new@example.com") == ["u1"]
    assert store.members_with_email(uid, "NEW@example.com") == [("u1", ["p1", "p2"])]
    user = store.get_user(uid, "u1")
    assert user is not None and user.projects == ["p1", "p2"]


def test_email_lookup_is_exact_not_prefix(uid: str) -> None:
    store.put_user(User(org_id=uid, user_id="u1", emails=["ann@example.com.au"]))
    assert _user_ids(uid, "ann@example.com") == []


def test_group_link_and_activity_round_trip(uid: str) -> None:
    store.put_group(Group(org_id=uid, group_id="g1", project_id="p1", title="Boom", status="unresolved"))
    store.add_link(Link(org_id=uid, group_id="g1", account_id="acc", key="42", url="https://x/42",
                        project_id="proj", work_item_type="Bug"))

    state = store.read_group(uid, "g1")
    assert state is not None
    assert state.group.title == "Boom"
    assert state.links[("acc", "42")].work_item_type == "Bug"
    assert store.groups_linked_to("acc", "42")[-1] == (uid, "g1")
    assert [a.kind for a in store.list_activity(uid, "g1")] == ["link"]


def test_repository_round_trip(uid: str) -> None:
    repo = Repository(org_id=uid, repo_id="r1", name="acme/web", provider="visualstudio", external_id="e1",
                      config={"project": "P", "name": "web"}, status="disabled")
    store.put_repository(repo)
    assert store.get_repository(uid, "r1") == repo
    assert store.list_repositories(uid) == [repo]


def test_concurrent_group_changes_both_survive(uid: str) -> None:
    store.put_group(Group(org_id=uid, group_id="g", project_id="p", title="t"))
    barrier = threading.Barrier(8)

    def bump(n: int) -> None:
        def decide(state: GroupState | None) -> GroupChange:
            assert state is not None
            group = state.group
            return GroupChange(group=Group(**{**group.__dict__, "version": group.version + 1}),
                               activity=[Activity(kind="bump", data={"n": n})])

        barrier.wait()
        store.change_group(uid, "g", decide)

    threads = [threading.Thread(target=bump, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    group = store.get_group(uid, "g")
    assert group is not None and group.version == 1 + 8
    assert sorted(a.data["n"] for a in store.list_activity(uid, "g")) == list(range(8))


@pytest.mark.parametrize("bad", ["a/b", "a\\b", "a#b", "a?b", "a|b", "tab\there", "", " ", "x" * 300, None, 3.5])
def test_invalid_ids_are_rejected(bad: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        store.read_integration(bad)  # type: ignore[arg-type]
    assert caught.value.field == "account_id"


def _user_ids(org_id: str, email: str) -> list[str]:
    return [user_id for user_id, _ in store.members_with_email(org_id, email)]
