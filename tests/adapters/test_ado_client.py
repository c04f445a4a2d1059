"""AdoClient on the wire (stubbed with `responses`): URLs, headers, bodies, paging, errors, retries."""

from __future__ import annotations

import base64
import email.utils
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from responses import matchers

from shared.adapters.ado_auth import PatAuth
from shared.adapters.ado_client import AdoClient
from shared.adapters.ado_lookup import lookup_base_url
from shared.config import Settings
from shared.core.errors import (
    AdoAuthError,
    AdoBadRequest,
    AdoError,
    AdoNotFound,
    AdoServerError,
    AdoThrottled,
    AdoTimeout,
    AdoUnavailable,
)

HOST = "https://127.0.0.1:8443"
BASE = f"{HOST}/fabrikam/"
PAT = "pat-s3cr3t-value"
BASIC = "Basic " + base64.b64encode(f":{PAT}".encode()).decode()


def make_settings() -> Settings:
    return Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "ADO_SEARCH_URL": HOST + "/search/{account_name}/_apis/search/workitemsearchresults",
            "ADO_GRAPH_USERS_URL": HOST + "/vssps/{account_name}/_apis/graph/users",
            "ADO_ACCOUNT_LOOKUP_URL": HOST
            + "/app/_apis/resourceareas/79134C72-4A58-4B42-976C-04E7115F32BF?hostId={account_id}",
        }
    )


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(sleeps: Sleeps) -> AdoClient:
    return AdoClient(base_url=BASE, auth=PatAuth(PAT), account_name="fabrikam", settings=make_settings(), sleep=sleeps)


@pytest.fixture
def wire() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        # Storage calls of a bundle running in the background (plain http on loopback) are not ours.
        rsps.add_passthru("http://127.0.0.1")
        yield rsps


def query(call: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(call.request.url).query)


# -- requests on the wire ------------------------------------------------------------------------


def test_get_work_item_sends_version_headers_auth_and_timeout(client: AdoClient, wire: Any) -> None:
    wire.get(BASE + "_apis/wit/workitems/42", json={"id": 42, "fields": {"System.Title": "T"}})

    item = client.get_work_item(42)

    assert item == {"id": 42, "fields": {"System.Title": "T"}}
    (call,) = wire.calls
    assert query(call) == {"api-version": ["7.1"]}
    headers = call.request.headers
    assert headers["X-TFS-FedAuthRedirect"] == "Suppress"
    assert headers["Accept"] == "application/json"
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == BASIC
    connect, read = call.request.req_kwargs["timeout"]
    assert 0 < connect <= 10 and 0 < read <= 60


def test_create_work_item_posts_json_patch_to_literal_dollar_type(client: AdoClient, wire: Any) -> None:
    ops = [{"op": "add", "path": "/fields/System.Title", "value": "Crash in checkout"}]
    wire.post(f"{BASE}Fabrikam%20Fiber/_apis/wit/workitems/$User%20Story", json={"id": 7, "rev": 1})

    created = client.create_work_item("Fabrikam Fiber", "User Story", ops)

    assert created == {"id": 7, "rev": 1}
    (call,) = wire.calls
    assert urlsplit(call.request.url).path == "/fabrikam/Fabrikam%20Fiber/_apis/wit/workitems/$User%20Story"
    assert call.request.method == "POST"
    assert query(call) == {"api-version": ["7.1"]}
    assert call.request.headers["Content-Type"] == "application/json-patch+json"
    assert json.loads(call.request.body) == ops


def test_update_work_item_patches_json_patch(client: AdoClient, wire: Any) -> None:
    ops = [{"op": "replace", "path": "/fields/System.AssignedTo", "value": "ftotten@vscsi.us"}]
    wire.patch(BASE + "_apis/wit/workitems/309", json={"id": 309, "rev": 4})

    assert client.update_work_item(309, ops) == {"id": 309, "rev": 4}

    (call,) = wire.calls
    assert call.request.headers["Content-Type"] == "application/json-patch+json"
    assert json.loads(call.request.body) == ops
    assert query(call) == {"api-version": ["7.1"]}


