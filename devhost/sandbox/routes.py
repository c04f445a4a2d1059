"""Routing of the sandbox's REST subset: one parsed request in, one response out.

No socket I/O: `handler.py` parses HTTP and writes the `Response`. Endpoint shapes follow the
Azure DevOps REST reference: https://learn.microsoft.com/rest/api/azure/devops/
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from urllib.parse import parse_qsl

from devhost.sandbox import entra, hooks, queries, render, wit_routes
from devhost.sandbox.api import (
    NOT_AUTHORIZED,
    Request,
    Response,
    int_param,
    method,
    not_found,
    ok,
)
from devhost.sandbox.errors import ApiError
from devhost.sandbox.model import Org, User
from devhost.sandbox.state import State

CORE_AREA = "79134c72-4a58-4b42-976c-04e7115f32bf"
SERVER_API_CEILING = (7, 0)
_VERSION = re.compile(r"^\d+\.\d+(-preview(\.\d+)?)?$")
_ACCEPT_VERSION = re.compile(r"api-version\s*=\s*([^;,\s]+)", re.IGNORECASE)
_SUBSCRIPTION_KEYS = ("publisherId", "eventType", "consumerId", "consumerActionId")
SIGN_IN_PAGE = (
    b"<!DOCTYPE html><html><head><title>Azure DevOps Services | Sign In</title></head>"
    b"<body><p>Sign in to your account to continue.</p></body></html>"
)


def dispatch(state: State, req: Request) -> Response:
    try:
        return _route(state, req)
    except ApiError as exc:
        return ok(exc.payload(), exc.status, exc.headers)


def _route(state: State, req: Request) -> Response:
    segs = req.segments
    lowered = [s.lower() for s in segs]
    if lowered == ["oauth2", "token"]:
        method(req, "POST")
        form = dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
        return ok(state.grant(form))
    if lowered[:1] == ["_apis"]:
        return _lookup(state, req, lowered[1:])
    if lowered == ["msi", "token"]:
        method(req, "GET")
        with state.lock:
            return ok(entra.managed_identity(state.entra, state.tokens, req.query, req.header("X-IDENTITY-HEADER")))
    if len(segs) == 4 and lowered[1:] == ["v2.0", ".well-known", "openid-configuration"]:
        method(req, "GET")
        return ok(entra.openid_configuration(state.base_url, segs[0]))
    if len(segs) == 4 and lowered[1:] == ["oauth2", "v2.0", "token"]:
        method(req, "POST")
        form = dict(parse_qsl(req.body.decode("utf-8", "replace"), keep_blank_values=True))
        with state.lock:
            return ok(entra.client_credentials(state.entra, state.tokens, segs[0], form))
    server = lowered[:1] == ["tfs"]  # Azure DevOps Server: https://host/tfs/{collection}/...
    if server:
        segs, lowered = segs[1:], lowered[1:]
    if not segs:
        raise not_found()
    with state.lock:
        org = state.org(segs[0])
    if org.server != server:
        raise not_found()
    rest = lowered[1:]
    if "_apis" not in rest[:2]:
        raise not_found()
    index = rest.index("_apis")
    project = segs[1] if index == 1 else None
    api = segs[index + 2 :]
    if not state.authenticate(org, req.header("Authorization")):
        return _unauthorized(req)
    if [p.lower() for p in api] != ["connectiondata"]:  # the location service answers without a version
        version = _require_version(req)
        if org.server:
            _within_server_versions(version)
    handler = _AREAS.get(api[0].lower() if api else "")
    if handler is None or (org.server and api[0].lower() in _SERVICES_ONLY):
        raise not_found()
    return handler(state, org, project, api[1:], req)


def _unauthorized(req: Request) -> Response:
    """Real ADO answers a bad credential with a 203 sign-in page unless told to suppress it."""
    if req.header("X-TFS-FedAuthRedirect").lower() == "suppress":
        error = NOT_AUTHORIZED
        headers = {"WWW-Authenticate": 'Bearer authorization_uri=https://login.microsoftonline.com/, Basic realm="ado"'}
        return ok(error.payload(), 401, headers)
    return Response(203, SIGN_IN_PAGE, "text/html; charset=utf-8")


def _require_version(req: Request, *, preview_key: bool = False) -> str:
    version = req.query.get("api-version") or (req.query.get("api-preview") if preview_key else None)
    if not version:
        match = _ACCEPT_VERSION.search(req.header("Accept"))
        version = match.group(1) if match else None
    if not version:
        raise ApiError(
            400,
            f'No api-version was supplied for the "{req.method}" request. The version must be supplied either '
            'as part of the Accept header (e.g. "application/json; api-version=1.0") or as a query parameter '
            '(e.g. "?api-version=1.0").',
            "VssVersionNotSpecifiedException",
        )
    if not _VERSION.match(version):
        raise ApiError(400, f"The following api-version is invalid: '{version}'.", "VssInvalidApiVersionException")
    return version


def _within_server_versions(version: str) -> None:
    """Azure DevOps Server 2022 answers REST api-version 7.0 at most (Services: 7.1 and previews of 7.2).

    https://learn.microsoft.com/azure/devops/integrate/concepts/rest-api-versioning#supported-versions
    """
    major, minor = (int(part) for part in version.split("-", 1)[0].split(".")[:2])
    if (major, minor) > SERVER_API_CEILING:
        ceiling = ".".join(str(part) for part in SERVER_API_CEILING)
        raise ApiError(400, f"The requested REST API version of {major}.{minor} is out of range for this server. "
                       f"The latest REST API version this server supports is {ceiling}.",
                       "VssVersionOutOfRangeException")


# -- account lookup -----------------------------------------------------------------------------


def _lookup(state: State, req: Request, rest: list[str]) -> Response:
    """`GET /_apis/resourceareas/{core}?hostId=` (app.vssps host) → the org's `locationUrl`."""
    if len(rest) != 2 or rest[0] != "resourceareas" or rest[1] != CORE_AREA:
        raise not_found()
    method(req, "GET")
    credential = req.header("Authorization")
    if credential and not state.known_credential(credential):
        return ok(NOT_AUTHORIZED.payload(), 401)
    _require_version(req, preview_key=True)
    host, name = req.query.get("hostid", "").lower(), req.query.get("accountname", "").lower()
    with state.lock:
        for org in state.orgs.values():
            if org.server:
                continue  # Azure DevOps Server collections are not in the Services directory
            if (host and org.account_id == host) or (name and org.name.lower() == name):
                return ok({"id": CORE_AREA, "name": "core", "locationUrl": state.instance(org)})
    raise ApiError(404, f"Host '{host or name}' was not found.", "HostDoesNotExistException")


