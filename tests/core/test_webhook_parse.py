"""shared.core.webhook: the envelope checks, the parts of a delivery the sync uses, credentials, e-mails."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from shared.core.errors import InvalidInput
from shared.core.webhook import MAX_BODY, Change, account_of, assignee_of, credentials, email_of, is_account, parse

COLLECTION = "80ded3e8-3cd3-43b1-9f96-52032624aa3a"
PROJECT = "c0bf429a-c03c-4a99-9336-d45be74db5a6"


def _payload(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "eventType": "workitem.updated",
        "resourceContainers": {"collection": {"id": COLLECTION}, "project": {"id": PROJECT}},
        "resource": {
            "workItemId": 31,
            "rev": 2,
            "fields": {
                "System.State": {"oldValue": "Active", "newValue": "Resolved"},
                "System.AssignedTo": {"oldValue": "B <b@x.example>", "newValue": "A <a@x.example>"},
            },
            "revision": {"rev": 2, "fields": {"System.WorkItemType": "Bug"}},
        },
    }
    payload.update(changes)
    return payload


def _body(payload: Any) -> bytes:
    return json.dumps(payload).encode()


def _resource(**changes: Any) -> dict[str, Any]:
    resource = dict(_payload()["resource"])
    resource.update(changes)
    return resource


# --- parse: envelope ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "status", "field", "message"),
    [
        pytest.param(b"not json", 400, None, "not valid JSON", id="not-json"),
        pytest.param(b"", 400, None, "not valid JSON", id="empty"),
        pytest.param(b"\xff\xfe{}", 400, None, "not valid JSON", id="not-utf8"),
        pytest.param(b"[" * 100_000 + b"]" * 100_000, 400, None, None, id="deeply-nested"),
        pytest.param(b"[]", 400, None, "JSON object", id="array"),
        pytest.param(b'"workitem.updated"', 400, None, "JSON object", id="string"),
        pytest.param(b"null", 400, None, "JSON object", id="null"),
        pytest.param(b"NaN", 400, None, "not valid JSON", id="nan"),
        pytest.param(_body({"resourceContainers": {"collection": {"id": COLLECTION}}}), 400, "eventType",
                     "eventType", id="missing-event-type"),
        pytest.param(_body(_payload(eventType="")), 400, "eventType", "eventType", id="empty-event-type"),
        pytest.param(_body(_payload(eventType=7)), 400, "eventType", "eventType", id="numeric-event-type"),
        pytest.param(_body(_payload(resourceContainers=None)), 400, "resourceContainers", "collection.id",
                     id="missing-containers"),
        pytest.param(_body(_payload(resourceContainers={"collection": {}})), 400, "resourceContainers",
                     "collection.id", id="missing-collection-id"),
        pytest.param(_body(_payload(resourceContainers={"collection": {"id": ""}})), 400, "resourceContainers",
                     "collection.id", id="empty-collection-id"),
        pytest.param(_body(_payload(resourceContainers={"collection": {"id": True}})), 400, "resourceContainers",
                     "collection.id", id="bool-collection-id"),
        pytest.param(_body(_payload(resourceContainers={"collection": {"id": {"x": 1}}})), 400,
                     "resourceContainers", "collection.id", id="object-collection-id"),
        pytest.param(_body(_payload(resourceContainers={"collection": COLLECTION})), 400, "resourceContainers",
                     "collection.id", id="collection-not-an-object"),
    ],
)
def test_malformed_envelopes_are_400(body: bytes, status: int, field: str | None, message: str | None) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(body)
    assert caught.value.status == status
    assert caught.value.field == field
    if message:
        assert message in caught.value.message


def test_body_over_2_mib_is_413_before_parsing() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(b"x" * (MAX_BODY + 1))
    assert caught.value.status == 413
    assert MAX_BODY == 2 * 1024 * 1024


def test_body_of_exactly_2_mib_is_parsed() -> None:
    body = _body(_payload())
    padded = body + b" " * (MAX_BODY - len(body))
    assert len(padded) == MAX_BODY
    assert parse(padded).collection_id == COLLECTION


# --- parse: contents ----------------------------------------------------------------------------


def test_a_full_delivery() -> None:
    delivery = parse(_body(_payload()))
    assert delivery.event_type == "workitem.updated"
    assert delivery.collection_id == COLLECTION
    assert delivery.work_item_id == "31"
    assert delivery.project_id == PROJECT
    assert delivery.work_item_type == "Bug"
    assert delivery.rev == 2
    assert delivery.state == Change(old="Active", new="Resolved")
    assert delivery.assigned_to == Change(old="B <b@x.example>", new="A <a@x.example>")


def test_other_event_types_still_parse() -> None:
    delivery = parse(_body(_payload(eventType="git.push", resource={})))
    assert (delivery.event_type, delivery.work_item_id, delivery.rev) == ("git.push", None, 0)


@pytest.mark.parametrize(
    ("collection", "expected"),
    [
        pytest.param(COLLECTION, COLLECTION, id="guid"),
        pytest.param(12345, "12345", id="number-becomes-string"),
    ],
)
def test_collection_id(collection: Any, expected: str) -> None:
    payload = _payload(resourceContainers={"collection": {"id": collection}})
    assert parse(_body(payload)).collection_id == expected


@pytest.mark.parametrize(
    ("work_item_id", "expected"),
    [
        pytest.param(31, "31", id="int"),
        pytest.param("31", "31", id="digit-string"),
        pytest.param(0, None, id="zero"),
        pytest.param(-5, None, id="negative"),
        pytest.param(True, None, id="bool"),
        pytest.param("31a", None, id="not-digits"),
        pytest.param("1" * 20, None, id="too-long"),
        pytest.param(3.0, None, id="float"),
        pytest.param(None, None, id="missing"),
        pytest.param(
            "²", None, id="non-ascii-digit",
        ),
    ],
)
def test_work_item_id(work_item_id: Any, expected: str | None) -> None:
    payload = _payload(resource=_resource(workItemId=work_item_id))
    assert parse(_body(payload)).work_item_id == expected


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        pytest.param({"rev": 9, "revision": {"rev": 8}}, 9, id="resource-rev-first"),
        pytest.param({"revision": {"rev": 8}}, 8, id="revision-rev"),
        pytest.param({"fields": {"System.Rev": {"oldValue": 6, "newValue": 7}}}, 7, id="system-rev-field"),
        pytest.param({"rev": "9", "revision": {"rev": 8}}, 8, id="string-rev-skipped"),
        pytest.param({"rev": True, "revision": {"rev": 8}}, 8, id="bool-rev-skipped"),
        pytest.param({"rev": -1}, 0, id="negative-rev"),
        pytest.param({"rev": 2**31}, 0, id="out-of-range-rev"),
        pytest.param({"rev": 2**31 - 1}, 2**31 - 1, id="largest-rev"),
        pytest.param({}, 0, id="no-rev"),
    ],
)
def test_revision(resource: dict[str, Any], expected: int) -> None:
    assert parse(_body(_payload(resource=resource))).rev == expected


@pytest.mark.parametrize(
    ("fields", "state", "assigned_to"),
    [
        pytest.param({"System.State": {"oldValue": "New", "newValue": "Active"}}, Change("New", "Active"), None,
                     id="state-only"),
        pytest.param({"System.State": {"newValue": "New"}}, Change(None, "New"), None, id="new-item-no-old-state"),
        pytest.param({"System.AssignedTo": {"oldValue": "A <a@x.example>"}}, None, Change("A <a@x.example>", None),
                     id="unassigned-has-no-new-value"),
        pytest.param({"System.State": {}}, None, None, id="empty-change-record-is-no-change"),
        pytest.param({"System.State": "Active"}, None, None, id="change-record-not-an-object"),
        pytest.param({"System.Title": {"oldValue": "a", "newValue": "b"}}, None, None, id="unsynced-field-only"),
    ],
)
def test_state_and_assignee_changes(fields: dict[str, Any], state: Change | None,
                                    assigned_to: Change | None) -> None:
    delivery = parse(_body(_payload(resource=_resource(fields=fields))))
    assert (delivery.state, delivery.assigned_to) == (state, assigned_to)


@pytest.mark.parametrize(
    ("project", "wit", "expected"),
    [
        pytest.param(PROJECT, "User Story", (PROJECT, "User Story"), id="usable"),
        pytest.param("a/b", "Bug#1", (None, None), id="unusable-key-characters-dropped"),
        pytest.param("..", "..", (None, None), id="dot-segments-dropped"),
        pytest.param(5, 5, (None, None), id="not-strings"),
    ],
)
def test_project_and_type_are_only_kept_when_usable_as_keys(project: Any, wit: Any,
                                                              expected: tuple[Any, Any]) -> None:
    payload = _payload(resourceContainers={"collection": {"id": COLLECTION}, "project": {"id": project}},
                       resource=_resource(revision={"rev": 2, "fields": {"System.WorkItemType": wit}}))
    delivery = parse(_body(payload))
    assert (delivery.project_id, delivery.work_item_type) == expected


# --- credentials --------------------------------------------------------------------------------


def _basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"authorization": _basic("ado-sync:s3cret")}, ["s3cret"], id="basic-password"),
        pytest.param({"authorization": "basic " + _basic("u:pw")[6:]}, ["pw"], id="scheme-case-insensitive"),
        pytest.param({"authorization": _basic("u:pa:ss")}, ["pa:ss"], id="password-with-colon"),
        pytest.param({"authorization": _basic(":pw")}, ["pw"], id="no-user-name"),
        pytest.param({"authorization": _basic("u:pässwörd")}, ["pässwörd"], id="utf8-password"),
        pytest.param({"shared-secret": "s3cret"}, ["s3cret"], id="shared-secret-header"),
        pytest.param({"authorization": _basic("u:a"), "shared-secret": "b"}, ["a", "b"], id="both"),
        pytest.param({}, [], id="none"),
        pytest.param({"authorization": _basic("u:")}, [], id="empty-password"),
        pytest.param({"authorization": _basic("no-colon")}, [], id="no-colon"),
        pytest.param({"authorization": "Basic"}, [], id="scheme-only"),
        pytest.param({"authorization": "Basic !!!not-base64!!!"}, [], id="malformed-base64"),
        pytest.param({"authorization": "Basic YWJj="}, [], id="bad-padding"),
        pytest.param({"authorization": "Basic " + base64.b64encode(b"u:\xff\xfe").decode()}, [],
                     id="password-not-utf8"),
        pytest.param({"authorization": "Basic ünïcode"}, [], id="non-ascii-base64"),
        pytest.param({"authorization": "Bearer s3cret"}, [], id="other-scheme"),
        pytest.param({"shared-secret": ""}, [], id="empty-header"),
    ],
)
def test_credentials(headers: dict[str, str], expected: list[str]) -> None:
    assert credentials(headers) == expected


# --- email_of -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("Jamie Doe <jamie@x.example>", "jamie@x.example", id="name-and-brackets"),
        pytest.param("<jamie@x.example>", "jamie@x.example", id="brackets-only"),
        pytest.param("Doe, Jamie < jamie@x.example >", "jamie@x.example", id="spaces-inside-brackets"),
        pytest.param("jamie@x.example", "jamie@x.example", id="bare-address"),
        pytest.param("  jamie@x.example  ", "jamie@x.example", id="bare-address-trimmed"),
        pytest.param("Jamie@X.Example", "Jamie@X.Example", id="case-kept"),
        pytest.param({"uniqueName": "jamie@x.example", "displayName": "Jamie"}, "jamie@x.example",
                     id="identity-unique-name"),
        pytest.param({"uniqueName": "CORP\\jamie", "mailAddress": "jamie@x.example"}, "jamie@x.example",
                     id="identity-mail-address-when-unique-name-is-not-an-email"),
        pytest.param({"displayName": "Jamie <jamie@x.example>"}, "jamie@x.example", id="identity-display-name"),
        pytest.param({"uniqueName": "CORP\\jamie", "displayName": "Jamie"}, None, id="identity-without-email"),
        pytest.param({"displayName": 5}, None, id="identity-display-name-not-text"),
        pytest.param("Jamie Doe", None, id="name-only"),
        pytest.param("Jamie <CORP\\jamie>", None, id="brackets-without-email"),
        pytest.param("two words@x.example", None, id="spaces-are-not-an-email"),
        pytest.param("a@b@c", None, id="two-at-signs"),
        pytest.param("", None, id="empty"),
        pytest.param(None, None, id="none"),
        pytest.param(42, None, id="number"),
        pytest.param(["jamie@x.example"], None, id="list"),
    ],
)
def test_email_of(value: Any, expected: str | None) -> None:
    assert email_of(value) == expected


# --- Azure DevOps Services and Server payloads ----------------------------------------------------

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "fixtures" / "ado-webhooks"


@pytest.mark.parametrize(
    ("fixture", "collection", "project", "assignee"),
    [
        pytest.param("workitem-updated-assigned.json", "80ded3e8-3cd3-43b1-9f96-52032624aa3a",
                     "c0bf429a-c03c-4a99-9336-d45be74db5a6", "lauryn@sentry.io", id="services"),
        pytest.param("workitem-updated-server.json", "5d2b8e9a-1f4c-4c1e-9a57-3c0f4b6d2e11",
                     "3f9c1e27-6b8d-4a5e-9c21-8e7d6f5a4b3c", "fabrikam\\jamal", id="server"),
    ],
)
def test_services_and_server_deliveries_parse_alike(fixture: str, collection: str, project: str,
                                                     assignee: str) -> None:
    payload = json.loads((FIXTURE_DIR / fixture).read_text())
    containers = set(payload["resourceContainers"])
    # Services names the organization as collection and account; Server as collection and server.
    assert containers == ({"collection", "server", "project"} if "server" in fixture
                          else {"collection", "account", "project"})
    delivery = parse(_body(payload))
    assert (delivery.collection_id, delivery.project_id, delivery.work_item_type) == (collection, project, "Bug")
    assert delivery.work_item_id is not None and delivery.rev > 0
    assert delivery.assigned_to is not None
    assert assignee_of(delivery.assigned_to.new) == assignee


@pytest.mark.parametrize(
    ("value", "account", "assignee"),
    [
        pytest.param("Jamal Hartnett <FABRIKAM\\jamal>", "FABRIKAM\\jamal", "fabrikam\\jamal", id="server-string"),
        pytest.param("FABRIKAM\\jamal", "FABRIKAM\\jamal", "fabrikam\\jamal", id="bare-account"),
        pytest.param({"displayName": "Jamal", "uniqueName": "FABRIKAM\\jamal"}, "FABRIKAM\\jamal",
                     "fabrikam\\jamal", id="identity-ref"),
        pytest.param("Ann <Ann@Example.com>", None, "ann@example.com", id="services-email"),
        pytest.param({"uniqueName": "ann@example.com"}, None, "ann@example.com", id="services-identity-ref"),
        pytest.param("Jamal Hartnett", None, None, id="display-name-only"),
        pytest.param("A <a\\b\\c>", None, None, id="two-backslashes"),
        pytest.param("A <\\jamal>", None, None, id="no-domain"),
        pytest.param("A <DOM AIN\\x>", None, None, id="space"),
        pytest.param(42, None, None, id="not-text"),
    ],
)
def test_server_accounts_and_assignees(value: Any, account: str | None, assignee: str | None) -> None:
    assert account_of(value) == account
    assert assignee_of(value) == assignee
    if assignee is not None:
        assert is_account(assignee) == (account is not None)
