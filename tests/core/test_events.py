"""Events: builders, the JSON payload the tracker receives, and pull-feed cursors."""

from __future__ import annotations

import json
import string
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.core import event_json, events
from shared.core.errors import InvalidInput

NOW = 1714566600.25  # 2024-05-01T12:30:00.250Z


def test_status_change_payload_is_exactly_what_the_tracker_is_promised() -> None:
    event = events.status_changed(
        "org-1", "grp-9", "unresolved", "resolved",
        source="azure_devops", integration_id="acct-1", work_item="42", rev=7, actor="ana@example.com",
        resolution_strategy="resolve_in_next_release", now=NOW,
    )
    payload = event_json.to_payload(event)
    assert list(payload) == ["id", "type", "created", "organization_id", "group_id", "data"]
    assert payload["type"] == "group.status_changed"
    assert payload["created"] == "2024-05-01T12:30:00.250Z"
    assert payload["organization_id"] == "org-1"
    assert payload["group_id"] == "grp-9"
    assert payload["data"] == {
        "old": "unresolved", "new": "resolved", "source": "azure_devops", "integration_id": "acct-1",
        "work_item": "42", "rev": 7, "actor": "ana@example.com", "resolution_strategy": "resolve_in_next_release",
    }


BUILT = [
    events.status_changed("o", "g", "unresolved", "resolved", source="tracker", now=NOW),
    events.assignee_changed("o", "g", None, "ana@example.com", source="azure_devops", rev=3, now=NOW),
    events.linked("o", "g", integration_id="a", work_item="42", source="tracker", new_work_item=True, now=NOW),
    events.unlinked("o", "g", integration_id="a", work_item="42", source="azure_devops", work_item_deleted=True,
                    now=NOW),
    events.comment_added("o", "g", "Looks fixed", source="azure_devops", comment_id="c1", now=NOW),
    events.sync_failed("o", "g", "no_ado_user", "No Azure DevOps user has the email ana@example.com",
                       field="assignee", source="tracker", now=NOW),
    events.subscription_changed("o", integration_id="a", old="enabled", new="disabledBySystem", now=NOW),
]


@pytest.mark.parametrize("event", BUILT, ids=lambda e: e.type)
def test_every_type_has_one_fixed_schema_and_round_trips(event: events.Event) -> None:
    assert list(event.data) == list(events.DATA_KEYS[event.type])
    assert event_json.from_json(event_json.to_json(event)) == event


def test_every_type_has_a_builder() -> None:
    assert {e.type for e in BUILT} == events.EVENT_TYPES


def test_integration_events_have_no_group() -> None:
    event = events.subscription_changed("o", integration_id="a", old=None, new="enabled", now=NOW)
    assert event_json.to_payload(event)["group_id"] is None
    with pytest.raises(InvalidInput):
        event_json.from_json(event_json.to_json(event).replace('"group_id":null', '"group_id":"g"'))


def test_a_sync_failure_may_concern_no_single_group() -> None:
    event = events.sync_failed("o", None, "permission_refused", "The credential cannot edit work items", now=NOW)
    assert event_json.from_json(event_json.to_json(event)).group_id is None


def test_json_is_compact_ascii_in_a_fixed_key_order() -> None:
    event = events.comment_added("o", "g", "Déjà vu ✓", source="tracker", now=NOW)
    text = event_json.to_json(event)
    assert text.isascii()
    assert ": " not in text and ", " not in text
    assert text.startswith('{"id":"evt_')
    assert json.loads(text)["data"]["text"] == "Déjà vu ✓"
    assert event_json.to_json(event_json.from_json(text)) == text


def test_long_comments_are_cut_and_flagged() -> None:
    event = events.comment_added("o", "g", "x" * (events.MAX_COMMENT_CHARS + 1), source="tracker", now=NOW)
    assert len(event.data["text"]) == events.MAX_COMMENT_CHARS
    assert event.data["truncated"] is True


