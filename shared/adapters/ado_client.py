"""Azure DevOps REST client: one session, one URL table, one request path.

Every call goes through `AdoClient.request`, which adds the api-version, the auth header (fetched
at send time), `X-TFS-FedAuthRedirect: Suppress`, a timeout and the right content type, retries
reads on throttling and transient failures, and raises the errors `shared.adapters.ado_http` maps.
List calls follow ADO's paging themselves; callers never see pages. Does network I/O.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from shared import config
from shared.adapters.ado_discovery import DiscoveryCalls
from shared.adapters.ado_endpoints import API_VERSION, Endpoints, services_endpoints, unavailable
from shared.adapters.ado_http import TIMEOUT, Auth, decode_response, retryable, transport_error
from shared.config import Settings
from shared.core.errors import AdoAuthError, AdoError, AdoUnavailable, InvalidInput

log = logging.getLogger(__name__)

GRAPH_API_VERSION = "7.1-preview.1"
LOOKUP_API_VERSION = "5.0-preview.1"
BACKOFF_BASE = 0.5
PAGE_SIZE = 100
BATCH_READ = 200  # ids per work items batch read
MAX_PAGES = 1000  # a guard against a server that never stops paging

JSON = "application/json"
JSON_PATCH = "application/json-patch+json"


class Api:
    """URL templates relative to the instance URL (`https://dev.azure.com/{org}/`)."""

    # https://learn.microsoft.com/rest/api/azure/devops/wit/work-items/get-work-item?view=azure-devops-rest-7.1
    WORK_ITEM = "_apis/wit/workitems/{id}"
    # https://learn.microsoft.com/rest/api/azure/devops/wit/work-items/create?view=azure-devops-rest-7.1
    # The `$` before the type is literal.
    CREATE_WORK_ITEM = "{project}/_apis/wit/workitems/${type}"
    # The organization (collection) this URL serves: `instanceId` is its account id.
    CONNECTION_DATA = "_apis/connectionData"
    # https://learn.microsoft.com/rest/api/azure/devops/wit/wiql/query-by-wiql?view=azure-devops-rest-7.1
    WIQL = "_apis/wit/wiql"
    PROJECT_WIQL = "{project}/_apis/wit/wiql"
    # https://learn.microsoft.com/rest/api/azure/devops/wit/work-items/get-work-items-batch?view=azure-devops-rest-7.1
    WORK_ITEMS_BATCH = "_apis/wit/workitemsbatch"
    # https://learn.microsoft.com/rest/api/azure/devops/wit/work-item-type-states/list?view=azure-devops-rest-7.1
    WORK_ITEM_TYPE_STATES = "{project}/_apis/wit/workitemtypes/{type}/states"
    # https://learn.microsoft.com/rest/api/azure/devops/wit/work-item-type-categories/list?view=azure-devops-rest-7.1
    WORK_ITEM_TYPE_CATEGORIES = "{project}/_apis/wit/workitemtypecategories"
    # https://learn.microsoft.com/rest/api/azure/devops/core/projects/list?view=azure-devops-rest-7.1
    PROJECTS = "_apis/projects"
    # https://learn.microsoft.com/rest/api/azure/devops/core/projects/get?view=azure-devops-rest-7.1
    PROJECT = "_apis/projects/{project}"
    # https://learn.microsoft.com/rest/api/azure/devops/git/repositories/list?view=azure-devops-rest-7.1
    REPOSITORIES = "_apis/git/repositories"
    PROJECT_REPOSITORIES = "{project}/_apis/git/repositories"
    # https://learn.microsoft.com/rest/api/azure/devops/git/repositories/get-repository?view=azure-devops-rest-7.1
    REPOSITORY = "_apis/git/repositories/{repo}"
    PROJECT_REPOSITORY = "{project}/_apis/git/repositories/{repo}"
    # https://learn.microsoft.com/rest/api/azure/devops/hooks/subscriptions?view=azure-devops-rest-7.1
    SUBSCRIPTIONS = "_apis/hooks/subscriptions"
    SUBSCRIPTION = "_apis/hooks/subscriptions/{id}"
    # https://learn.microsoft.com/rest/api/azure/devops/hooks/subscriptions/query?view=azure-devops-rest-7.1
    SUBSCRIPTIONS_QUERY = "_apis/hooks/subscriptionsquery"
    # Search, users (graph, identities) and the account lookup: see `shared.adapters.ado_endpoints`.
    # https://learn.microsoft.com/rest/api/azure/devops/wit/comments?view=azure-devops-rest-7.1 (`ado_comments`)
    COMMENTS = "{project}/_apis/wit/workItems/{id}/comments"
    COMMENT = "{project}/_apis/wit/workItems/{id}/comments/{comment}"


def path(template: str, **parts: object) -> str:
    """Fill a URL template, quoting every part (project names may contain spaces).

    A part that is empty or only dots is refused: `.` and `..` (and `%2E`, which `requests` decodes
    back to a dot) are dot segments that would change which path Azure DevOps is asked for.
    """
    for name, value in parts.items():
        if f"{{{name}}}" in template and not str(value).strip("."):
            raise InvalidInput(f"{name} must not be empty or consist only of dots", field=name)
    return template.format(**{name: quote(str(value), safe="") for name, value in parts.items()})


# ---------------------------------------------------------------------------------------------


class AdoClient(DiscoveryCalls):
    """Azure DevOps REST calls for one organization (instance URL `base_url`); `endpoints`: where search and
    user calls go and the api-version the collection takes (default: Azure DevOps Services, from settings).
    Process metadata calls (types, fields, classification trees) come from `DiscoveryCalls`."""

    def __init__(
        self,
        *,
        base_url: str,
        auth: Auth,
        account_name: str = "",
        settings: Settings | None = None,
        endpoints: Endpoints | None = None,
        session: requests.Session | None = None,
        max_tries: int = 4,
        max_retry_after: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.account_name = account_name
        self._auth = auth
        self._settings = settings
        self._endpoints = endpoints
        self.api_version = endpoints.api_version if endpoints else API_VERSION
        self._session = session or requests.Session()
        self._max_tries = max(1, max_tries)
        self._max_retry_after = max_retry_after
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"AdoClient(base_url={self.base_url!r}, account_name={self.account_name!r})"

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = config.settings()
        return self._settings

    @property
    def endpoints(self) -> Endpoints:
        return self._endpoints or services_endpoints(self.account_name, self.settings)

    # -- the one request path ---------------------------------------------------------------

    def request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content_type: str | None = None,
        retry: bool | None = None,
        api_version: str | None = API_VERSION,
    ) -> Any:
        """Send one call and return its JSON body (`{}` for 204).

        Args:
            method: HTTP verb.
            url: a path relative to `base_url` (from `Api`), or an absolute URL.
            params: query parameters; `api-version` is added unless `api_version` is None or the
                URL already carries one.
            json: the body, sent as JSON.
            content_type: defaults to `application/json`.
            retry: whether throttling/transient failures are retried; default: GET and DELETE only.
            api_version: the api-version to send; the default is lowered to 7.0 for Azure DevOps Server.

        Raises:
            AdoError: the mapped failure (after retries, when retried).
            IdentityInvalid: the credential cannot be used at all.
        """
        body, _ = self._exchange(
            method,
            url,
            params=params,
            json=json,
            content_type=content_type,
            retry=retry,
            api_version=api_version,
        )
        return body

    def _exchange(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content_type: str | None = None,
        retry: bool | None = None,
        api_version: str | None = API_VERSION,
    ) -> tuple[Any, requests.Response]:
        method = method.upper()
        full_url = url if urlsplit(url).scheme else self.base_url + url
        if api_version == API_VERSION:
            api_version = self.api_version
        query: dict[str, Any] = dict(params or {})
        if api_version and "api-version=" not in full_url:
            query.setdefault("api-version", api_version)
        retrying = method in ("GET", "HEAD", "DELETE") if retry is None else retry
        tries = self._max_tries if retrying else 1
        where = f"{method} {urlsplit(full_url).path}"
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            headers = {
                "Accept": JSON,
                "Content-Type": content_type or JSON,
                "X-TFS-FedAuthRedirect": "Suppress",
            }
            authorization = self._auth.header()
            if authorization:
                headers["Authorization"] = authorization
            try:
                resp = self._session.request(
                    method, full_url, params=query, json=json, headers=headers, timeout=TIMEOUT
                )
                return decode_response(resp), resp
            except requests.RequestException as exc:
                err: AdoError | AdoUnavailable = transport_error(exc, where)
            except (AdoError, AdoUnavailable) as exc:
                err = exc
            if isinstance(err, AdoAuthError) and err.http_status == 401 and not refreshed:
                refreshed = True
                if self._auth.on_unauthorized():
                    log.info("ado.request.reauthorized", extra={"where": where})
                    continue
            if not (retryable(err) and attempt < tries):
                raise err
            delay = self._delay(err, attempt)
            log.warning(
                "ado.request.retry",
                extra={"where": where, "http_status": err.http_status, "attempt": attempt, "delay": delay},
            )
            self._sleep(delay)

    def _delay(self, err: AdoError | AdoUnavailable, attempt: int) -> float:
        retry_after = err.retry_after if isinstance(err, AdoUnavailable) else None
        if retry_after is None:
            retry_after = BACKOFF_BASE * 2 ** (attempt - 1)
        return min(retry_after, self._max_retry_after)

    # -- work items -------------------------------------------------------------------------

    def connection_data(self) -> dict[str, Any]:
        """The collection behind `base_url` (`instanceId`, `deploymentType`: hosted | onPremises) and the caller."""
        answer = self.request("GET", Api.CONNECTION_DATA, api_version=None)
        return answer if isinstance(answer, dict) else {}

    def organization_id(self) -> str:
        """The id of the organization (collection) behind `base_url`, as Azure DevOps reports it."""
        return str(self.connection_data().get("instanceId") or "")

    def get_work_item(self, work_item_id: int | str) -> dict[str, Any]:
        return dict(self.request("GET", path(Api.WORK_ITEM, id=work_item_id)))

    def create_work_item(self, project: str, work_item_type: str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        url = path(Api.CREATE_WORK_ITEM, project=project, type=work_item_type)
        return dict(self.request("POST", url, json=ops, content_type=JSON_PATCH))

    def update_work_item(self, work_item_id: int | str, ops: list[dict[str, Any]]) -> dict[str, Any]:
        url = path(Api.WORK_ITEM, id=work_item_id)
        return dict(self.request("PATCH", url, json=ops, content_type=JSON_PATCH))

    def query_ids(self, wiql: str, project: str | None = None) -> list[int]:
        """Ids of the work items a WIQL query selects (a read: retried like one); dates compared to the second."""
        return self.query_ids_as_of(wiql, project)[0]

    def query_ids_as_of(self, wiql: str, project: str | None = None) -> tuple[list[int], float | None]:
        """`query_ids`, with Azure DevOps' own time of the answer (`asOf`, unix seconds; None if absent):
        a watermark in the server's clock, never the function host's."""
        url = path(Api.PROJECT_WIQL, project=project) if project else Api.WIQL
        answer = self.request("POST", url, params={"timePrecision": "true"}, json={"query": wiql}, retry=True)
        items = answer.get("workItems") if isinstance(answer, dict) else None
        ids = [int(i["id"]) for i in items or [] if isinstance(i, dict) and isinstance(i.get("id"), int)]
        return ids, _as_of(answer.get("asOf") if isinstance(answer, dict) else None)

    def get_work_items(self, ids: list[int], fields: list[str] | None = None) -> list[dict[str, Any]]:
        """The work items with these ids, 200 per call; ids that no longer exist are left out."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), BATCH_READ):
            body: dict[str, Any] = {"ids": ids[start:start + BATCH_READ], "errorPolicy": "omit"}
            if fields:
                body["fields"] = fields
            found += [item for item in _values(self.request("POST", Api.WORK_ITEMS_BATCH, json=body, retry=True))
                      if isinstance(item, dict)]
        return found

    def get_work_item_type_states(self, project: str, work_item_type: str) -> list[dict[str, Any]]:
        url = path(Api.WORK_ITEM_TYPE_STATES, project=project, type=work_item_type)
        return _values(self.request("GET", url))

    def get_work_item_type_categories(self, project: str) -> list[dict[str, Any]]:
        return _values(self.request("GET", path(Api.WORK_ITEM_TYPE_CATEGORIES, project=project)))

    def search_work_items(self, text: str, top: int = 25) -> list[dict[str, Any]]:
        """Org-wide work item search; results carry lower-cased field keys with string values."""
        url = self._endpoint(self.endpoints.search_url)
        body = {"searchText": text, "$top": top, "$skip": 0, "filters": {}}
        answer = self.request("POST", url, json=body, retry=True)
        return list(answer.get("results") or []) if isinstance(answer, dict) else []

    # -- projects and repositories ----------------------------------------------------------

    def iter_projects(self) -> Iterator[dict[str, Any]]:
        """Every well-formed project: follows `x-ms-continuationtoken`, else pages with $top/$skip."""
        token: str | None = None
        skip = 0
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            params: dict[str, Any] = {"stateFilter": "wellFormed", "$top": PAGE_SIZE}
            if token is not None:
                params["continuationToken"] = token
            elif skip:
                params["$skip"] = skip
            body, resp = self._exchange("GET", Api.PROJECTS, params=params)
            page = _values(body)
            yield from page
            next_token = resp.headers.get("x-ms-continuationtoken")
            if next_token:
                if next_token in seen:
                    return
                seen.add(next_token)
                token = next_token
                continue
            if token is not None or len(page) < PAGE_SIZE:
                return
            skip += len(page)

    def list_projects(self) -> list[dict[str, Any]]:
        return list(self.iter_projects())

    def get_project(self, project: str) -> dict[str, Any]:
        return dict(self.request("GET", path(Api.PROJECT, project=project)))

    def list_repositories(self, project: str | None = None) -> list[dict[str, Any]]:
        url = path(Api.PROJECT_REPOSITORIES, project=project) if project else Api.REPOSITORIES
        return _values(self.request("GET", url))

    def get_repository(self, project: str | None, repo: str) -> dict[str, Any]:
        template = Api.PROJECT_REPOSITORY if project else Api.REPOSITORY
        url = path(template, project=project or "", repo=repo)
        return dict(self.request("GET", url))

    # -- service hook subscriptions ---------------------------------------------------------

    def create_subscription(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.request("POST", Api.SUBSCRIPTIONS, json=body))

    def get_subscription(self, subscription_id: str) -> dict[str, Any]:
        return dict(self.request("GET", path(Api.SUBSCRIPTION, id=subscription_id)))

    def delete_subscription(self, subscription_id: str) -> None:
        self.request("DELETE", path(Api.SUBSCRIPTION, id=subscription_id))

    def query_subscriptions(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        answer = self.request("POST", Api.SUBSCRIPTIONS_QUERY, json=body, retry=True)
        return list(answer.get("results") or []) if isinstance(answer, dict) else []

    # -- users ------------------------------------------------------------------------------

    def iter_graph_users(self) -> Iterator[dict[str, Any]]:
        """Every user of the organization, following `X-MS-ContinuationToken` across pages (Services only)."""
        url = self._endpoint(self.endpoints.graph_users_url)
        token: str | None = None
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            params = {"continuationToken": token} if token else None
            body, resp = self._exchange("GET", url, params=params, api_version=GRAPH_API_VERSION)
            yield from _values(body)
            token = resp.headers.get("X-MS-ContinuationToken")
            if not token or token in seen:
                return
            seen.add(token)

    def find_identities(self, search_filter: str, value: str) -> list[dict[str, Any]]:
        """Identities matching `value` by `search_filter`: MailAddress, AccountName (`DOMAIN\\user`), General."""
        params = {"searchFilter": search_filter, "filterValue": value, "queryMembership": "None"}
        return _values(self.request("GET", self._endpoint(self.endpoints.identities_url), params=params))

    def _endpoint(self, url: str | None) -> str:
        if not url:
            raise unavailable(self.endpoints)
        return url


def _as_of(value: Any) -> float | None:
    try:
        return datetime.fromisoformat(value).timestamp() if isinstance(value, str) else None
    except ValueError:
        return None


def _values(body: Any) -> list[dict[str, Any]]:
    value = body.get("value") if isinstance(body, dict) else None
    return list(value) if isinstance(value, list) else []