def test_work_item_type_states_and_categories(client: AdoClient, wire: Any) -> None:
    states = [{"name": "New", "category": "Proposed"}, {"name": "Closed", "category": "Completed"}]
    wire.get(BASE + "Fabrikam%20Fiber/_apis/wit/workitemtypes/Bug/states", json={"count": 2, "value": states})
    wire.get(BASE + "Fabrikam%20Fiber/_apis/wit/workitemtypecategories", json={"value": [{"name": "Bug Category"}]})

    assert client.get_work_item_type_states("Fabrikam Fiber", "Bug") == states
    assert client.get_work_item_type_categories("Fabrikam Fiber") == [{"name": "Bug Category"}]


def test_repositories_org_wide_and_per_project(client: AdoClient, wire: Any) -> None:
    wire.get(BASE + "_apis/git/repositories", json={"value": [{"id": "r1"}, {"id": "r2"}]})
    wire.get(BASE + "P1/_apis/git/repositories", json={"value": [{"id": "r1"}]})
    wire.get(BASE + "P1/_apis/git/repositories/my%20repo", json={"id": "r1", "name": "my repo"})

    assert [r["id"] for r in client.list_repositories()] == ["r1", "r2"]
    assert [r["id"] for r in client.list_repositories("P1")] == ["r1"]
    assert client.get_repository("P1", "my repo")["name"] == "my repo"


def test_get_project_quotes_the_name(client: AdoClient, wire: Any) -> None:
    wire.get(BASE + "_apis/projects/Fabrikam%20Fiber", json={"id": "p1", "name": "Fabrikam Fiber"})
    assert client.get_project("Fabrikam Fiber")["id"] == "p1"


def test_subscription_calls(client: AdoClient, wire: Any) -> None:
    body = {"publisherId": "tfs", "eventType": "workitem.updated", "consumerId": "webHooks"}
    wire.post(BASE + "_apis/hooks/subscriptions", json={"id": "sub-1", "status": "enabled"})
    wire.get(BASE + "_apis/hooks/subscriptions/sub-1", json={"id": "sub-1", "status": "disabledBySystem"})
    wire.delete(BASE + "_apis/hooks/subscriptions/sub-1", status=204)
    wire.post(BASE + "_apis/hooks/subscriptionsquery", json={"results": [{"id": "sub-1"}], "count": 1})

    assert client.create_subscription(body)["id"] == "sub-1"
    assert client.get_subscription("sub-1")["status"] == "disabledBySystem"
    assert client.delete_subscription("sub-1") is None
    assert client.query_subscriptions({"publisherId": "tfs"}) == [{"id": "sub-1"}]

    create, _, delete, query_call = wire.calls
    assert json.loads(create.request.body) == body
    assert create.request.headers["Content-Type"] == "application/json"
    assert delete.request.method == "DELETE"
    assert all(query(c) == {"api-version": ["7.1"]} for c in wire.calls)
    assert json.loads(query_call.request.body) == {"publisherId": "tfs"}


def test_request_returns_empty_dict_for_204(client: AdoClient, wire: Any) -> None:
    wire.delete(BASE + "_apis/hooks/subscriptions/x", status=204)
    assert client.request("DELETE", "_apis/hooks/subscriptions/x") == {}


def test_search_posts_to_configured_url_with_account_name(client: AdoClient, wire: Any) -> None:
    results = [{"fields": {"system.id": "2", "system.title": "Bug two"}}]
    wire.post(HOST + "/search/fabrikam/_apis/search/workitemsearchresults", json={"count": 1, "results": results})

    assert client.search_work_items("crash", top=10) == results

    (call,) = wire.calls
    assert json.loads(call.request.body) == {"searchText": "crash", "$top": 10, "$skip": 0, "filters": {}}
    assert query(call)["api-version"] == ["7.1"]
    assert call.request.headers["X-TFS-FedAuthRedirect"] == "Suppress"


# -- paging --------------------------------------------------------------------------------------


def test_projects_follow_continuation_token(client: AdoClient, wire: Any) -> None:
    url = BASE + "_apis/projects"
    first = {"stateFilter": "wellFormed", "$top": "100", "api-version": "7.1"}
    wire.get(
        url,
        json={"value": [{"id": f"a{i}"} for i in range(100)]},
        headers={"x-ms-continuationtoken": "100"},
        match=[matchers.query_param_matcher(first)],
    )
    wire.get(
        url,
        json={"value": [{"id": f"b{i}"} for i in range(100)]},
        headers={"x-ms-continuationtoken": "200"},
        match=[matchers.query_param_matcher({**first, "continuationToken": "100"})],
    )
    wire.get(
        url,
        json={"value": [{"id": "c0"}]},
        match=[matchers.query_param_matcher({**first, "continuationToken": "200"})],
    )

    projects = client.list_projects()

    assert len(projects) == 201
    assert projects[-1] == {"id": "c0"}
    assert len(wire.calls) == 3


