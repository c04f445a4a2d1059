"""Reads for reconciliation: WIQL (ids of changed work items) and the batch read that follows it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.devhost.sandbox_client import ORG, Ado, running_ado


@pytest.fixture
def ado() -> Iterator[Ado]:
    yield from running_ado()


def _wiql(ado: Ado, query: str, *, project: str | None = "Fabrikam", **params: str) -> requests.Response:
    path = f"{project}/_apis/wit/wiql" if project else "_apis/wit/wiql"
    return ado.session.post(
        ado.url(path), params={"api-version": "7.1", **params}, json={"query": query}, timeout=5
    )


def _ids(resp: requests.Response) -> list[int]:
    assert resp.status_code == 200, resp.text
    return [w["id"] for w in resp.json()["workItems"]]


def _items(ado: Ado, n: int) -> list[dict[str, Any]]:
    return [ado.sandbox.create_work_item(ORG, "Fabrikam", title=f"item {i}") for i in range(n)]


def test_wiql_ids_in_list_answers_ado_shape(ado: Ado) -> None:
    a, b, c = (i["id"] for i in _items(ado, 3))
    resp = _wiql(ado, f"SELECT [System.Id] FROM WorkItems WHERE [System.Id] IN ({c}, {a}, 999)")
    body = resp.json()
    assert _ids(resp) == [a, c]  # id order by default; unknown ids simply do not match
    assert body["queryType"] == "flat" and body["queryResultType"] == "workItem"
    assert body["asOf"].endswith("Z")
    assert body["columns"] == [
        {"referenceName": "System.Id", "name": "ID", "url": ado.url("_apis/wit/fields/System.Id")}
    ]
    assert body["workItems"][0] == {"id": a, "url": ado.url(f"_apis/wit/workItems/{a}")}
    assert b not in _ids(resp)


def test_wiql_changed_since_needs_time_precision_for_a_time(ado: Ado) -> None:
    first = _items(ado, 2)
    time.sleep(0.01)
    mark = ado.sandbox.work_item(ORG, first[1]["id"])["fields"]["System.ChangedDate"]
    time.sleep(0.01)
    ado.sandbox.update_work_item(ORG, first[0]["id"], title="changed later")
    later = _items(ado, 1)[0]["id"]
    query = f"SELECT [System.Id] FROM WorkItems WHERE [System.ChangedDate] > '{mark}' ORDER BY [System.ChangedDate]"

    refused = _wiql(ado, query)
    assert refused.status_code == 400
    assert refused.json()["message"].startswith(
        "You cannot supply a time with the date when running a query using date precision."
    )
    precise = _wiql(ado, query, timePrecision="true")
    assert _ids(precise) == [first[0]["id"], later]  # ordered by ChangedDate
    assert precise.json()["sortColumns"][0]["field"]["referenceName"] == "System.ChangedDate"
    assert precise.json()["sortColumns"][0]["descending"] is False


def test_wiql_date_only_compares_by_day(ado: Ado) -> None:
    ids = [i["id"] for i in _items(ado, 2)]
    today = ado.sandbox.work_item(ORG, ids[0])["fields"]["System.ChangedDate"][:10]
    assert _ids(_wiql(ado, f"SELECT [System.Id] FROM WorkItems WHERE [System.ChangedDate] >= '{today}'")) == ids
    assert _ids(_wiql(ado, f"SELECT [System.Id] FROM WorkItems WHERE [System.ChangedDate] > '{today}'")) == []


def test_wiql_both_conditions_project_macro_and_descending_order(ado: Ado) -> None:
    ids = [i["id"] for i in _items(ado, 3)]
    ado.sandbox.add_project(ORG, "Other")
    other = ado.sandbox.create_work_item(ORG, "Other", title="elsewhere")["id"]
    query = (
        f"SELECT [System.Id], [System.Title] FROM WorkItems WHERE [System.Id] IN ({ids[0]}, {ids[2]}, {other}) "
        "AND [System.ChangedDate] > '2000-01-01T00:00:00Z' ORDER BY [System.Id] DESC"
    )
    assert _ids(_wiql(ado, query, timePrecision="true")) == [other, ids[2], ids[0]]  # WIQL spans projects
    scoped = query.replace("ORDER BY", "AND [System.TeamProject] = @project ORDER BY")
    assert _ids(_wiql(ado, scoped, timePrecision="true")) == [ids[2], ids[0]]
    assert _ids(_wiql(ado, query, project=None, timePrecision="true")) == [other, ids[2], ids[0]]
    assert _wiql(ado, scoped, project=None, timePrecision="true").status_code == 400
    assert _ids(_wiql(ado, "SELECT [System.Id] FROM WorkItems", **{"$top": "2"})) == ids[:2]


@pytest.mark.parametrize(
    "query",
    [
        "SELECT [System.Id] FROM WorkItems WHERE [System.Id] = 1 OR [System.Id] = 2",
        "SELECT [System.Id] FROM WorkItemLinks",
        "SELECT [System.Id] FROM WorkItems WHERE [System.AreaPath] UNDER 'Fabrikam'",
        "DELETE FROM WorkItems",
        "SELECT [System.Id] FROM WorkItems WHERE ([System.Id] = 1)",
    ],
)
def test_wiql_unsupported_query_is_an_ado_shaped_400(ado: Ado, query: str) -> None:
    resp = _wiql(ado, query)
    assert resp.status_code == 400
    body = resp.json()
    assert body["message"].startswith("TF51006:") and body["typeKey"] and body["$id"] == "1"


def test_wiql_unknown_field_is_tf51005(ado: Ado) -> None:
    resp = _wiql(ado, "SELECT [System.Id] FROM WorkItems WHERE [Custom.Nope] = 'x'")
    assert resp.status_code == 400
    assert resp.json()["message"] == (
        "TF51005: The query references a field that does not exist. The error is caused by «[Custom.Nope]»."
    )


def test_wiql_result_cap_is_vs402337(ado: Ado) -> None:
    _items(ado, 3)
    ado.sandbox.set_wiql_max_results(2)
    resp = _wiql(ado, "SELECT [System.Id] FROM WorkItems")
    assert resp.status_code == 400 and resp.json()["message"].startswith("VS402337:")


# -- batch read ----------------------------------------------------------------------------------


def test_batch_read_keeps_order_omits_missing_and_narrows_fields(ado: Ado) -> None:
    a, b = (i["id"] for i in _items(ado, 2))
    body = {"ids": [b, 12345, a], "fields": ["System.Title", "System.Rev", "System.State"], "errorPolicy": "omit"}
    resp = ado.post("_apis/wit/workitemsbatch", body)
    assert resp.status_code == 200, resp.text
    value = resp.json()["value"]
    assert resp.json()["count"] == 2 and [w["id"] for w in value] == [b, a]
    assert value[0]["fields"] == {"System.Title": "item 1", "System.Rev": 1, "System.State": "New"}
    assert value[0]["rev"] == 1 and value[0]["url"].endswith(f"/_apis/wit/workItems/{b}")

    full = ado.post("_apis/wit/workitemsbatch", {"ids": [a]}).json()["value"][0]
    assert full["fields"]["System.TeamProject"] == "Fabrikam"


def test_batch_read_limits(ado: Ado) -> None:
    a = _items(ado, 1)[0]["id"]
    assert ado.post("_apis/wit/workitemsbatch", {"ids": list(range(1, 202))}).status_code == 400
    assert ado.post("_apis/wit/workitemsbatch", {"ids": list(range(1, 201)), "errorPolicy": "omit"}).status_code == 200
    missing = ado.post("_apis/wit/workitemsbatch", {"ids": [a, 999]})  # errorPolicy fail (the default)
    assert missing.status_code == 404 and missing.json()["message"].startswith("TF401232:")
    assert ado.post("_apis/wit/workitemsbatch", {"ids": []}).status_code == 400
    assert ado.post("_apis/wit/workitemsbatch", {"ids": ["x"]}).status_code == 400
    both = {"ids": [a], "fields": ["System.Title"], "$expand": "relations"}
    assert ado.post("_apis/wit/workitemsbatch", both).status_code == 400


def test_list_by_ids_query_string(ado: Ado) -> None:
    a, b = (i["id"] for i in _items(ado, 2))
    params = {"ids": f"{a},999,{b}", "fields": "System.Title", "errorPolicy": "omit"}
    resp = ado.get("_apis/wit/workitems", params=params)
    assert resp.status_code == 200
    assert [(w["id"], w["fields"]) for w in resp.json()["value"]] == [
        (a, {"System.Title": "item 0"}),
        (b, {"System.Title": "item 1"}),
    ]


def test_wiql_tags_contains_matches_a_whole_tag() -> None:
    from devhost.sandbox.model import WorkItem
    from devhost.sandbox.wiql import parse

    query = parse("SELECT [System.Id] FROM WorkItems WHERE [System.Tags] CONTAINS 'ado-sync-1'",
                  project=None, time_precision=False)
    tagged = WorkItem(id=1, project_id="p", rev=1, fields={"System.Tags": "prod; ado-sync-1"})
    prefix = WorkItem(id=2, project_id="p", rev=1, fields={"System.Tags": "ado-sync-10"})
    assert [all(check(item) for check in query.conditions) for item in (tagged, prefix)] == [True, False]