# -- projects and repositories ------------------------------------------------------------------


def _projects(state: State, org: Org, project: str | None, api: list[str], req: Request) -> Response:
    method(req, "GET")
    with state.lock:
        if len(api) == 1:
            return ok(render.project(state.base_url, org, state.project(org, api[0])))
        if api:
            raise not_found()
        projects = sorted(org.projects.values(), key=lambda p: p.name.lower())
        top = int_param(req.query.get("$top"), 100, "$top")
        token = req.query.get("continuationtoken")
        skip = int_param(token, 0, "continuationToken") if token else int_param(req.query.get("$skip"), 0, "$skip")
        page = [render.project(state.base_url, org, p) for p in projects[skip : skip + top]]
    headers = {"x-ms-continuationtoken": str(skip + top)} if skip + top < len(projects) else {}
    return ok({"count": len(page), "value": page}, headers=headers)


def _git(state: State, org: Org, project: str | None, api: list[str], req: Request) -> Response:
    method(req, "GET")
    if [s.lower() for s in api[:1]] != ["repositories"] or len(api) > 2:
        raise not_found()
    with state.lock:
        if org.git_unauthorized:
            return ok(NOT_AUTHORIZED.payload(), 401)
        proj = state.project(org, project) if project else None
        repos = [r for r in org.repositories.values() if r.accessible and (proj is None or r.project_id == proj.id)]
        if len(api) == 1:
            value = [render.repository(state.base_url, org, r) for r in sorted(repos, key=lambda r: r.name.lower())]
            return ok({"count": len(value), "value": value})
        ref = api[1].lower()
        for repo in repos:
            if ref in (repo.id, repo.name.lower()):
                return ok(render.repository(state.base_url, org, repo))
    raise ApiError(
        404,
        f"TF401019: The Git repository with name or identifier {api[1]} does not exist or you do not have "
        "permissions for the operation you are attempting.",
        "GitRepositoryNotFoundException",
    )


# -- service hooks ------------------------------------------------------------------------------