def test_projects_page_with_top_and_skip_without_token(client: AdoClient, wire: Any) -> None:
    """Sentry's acceptance case: pages of 100 + 100 + 20 give exactly 220 projects."""
    url = BASE + "_apis/projects"
    base = {"stateFilter": "wellFormed", "$top": "100", "api-version": "7.1"}
    wire.get(url, json={"value": [{"id": f"a{i}"} for i in range(100)]}, match=[matchers.query_param_matcher(base)])
    for skip, count in ((100, 100), (200, 20)):
        wire.get(
            url,
            json={"value": [{"id": f"p{skip + i}"} for i in range(count)]},
            match=[matchers.query_param_matcher({**base, "$skip": str(skip)})],
        )

    projects = client.list_projects()

    assert len(projects) == 220
    assert len({p["id"] for p in projects}) == 220
    assert len(wire.calls) == 3


def test_graph_users_follow_header_token_across_pages(client: AdoClient, wire: Any) -> None:
    url = HOST + "/vssps/fabrikam/_apis/graph/users"
    version = {"api-version": "7.1-preview.1"}
    wire.get(
        url,
        json={"value": [{"mailAddress": "a@x.test"}]},
        headers={"X-MS-ContinuationToken": "tok one"},
        match=[matchers.query_param_matcher(version)],
    )
    wire.get(
        url,
        json={"value": [{"mailAddress": "b@x.test"}]},
        headers={"X-MS-ContinuationToken": "tok-two"},
        match=[matchers.query_param_matcher({**version, "continuationToken": "tok one"})],
    )
    wire.get(
        url,
        json={"value": [{"mailAddress": "c@x.test"}]},
        match=[matchers.query_param_matcher({**version, "continuationToken": "tok-two"})],
    )

    mails = [u["mailAddress"] for u in client.iter_graph_users()]

    assert mails == ["a@x.test", "b@x.test", "c@x.test"]
    assert len(wire.calls) == 3


# -- error mapping -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "fragment"),
    [
        (401, {"message": "TF400813: The user is not authorized."}, {}, AdoAuthError, "TF400813"),
        (403, {"message": "Access denied."}, {}, AdoAuthError, "Access denied"),
        (404, {"message": "TF401232: Work item 42 does not exist."}, {}, AdoNotFound, "TF401232"),
        (500, {"message": "Internal failure"}, {}, AdoServerError, "Internal failure"),
        (503, {}, {"Retry-After": "3"}, AdoThrottled, "503"),
        (409, {"message": "Conflict"}, {}, AdoError, "Conflict"),
    ],
)
def test_status_mapping(
    client: AdoClient,
    wire: Any,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str],
    error: type[AdoError],
    fragment: str,
) -> None:
    wire.post(BASE + "_apis/hooks/subscriptions", json=body, status=status, headers=headers)

    with pytest.raises(error) as info:
        client.create_subscription({})

    assert type(info.value) is error
    assert info.value.http_status == status
    assert fragment in str(info.value)
    assert PAT not in str(info.value) and BASIC not in str(info.value)


def test_400_keeps_ado_message_and_type_key(client: AdoClient, wire: Any) -> None:
    wire.post(
        f"{BASE}P/_apis/wit/workitems/$Bug",
        status=400,
        json={
            "message": "TF401320: Rule Error for field Title. Error code: Required, InvalidEmpty.",
            "typeKey": "RuleValidationException",
        },
    )
    with pytest.raises(AdoBadRequest) as info:
        client.create_work_item("P", "Bug", [])
    assert "TF401320: Rule Error for field Title" in info.value.message
    assert "RuleValidationException" in info.value.message
    assert info.value.status == 502 and info.value.http_status == 400


def test_429_carries_retry_after(client: AdoClient, wire: Any) -> None:
    wire.post(
        BASE + "_apis/hooks/subscriptions",
        status=429,
        json={"message": "TF400733: The request has been canceled"},
        headers={"Retry-After": "12"},
    )
    with pytest.raises(AdoThrottled) as info:
        client.create_subscription({})
    assert info.value.retry_after == 12.0
    assert isinstance(info.value, AdoUnavailable)


