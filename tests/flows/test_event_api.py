"""The management handlers of tracker events: feed pages and cursors, deliveries, the organization's endpoint."""

from __future__ import annotations

import pytest

from shared.adapters import feed, storage
from shared.adapters.tracker_webhook import new_secret
from shared.compose import Services
from shared.core import event_json, events
from shared.core.errors import InvalidInput, NotFound
from shared.flows import event_api

pytestmark = pytest.mark.usefixtures("azurite")


def made(org: str, count: int) -> list[events.Event]:
    return [events.status_changed(org, "g1", "unresolved", "resolved", source="tracker", rev=n) for n in range(count)]


def page(svc: Services, org: str, **query: str) -> dict:
    body = event_api.events(svc, org, query).body
    assert isinstance(body, dict)
    return body


def test_the_feed_pages_oldest_first_and_the_last_cursor_waits_for_new_events(svc: Services, uid: str) -> None:
    org = f"org-{uid}"
    first = made(org, 5)
    svc.store.feed.append(org, first)
    one = page(svc, org, limit="2")
    two = page(svc, org, limit="2", after=one["next"])
    three = page(svc, org, limit="2", after=two["next"])
    assert [e["id"] for e in one["events"] + two["events"] + three["events"]] == [e.id for e in first]
    assert one["events"][0] == event_json.to_payload(first[0])
    empty = page(svc, org, after=three["next"])
    assert empty == {"events": [], "next": three["next"]}  # poll again with the same cursor
    later = made(org, 1)
    svc.store.feed.append(org, later)
    assert [e["id"] for e in page(svc, org, after=three["next"])["events"]] == [later[0].id]
    assert page(svc, f"none-{uid}") == {"events": [], "next": None}


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "501"}, {"limit": "ten"}, {"limit": "٣"},
                                   {"after": "not a cursor"}, {"after": "e30"}])
def test_bad_limits_and_cursors_are_400_naming_the_parameter(svc: Services, uid: str, query: dict) -> None:
    with pytest.raises(InvalidInput) as raised:
        event_api.events(svc, f"org-{uid}", query)
    assert raised.value.status == 400 and raised.value.field in ("limit", "after")


def test_a_cursor_of_another_organization_or_of_the_deliveries_is_refused(svc: Services, uid: str) -> None:
    svc.store.feed.append(f"a-{uid}", made(f"a-{uid}", 1))
    cursor = page(svc, f"a-{uid}")["next"]
    with pytest.raises(InvalidInput, match="after is not a valid cursor"):
        event_api.events(svc, f"b-{uid}", {"after": cursor})
    with pytest.raises(InvalidInput, match="after is not a valid cursor"):
        event_api.deliveries(svc, f"a-{uid}", {"after": cursor})


def test_deliveries_filter_by_status_and_unknown_statuses_are_refused(svc: Services, uid: str) -> None:
    assert event_api.deliveries(svc, f"org-{uid}", {"status": "failed"}).body == {"deliveries": [], "next": None}
    with pytest.raises(InvalidInput):
        event_api.deliveries(svc, f"org-{uid}", {"status": "lost"})


def test_replay_of_an_unknown_event_is_404(svc: Services, uid: str) -> None:
    with pytest.raises(NotFound):
        event_api.replay(svc, f"org-{uid}", "evt_01HWT245HTZWJT25GYCPMF7QDY")


def test_the_endpoint_secret_is_sealed_and_never_returned(svc: Services, uid: str) -> None:
    org, secret = f"org-{uid}", new_secret()
    answer = event_api.put_config(svc, org, {"tracker_webhook_url": "https://tracker.example.com/hooks?token=t",
                                             "tracker_webhook_secret": secret}).body
    assert answer == {"organization_id": org, "tracker_webhook_url": "https://tracker.example.com/hooks?token=t",
                      "tracker_webhook_secret_set": True, "delivery": "organization", "endpoint_gone": False}
    row = storage.table(feed.TABLE).get_entity(org, feed.RK_CONFIG)
    assert secret not in str(dict(row)) and secret[6:] not in str(dict(row))
    assert svc.store.feed.open_secret(org, svc.store.feed.config(org)) == secret
    # A new URL without a secret keeps the stored one.
    event_api.put_config(svc, org, {"tracker_webhook_url": "https://tracker.example.com/v2"})
    assert svc.store.feed.open_secret(org, svc.store.feed.config(org)) == secret


@pytest.mark.parametrize("body,field", [
    ({}, "tracker_webhook_url"),
    ({"tracker_webhook_url": "http://tracker.example.com/", "tracker_webhook_secret": new_secret()},
     "tracker_webhook_url"),
    ({"tracker_webhook_url": "ftp://x/", "tracker_webhook_secret": new_secret()}, "tracker_webhook_url"),
    ({"tracker_webhook_url": "https://tracker.example.com/", "tracker_webhook_secret": "whsec_short"},
     "tracker_webhook_secret"),
    ({"tracker_webhook_url": "https://tracker.example.com/"}, "tracker_webhook_secret"),
    ({"tracker_webhook_url": None, "tracker_webhook_secret": new_secret()}, "tracker_webhook_secret"),
    ({"tracker_webhook_url": 7}, "tracker_webhook_url"),
    ({"tracker_webhook_url": None, "url": "https://x/"}, "url"),
])
def test_bad_endpoint_settings_are_422_and_change_nothing(svc: Services, uid: str, body: dict, field: str) -> None:
    org = f"org-{uid}"
    with pytest.raises(InvalidInput) as raised:
        event_api.put_config(svc, org, body)
    assert (raised.value.status, raised.value.field) == (422, field)
    assert "whsec_short" not in raised.value.message
    assert svc.store.feed.config(org) == feed.OrgConfig()