def test_ids_sort_in_creation_order_even_within_one_millisecond() -> None:
    ids = [events.new_event_id(NOW) for _ in range(50)] + [events.new_event_id(NOW + 1)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(len(i) == 30 and i.startswith("evt_") for i in ids)
    assert "." not in "".join(ids)  # the id is part of the signed content `id.timestamp.body`


def test_ids_of_later_events_sort_after_earlier_ones() -> None:
    early = events.status_changed("o", "g", "unresolved", "resolved", source="tracker", now=NOW)
    late = events.status_changed("o", "g", "resolved", "unresolved", source="tracker", now=NOW + 0.001)
    assert early.id < late.id


@pytest.mark.parametrize(("call", "field"), [
    (lambda: events.status_changed("o", "g", "a", "b", source="jira", now=NOW), "source"),  # type: ignore[arg-type]
    (lambda: events.sync_failed("o", "g", "timeout", "x", now=NOW), "reason"),  # type: ignore[arg-type]
    (lambda: events.assignee_changed("o", "g", None, "x", source="tracker", rev=-1, now=NOW), "rev"),
    (lambda: events.status_changed("", "g", "a", "b", source="tracker", now=NOW), "organization_id"),
    (lambda: events.status_changed("o", "g", "a", "b", source="tracker", now=float("nan")), "created"),
])
def test_builders_refuse_values_outside_the_contract(call: object, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        call()  # type: ignore[operator]
    assert caught.value.field == field


def _payload() -> dict[str, object]:
    return event_json.to_payload(BUILT[0])


@pytest.mark.parametrize(("change", "field"), [
    ({"id": "evt_123"}, "id"),
    ({"id": "msg_01HX0000000000000000000000"}, "id"),
    ({"type": "group.deleted"}, "type"),
    ({"created": "2024-05-01T12:30:00"}, "created"),  # no zone
    ({"created": "2024-05-01T14:30:00+02:00"}, "created"),  # not UTC
    ({"created": 1714566600}, "created"),
    ({"organization_id": None}, "organization_id"),
    ({"group_id": ""}, "group_id"),
    ({"group_id": None}, "group_id"),  # a group event without its group
    ({"data": []}, "data"),
    ({"data": {"old": "unresolved"}}, "data"),
])
def test_from_json_rejects_invalid_events(change: dict[str, object], field: str) -> None:
    payload = {**_payload(), **change}
    with pytest.raises(InvalidInput) as caught:
        event_json.from_json(json.dumps(payload))
    assert caught.value.field == field


@pytest.mark.parametrize("text", ["", "not json", "[]", '{"id": "evt_x"}', b"\xff"])
def test_from_json_rejects_what_is_not_an_event(text: str | bytes) -> None:
    with pytest.raises(InvalidInput):
        event_json.from_json(text)


def test_from_json_ignores_keys_it_does_not_know() -> None:
    payload = {**_payload(), "extra": 1}
    assert event_json.from_json(json.dumps(payload)) == BUILT[0]


def test_created_accepts_plus_zero_and_microseconds() -> None:
    payload = {**_payload(), "created": "2024-05-01T12:30:00.250400+00:00"}
    assert event_json.from_json(json.dumps(payload)).created == NOW


@given(st.integers(min_value=0, max_value=253402300799999))
def test_created_round_trips_to_the_millisecond(ms: int) -> None:
    assert event_json.parse_created(event_json.format_created(ms / 1000)) == ms / 1000


# --- cursors ------------------------------------------------------------------------------------

KEY_CHARS = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\#?\x7f")
KEYS = st.text(KEY_CHARS, min_size=1, max_size=60)


@given(KEYS, KEYS)
def test_cursors_round_trip_and_are_url_safe(partition_key: str, row_key: str) -> None:
    cursor = event_json.encode_cursor(partition_key, row_key)
    assert set(cursor) <= set(string.ascii_letters + string.digits + "-_")
    assert event_json.decode_cursor(cursor) == (partition_key, row_key)


@pytest.mark.parametrize("cursor", [
    "",
    "not a cursor!",
    "e30",  # {}
    event_json.encode_cursor("org-1", "evt_01") + "=",  # padding is not part of a cursor
    event_json.encode_cursor("org-1", "evt_01") + "A",
    "WyJhIl0",  # ["a"]
    "WyJhIiwxXQ",  # ["a",1]
    "WyJhIiwiYi9jIl0",  # ["a","b/c"]: not a table key
    "A" * (event_json.MAX_CURSOR_CHARS + 4),
    None,
])
def test_bad_cursors_are_invalid_input_about_after(cursor: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        event_json.decode_cursor(cursor)
    assert caught.value.field == "after"
    assert caught.value.status == 400


@given(st.text(string.ascii_letters + string.digits + "-_", max_size=80))
def test_arbitrary_text_never_decodes_to_something_else(text: str) -> None:
    try:
        keys = event_json.decode_cursor(text)
    except InvalidInput:
        return
    assert event_json.encode_cursor(*keys) == text


def test_encode_cursor_refuses_keys_a_table_cannot_hold() -> None:
    with pytest.raises(ValueError):
        event_json.encode_cursor("org/1", "evt_01")


def test_an_event_id_carries_its_creation_time() -> None:
    later = time.time() + 1000.0  # ids never go backwards in one process: use a time no test passed yet
    assert events.id_time(events.new_event_id(later)) == round(later * 1000) / 1000
    with pytest.raises(ValueError):
        events.id_time("evt_nope")