def test_503_without_retry_after_is_server_error(client: AdoClient, wire: Any) -> None:
    wire.post(BASE + "_apis/hooks/subscriptions", status=503, body="")
    with pytest.raises(AdoServerError) as info:
        client.create_subscription({})
    assert not isinstance(info.value, AdoThrottled)


def test_203_sign_in_page_is_auth_error(client: AdoClient, wire: Any) -> None:
    wire.get(BASE + "_apis/wit/workitems/1", status=203, body="<html>Sign in</html>", content_type="text/html")
    with pytest.raises(AdoAuthError) as info:
        client.get_work_item(1)
    assert info.value.http_status == 203


@pytest.mark.parametrize(
    ("body", "content_type"),
    [("<!DOCTYPE html><html>Sign in</html>", "text/html; charset=utf-8"), ("  <html></html>", "application/json")],
)
def test_html_200_is_auth_error_not_decode_crash(client: AdoClient, wire: Any, body: str, content_type: str) -> None:
    wire.get(BASE + "_apis/wit/workitems/1", status=200, body=body, content_type=content_type)
    with pytest.raises(AdoAuthError):
        client.get_work_item(1)


def test_invalid_json_is_server_error(client: AdoClient, wire: Any) -> None:
    wire.patch(BASE + "_apis/wit/workitems/1", status=200, body="{not json", content_type="application/json")
    with pytest.raises(AdoServerError):
        client.update_work_item(1, [])


@pytest.mark.parametrize(
    "exc", [requests.exceptions.ConnectTimeout(), requests.exceptions.ReadTimeout(), requests.ConnectionError()]
)
def test_transport_failures_are_timeouts(client: AdoClient, wire: Any, exc: Exception) -> None:
    wire.post(BASE + "_apis/hooks/subscriptions", body=exc)
    with pytest.raises(AdoTimeout):
        client.create_subscription({})


# -- retries -------------------------------------------------------------------------------------


def test_get_honours_retry_after_then_succeeds(client: AdoClient, wire: Any, sleeps: Sleeps) -> None:
    url = BASE + "_apis/wit/workitems/5"
    wire.get(url, status=429, json={"message": "slow down"}, headers={"Retry-After": "7"})
    wire.get(url, json={"id": 5})

    assert client.get_work_item(5) == {"id": 5}
    assert sleeps.calls == [7.0]
    assert len(wire.calls) == 2


def test_retry_after_is_capped(wire: Any, sleeps: Sleeps) -> None:
    client = AdoClient(base_url=BASE, auth=PatAuth(PAT), max_retry_after=10.0, sleep=sleeps)
    url = BASE + "_apis/wit/workitems/5"
    wire.get(url, status=429, headers={"Retry-After": "120"})
    wire.get(url, json={"id": 5})

    client.get_work_item(5)

    assert sleeps.calls == [10.0]


def test_retry_after_as_http_date(client: AdoClient, wire: Any, sleeps: Sleeps) -> None:
    url = BASE + "_apis/wit/workitems/5"
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    wire.get(url, status=503, headers={"Retry-After": when})
    wire.get(url, json={"id": 5})

    client.get_work_item(5)

    (slept,) = sleeps.calls
    assert 15 <= slept <= 21


def test_get_retried_up_to_max_tries_with_backoff(client: AdoClient, wire: Any, sleeps: Sleeps) -> None:
    wire.get(BASE + "_apis/wit/workitems/5", status=503, body="")

    with pytest.raises(AdoServerError):
        client.get_work_item(5)

    assert len(wire.calls) == 4
    assert len(sleeps.calls) == 3
    assert sleeps.calls == sorted(sleeps.calls) and sleeps.calls[0] < sleeps.calls[-1] <= 30


def test_get_retried_after_timeout(client: AdoClient, wire: Any, sleeps: Sleeps) -> None:
    url = BASE + "_apis/wit/workitems/5"
    wire.get(url, body=requests.exceptions.ConnectTimeout())
    wire.get(url, json={"id": 5})

    assert client.get_work_item(5) == {"id": 5}
    assert len(sleeps.calls) == 1


def test_500_is_not_retried(client: AdoClient, wire: Any, sleeps: Sleeps) -> None:
    wire.get(BASE + "_apis/wit/workitems/5", status=500, json={"message": "boom"})
    with pytest.raises(AdoServerError):
        client.get_work_item(5)
    assert len(wire.calls) == 1 and sleeps.calls == []


