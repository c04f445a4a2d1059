"""Store contract tests against a real Azurite."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import pytest

from shared.adapters import storage, tables
from shared.compose import Services
from shared.core.errors import Conflict, InvalidInput
from shared.core.models import (
    Activity,
    Creation,
    Group,
    GroupChange,
    GroupState,
    Identity,
    Integration,
    Link,
    OrgLink,
    Push,
    Repository,
    User,
)


def test_integration_and_links_round_trip(svc: Services, uid: str) -> None:
    integrations = svc.store.integrations
    integrations.save(Integration(account_id=uid, account_name="acme", domain_name="https://acme/",
                                  subscription_id="sub-1", secret_hash="h", last_checked=12.5))
    integrations.save_org_link(OrgLink(account_id=uid, org_id="o1", config={"sync_status_reverse": True}))
    integrations.save_org_link(OrgLink(account_id=uid, org_id="o2"))
    integrations.save_identity(uid, Identity(kind="oauth", access_token="tok", refresh_token="ref", expires_at=99.0))

    state = integrations.read(uid)

    assert state.integration is not None
    assert state.integration.account_name == "acme"
    assert state.integration.subscription_id == "sub-1"
    assert state.integration.last_checked == 12.5
    assert sorted(link.org_id for link in state.links) == ["o1", "o2"]
    assert state.links[0].config == {"sync_status_reverse": True}
    assert state.org_link("o1") == state.links[0] and state.org_link("o3") is None
    assert "tok" not in repr(state)


def test_identity_saves_only_with_current_etag(svc: Services, uid: str) -> None:
    integrations = svc.store.integrations
    integrations.save_identity(uid, Identity(kind="oauth", access_token="a1", refresh_token="r1", expires_at=1.0))
    loaded = integrations.load_identity(uid)
    assert loaded is not None
    identity, etag = loaded
    assert identity.refresh_token == "r1"

    assert integrations.save_identity(uid, Identity(kind="oauth", access_token="a2", refresh_token="r2"), etag)
    assert not integrations.save_identity(uid, Identity(kind="oauth", access_token="a3", refresh_token="r3"), etag)
    final = integrations.load_identity(uid)
    assert final is not None and final[0].access_token == "a2"


def test_user_email_index_follows_replacements(svc: Services, uid: str) -> None:
    users = svc.store.users
    users.put(User(org_id=uid, user_id="u1", emails=["Ann@Example.com", "a#b@x.io"], projects=["p1"]))
    assert _user_ids(svc, uid, "ann@example.com") == ["u1"]
    assert _user_ids(svc, uid, "A#B@x.io") == ["u1"]

    users.put(User(org_id=uid, user_id="u1", emails=["new@example.com"], projects=["p1", "p2"]))

    assert _user_ids(svc, uid, "ann@example.com") == []
    assert _user_ids(svc, uid, "new@example.com") == ["u1"]
    assert users.members_with_email(uid, "NEW@example.com") == [("u1", ["p1", "p2"])]
    user = users.get(uid, "u1")
    assert user is not None and user.projects == ["p1", "p2"]


def test_email_lookup_is_exact_not_prefix(svc: Services, uid: str) -> None:
    svc.store.users.put(User(org_id=uid, user_id="u1", emails=["ann@example.com.au"]))
    assert _user_ids(svc, uid, "ann@example.com") == []


def test_group_link_and_activity_round_trip(svc: Services, uid: str) -> None:
    groups = svc.store.groups
    groups.put(Group(org_id=uid, group_id="g1", project_id="p1", title="Boom", status="unresolved"))
    groups.add_link(Link(org_id=uid, group_id="g1", account_id="acc", key="42", url="https://x/42",
                         project_id="proj", work_item_type="Bug"))

    state = groups.read(uid, "g1")
    assert state is not None
    assert state.group.title == "Boom"
    assert state.links[("acc", "42")].work_item_type == "Bug"
    assert svc.store.integrations.groups_linked_to("acc", "42")[-1] == (uid, "g1")
    assert [a.kind for a in groups.activity(uid, "g1")] == ["link"]


def test_work_item_index_lives_in_the_integration_partition(svc: Services, uid: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A webhook reads the integration, its organization links and the linked groups in one query."""
    account = f"acc-{uid}"
    integrations, groups = svc.store.integrations, svc.store.groups
    integrations.save(Integration(account_id=account, account_name="acme", domain_name="https://acme/"))
    integrations.save_org_link(OrgLink(account_id=account, org_id=f"o1-{uid}"))
    integrations.save_org_link(OrgLink(account_id=account, org_id=f"o2-{uid}", status="disabled"))
    for org, group, key in [(f"o1-{uid}", "g1", "42"), (f"o2-{uid}", "g2", "42"), (f"o1-{uid}", "g3", "421"),
                            (f"o1-{uid}", "g4", "4")]:
        groups.put(Group(org_id=org, group_id=group, project_id="p", title="t"))
        groups.add_link(Link(org_id=org, group_id=group, account_id=account, key=key))
    queries = _count_queries(monkeypatch)

    state, linked = integrations.read_for_work_item(account, "42")

    assert len(queries) == 1
    assert state.integration is not None and state.integration.account_name == "acme"
    assert sorted(link.org_id for link in state.links) == [f"o1-{uid}", f"o2-{uid}"]
    assert sorted(linked) == [(f"o1-{uid}", "g1"), (f"o2-{uid}", "g2")]  # not #421 nor #4
    row = storage.table("Integrations").get_entity(account, f"wi|42|o1-{uid}|g1")
    assert (row["org_id"], row["group_id"]) == (f"o1-{uid}", "g1")
    assert integrations.read_for_work_item(f"none-{uid}", "42") == (integrations.read(f"none-{uid}"), [])