def _hooks(state: State, org: Org, project: str | None, api: list[str], req: Request) -> Response:
    sub = [s.lower() for s in api]
    if sub == ["subscriptions"]:
        method(req, "GET", "POST")
        if req.method == "POST":
            return ok(render.subscription(state.add_subscription(org, req.json())))
        query = {k: req.query.get(k.lower(), "") for k in _SUBSCRIPTION_KEYS}
        with state.lock:
            value = [render.subscription(s) for s in org.subscriptions.values() if hooks.query_matches(s, query)]
        return ok({"count": len(value), "value": value})
    if len(sub) == 2 and sub[0] == "subscriptions":
        method(req, "GET", "PUT", "DELETE")
        with state.lock:
            found = state.subscription(org, api[1])
            if req.method == "DELETE":
                del org.subscriptions[found.data["id"]]
                return Response(204)
            if req.method == "PUT":
                hooks.replace(found, req.json())
            return ok(render.subscription(found))
    if sub == ["subscriptionsquery"]:
        method(req, "POST")
        body = req.json()
        if not isinstance(body, dict):
            raise ApiError(400, "The query is required.", "SubscriptionQueryException")
        with state.lock:
            results = [render.subscription(s) for s in org.subscriptions.values() if hooks.query_matches(s, body)]
        return ok({**body, "results": results})
    raise not_found()


# -- search, graph, connection data -------------------------------------------------------------


def _search(state: State, org: Org, project: str | None, api: list[str], req: Request) -> Response:
    if [s.lower() for s in api] != ["workitemsearchresults"]:
        raise not_found()
    method(req, "POST")
    return ok(queries.search(state, org, project, req.json()))


def _graph(state: State, org: Org, project: str | None, api: list[str], req: Request) -> Response:
    if [s.lower() for s in api] != ["users"]:
        raise not_found()
    method(req, "GET")
    token = req.query.get("continuationtoken", "")
    try:
        offset = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
    except (ValueError, binascii.Error) as exc:
        raise ApiError(400, "The continuation token is not valid.", "InvalidContinuationToken") from exc
    size = max(1, state.graph_page_size)
    with state.lock:
        users = org.users[offset : offset + size]
        value = [u.graph_user(state.instance(org)) for u in users]
        more = offset + size < len(org.users)
    headers = {"X-MS-ContinuationToken": base64.urlsafe_b64encode(str(offset + size).encode()).decode()} if more else {}
    return ok({"count": len(value), "value": value}, headers=headers)


def _identities(state: State, org: Org, project: str | None, api: list[str], req: Request) -> Response:
    """`GET {collection}/_apis/identities?searchFilter=&filterValue=` (Server; Services serves it on vssps).

    AccountName matches `DOMAIN\\user`, MailAddress the e-mail, General either or the display name;
    all case-insensitive and exact.
    """
    method(req, "GET")
    if api or project is not None:
        raise not_found()
    kind, value = req.query.get("searchfilter", ""), req.query.get("filtervalue", "").strip().lower()
    if kind.lower() not in ("accountname", "mailaddress", "general", "displayname") or not value:
        raise ApiError(400, "searchFilter and filterValue are required.", "ArgumentException")
    with state.lock:
        found = [u for u in org.users if value in _identity_keys(u, kind.lower())]
        return ok({"count": len(found), "value": [u.ims_identity(org.server_domain) for u in found]})


def _identity_keys(user: User, kind: str) -> set[str]:
    keys = {"accountname": {user.unique_name.lower()}, "mailaddress": {user.email.lower()},
            "displayname": {user.display_name.lower()}}
    if kind == "general":
        return keys["accountname"] | keys["mailaddress"] | keys["displayname"]
    return keys[kind]


def _connection_data(state: State, org: Org, project: str | None, api: list[str], req: Request) -> Response:
    """`GET {org}/_apis/connectionData`: who the credential is, and the collection's `instanceId`."""
    method(req, "GET")
    if api or project is not None:
        raise not_found()
    with state.lock:
        return ok(render.connection_data(state.base_url, org, org.integration))


_SERVICES_ONLY = ("graph",)  # the vssps host has no Azure DevOps Server counterpart
_AREAS: dict[str, Callable[[State, Org, str | None, list[str], Request], Response]] = {
    "wit": wit_routes.wit,
    "projects": _projects,
    "git": _git,
    "hooks": _hooks,
    "search": _search,
    "graph": _graph,
    "identities": _identities,
    "connectiondata": _connection_data,
}