@pytest.mark.parametrize("method", ["create", "update"])
def test_writes_are_not_retried(client: AdoClient, wire: Any, sleeps: Sleeps, method: str) -> None:
    wire.post(BASE + "P/_apis/wit/workitems/$Bug", status=503, headers={"Retry-After": "1"})
    wire.patch(BASE + "_apis/wit/workitems/3", status=429, headers={"Retry-After": "1"})

    with pytest.raises(AdoThrottled):
        if method == "create":
            client.create_work_item("P", "Bug", [])
        else:
            client.update_work_item(3, [])

    assert len(wire.calls) == 1 and sleeps.calls == []


def test_read_only_posts_are_retried(client: AdoClient, wire: Any, sleeps: Sleeps) -> None:
    url = BASE + "_apis/hooks/subscriptionsquery"
    wire.post(url, status=502, body="")
    wire.post(url, json={"results": []})

    assert client.query_subscriptions({}) == []
    assert len(wire.calls) == 2 and len(sleeps.calls) == 1


class FlippingAuth:
    """An OAuth-like auth whose token is replaced when ADO answers 401."""

    def __init__(self, refreshes: bool) -> None:
        self.token = "old-token"
        self.refreshes = refreshes
        self.unauthorized_calls = 0

    def header(self) -> str:
        return f"Bearer {self.token}"

    def on_unauthorized(self) -> bool:
        self.unauthorized_calls += 1
        if self.refreshes:
            self.token = "new-token"
        return self.refreshes


def test_401_refreshes_once_and_retries_with_new_token(wire: Any, sleeps: Sleeps) -> None:
    auth = FlippingAuth(refreshes=True)
    client = AdoClient(base_url=BASE, auth=auth, sleep=sleeps)
    url = BASE + "P/_apis/wit/workitems/$Bug"
    wire.post(url, status=401, json={"message": "expired"})
    wire.post(url, json={"id": 1})

    assert client.create_work_item("P", "Bug", []) == {"id": 1}

    assert [c.request.headers["Authorization"] for c in wire.calls] == ["Bearer old-token", "Bearer new-token"]
    assert auth.unauthorized_calls == 1


def test_401_twice_gives_auth_error_after_one_refresh(wire: Any, sleeps: Sleeps) -> None:
    auth = FlippingAuth(refreshes=True)
    client = AdoClient(base_url=BASE, auth=auth, sleep=sleeps)
    wire.get(BASE + "_apis/wit/workitems/1", status=401, json={"message": "nope"})

    with pytest.raises(AdoAuthError):
        client.get_work_item(1)

    assert len(wire.calls) == 2 and auth.unauthorized_calls == 1


def test_401_with_pat_is_not_retried(client: AdoClient, wire: Any) -> None:
    wire.get(BASE + "_apis/wit/workitems/1", status=401, json={"message": "nope"})
    with pytest.raises(AdoAuthError):
        client.get_work_item(1)
    assert len(wire.calls) == 1


def test_repr_has_no_token(client: AdoClient) -> None:
    assert PAT not in repr(client) and BASIC not in repr(client)
    assert "127.0.0.1" in repr(client)


# -- base URL discovery ----------------------------------------------------------------------------

LOOKUP = HOST + "/app/_apis/resourceareas/79134C72-4A58-4B42-976C-04E7115F32BF"


def test_lookup_base_url_normalises_and_sends_auth(wire: Any) -> None:
    wire.get(LOOKUP, json={"id": "79134c72", "name": "core", "locationUrl": "https://MyVSTSAccount.visualstudio.com"})

    url = lookup_base_url("acct-1", settings=make_settings(), auth=PatAuth(PAT))

    assert url == "https://MyVSTSAccount.visualstudio.com/"
    (call,) = wire.calls
    assert query(call)["hostId"] == ["acct-1"]
    assert "api-version" in query(call)
    assert call.request.headers["Authorization"] == BASIC
    assert call.request.headers["X-TFS-FedAuthRedirect"] == "Suppress"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [(200, {"name": "core"}, AdoNotFound), (200, {"locationUrl": None}, AdoNotFound), (404, {}, AdoNotFound)],
)
def test_lookup_base_url_never_returns_nothing(wire: Any, status: int, body: dict[str, Any], error: type) -> None:
    wire.get(LOOKUP, status=status, json=body)
    with pytest.raises(error):
        lookup_base_url("acct-1", settings=make_settings())