def test_pushes_and_creation_claims_are_rows_of_the_group(svc: Services, uid: str) -> None:
    groups = svc.store.groups
    groups.put(Group(org_id=uid, group_id="g", project_id="p", title="t"))
    push = Push("acc", "7", "status", pushed=3, lease="tok", lease_until=1e12, base_rev=5, planned='["status","x"]')
    claim = Creation("acc", started=100.0, attempted=True)

    written = groups.change(uid, "g", lambda _: GroupChange(pushes=[push], creations=[claim]))

    state = groups.read(uid, "g")
    assert state is not None and written is not None
    assert state.pushes == written.pushes == {("acc", "7", "status"): push}
    assert state.creations == written.creations == {"acc": claim}
    assert state.pushes[("acc", "7", "status")].held(now=1e9)

    # A link of the integration ends its creation claim, in the same transaction.
    groups.add_link(Link(org_id=uid, group_id="g", account_id="acc", key="7"))
    state = groups.read(uid, "g")
    assert state is not None and state.creations == {} and list(state.links) == [("acc", "7")]
    assert state.pushes == {("acc", "7", "status"): push}


def test_repository_round_trip(svc: Services, uid: str) -> None:
    repo = Repository(org_id=uid, repo_id="r1", name="acme/web", provider="visualstudio", external_id="e1",
                      config={"project": "P", "name": "web"}, status="disabled")
    svc.store.repositories.put(repo)
    assert svc.store.repositories.get(uid, "r1") == repo
    assert svc.store.repositories.list(uid) == [repo]


def test_concurrent_group_changes_both_survive(svc: Services, uid: str) -> None:
    groups = svc.store.groups
    groups.put(Group(org_id=uid, group_id="g", project_id="p", title="t"))
    barrier = threading.Barrier(8)

    def bump(n: int) -> None:
        def decide(state: GroupState | None) -> GroupChange:
            assert state is not None
            group = state.group
            return GroupChange(group=Group(**{**group.__dict__, "version": group.version + 1}),
                               activity=[Activity(kind="bump", data={"n": n})])

        barrier.wait()
        groups.change(uid, "g", decide)

    threads = [threading.Thread(target=bump, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    group = groups.get(uid, "g")
    assert group is not None and group.version == 1 + 8
    assert sorted(a.data["n"] for a in groups.activity(uid, "g")) == list(range(8))


def test_concurrent_integration_updates_both_survive(svc: Services, uid: str) -> None:
    integrations = svc.store.integrations
    integrations.save(Integration(account_id=uid, account_name="acme", domain_name="https://acme/", last_checked=0))
    barrier = threading.Barrier(6)

    def bump() -> None:
        barrier.wait()
        integrations.update(uid, lambda i: replace(i, last_checked=(i.last_checked or 0) + 1))

    threads = [threading.Thread(target=bump) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    integration = integrations.get(uid)
    assert integration is not None and integration.last_checked == 6


def test_optimistic_runs_an_attempt_again_after_a_lost_race() -> None:
    attempts: list[int] = []

    def attempt() -> str:
        attempts.append(len(attempts))
        if len(attempts) < 3:
            raise tables.LostRace()
        return "done"

    assert tables.optimistic("thing", attempt) == "done"
    assert len(attempts) == 3


def test_optimistic_gives_up_with_a_conflict_naming_what_changed() -> None:
    attempts: list[int] = []

    def attempt() -> None:
        attempts.append(1)
        raise tables.LostRace()

    with pytest.raises(Conflict, match="group g7 changed concurrently"):
        tables.optimistic("group g7", attempt)
    assert len(attempts) == tables.MAX_ATTEMPTS


def test_optimistic_does_not_retry_other_failures() -> None:
    attempts: list[int] = []

    def attempt() -> None:
        attempts.append(1)
        raise ValueError("not a race")

    with pytest.raises(ValueError):
        tables.optimistic("thing", attempt)
    assert len(attempts) == 1


@pytest.mark.parametrize("bad", ["a/b", "a\\b", "a#b", "a?b", "a|b", "tab\there", "", " ", "x" * 300, None, 3.5])
def test_invalid_ids_are_rejected(svc: Services, bad: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        svc.store.integrations.read(bad)  # type: ignore[arg-type]
    assert caught.value.field == "account_id"


def _user_ids(svc: Services, org_id: str, email: str) -> list[str]:
    return [user_id for user_id, _ in svc.store.users.members_with_email(org_id, email)]


def _count_queries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Spy on the storage queries made from now on (their table names)."""
    seen: list[str] = []
    real = tables.query

    def counted(name: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(tables, "query", counted)
    return seen
