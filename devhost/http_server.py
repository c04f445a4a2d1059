"""HTTP side of the devhost: `/api/<route>` for HTTP triggers and `POST /admin/functions/<name>`.

Route templates follow the host's syntax (`{name}`, `{id:int}`, `{name?}`, `{*rest}`); literal
segments win over parameters, a known route with the wrong method answers 405 with `Allow`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import azure.functions as func

from devhost.functions import Function, Result

log = logging.getLogger(__name__)

ROUTE_PREFIX = "/api"
MAX_BODY_BYTES = 100 * 1024 * 1024
_PARAMETER = re.compile(r"^\{(\*?)([A-Za-z_][A-Za-z0-9_]*)(?::([^}?=]+))?(\?)?(?:=[^}]*)?\}$")
_CONSTRAINTS = {
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?i:true|false)",
    "alpha": r"[A-Za-z]+",
    "guid": r"[0-9A-Fa-f]{8}-?(?:[0-9A-Fa-f]{4}-?){3}[0-9A-Fa-f]{12}",
    "decimal": r"-?\d+(?:\.\d+)?",
    "double": r"-?\d+(?:\.\d+)?",
    "float": r"-?\d+(?:\.\d+)?",
}

AdminRunner = Callable[[str, bytes], int]
Invoker = Callable[[Function, Any], Result]


class RequestTooLarge(Exception):
    """The request body exceeds MAX_BODY_BYTES."""


@dataclass(frozen=True)
class Route:
    """One HTTP trigger's route template compiled to a regular expression."""

    function: Function
    template: str
    pattern: re.Pattern[str]
    methods: frozenset[str] | None
    precedence: tuple[int, ...]

    @classmethod
    def of(cls, function: Function) -> Route:
        template = str(function.trigger.get("route") or function.name).strip("/")
        methods = function.trigger.get("methods")
        pattern, precedence = compile_template(template)
        return cls(
            function=function,
            template=template,
            pattern=pattern,
            methods=frozenset(str(m).upper() for m in methods) if methods else None,
            precedence=precedence,
        )

    def allows(self, method: str) -> bool:
        return self.methods is None or method in self.methods


def compile_template(template: str) -> tuple[re.Pattern[str], tuple[int, ...]]:
    """A regex with one named group per parameter, and a sort key (literal segments first)."""
    regex = ""
    precedence = []
    for segment in [s for s in template.split("/") if s]:
        match = _PARAMETER.match(segment)
        if not match:
            regex += "/" + re.escape(segment)
            precedence.append(0)
            continue
        catch_all, name, constraint, optional = match.groups()
        if catch_all:
            regex += f"(?:/(?P<{name}>.*))?"
            precedence.append(4)
            continue
        base = (constraint or "").split("(")[0].split(":")[0].lower()
        value = _CONSTRAINTS.get(base, r"[^/]+")
        if optional:
            regex += f"(?:/(?P<{name}>{value}))?"
            precedence.append(3)
        else:
            regex += f"/(?P<{name}>{value})"
            precedence.append(1 if base in _CONSTRAINTS else 2)
    return re.compile(f"^{regex}/?$", re.IGNORECASE), tuple(precedence)


class Router:
    """Finds the function for a path and method."""

    def __init__(self, functions: Iterable[Function]) -> None:
        routes = [Route.of(f) for f in functions if f.trigger_type == "httpTrigger"]
        self.routes = sorted(routes, key=lambda r: r.precedence)

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], set[str]]:
        """(route, route params, allowed methods of path-only matches) for `/api`-relative `path`."""
        allowed: set[str] = set()
        for route in self.routes:
            found = route.pattern.match(path)
            if not found:
                continue
            if route.allows(method):
                params = {k: unquote(v) for k, v in found.groupdict().items() if v is not None}
                return route, params, allowed
            allowed |= route.methods or set()
        return None, {}, allowed


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128  # the default listen backlog (5) resets connections of a burst of callers

    def __init__(self, address: tuple[str, int], router: Router, run: Invoker, admin: AdminRunner) -> None:
        self.router = router
        self.run = run
        self.admin = admin
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Close the listening socket and every open (keep-alive) connection."""
        super().server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warning("devhost.http.connection_error", exc_info=True)


class Handler(BaseHTTPRequestHandler):
    server: Server
    _body_read = False
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes; avoid 40 ms delayed-ACK stalls
    timeout = 120

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("devhost.http.server", extra={"detail": format % args})

    def _dispatch(self) -> None:
        started = time.monotonic()
        status = 500
        self._body_read = False
        path = urlsplit(self.path).path
        try:
            status = self._respond(path)
        except RequestTooLarge:
            status = self._send_json(413, {"detail": "Request body too large"}, close=True)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            log.info("devhost.http.client_disconnected", extra={"path": path})
            return
        log.info(
            "devhost.http.request",
            extra={"method": self.command, "path": path, "status": status,
                   "ms": round((time.monotonic() - started) * 1000, 1)},
        )

    def _respond(self, path: str) -> int:
        if path.lower().startswith("/admin/functions/"):
            if self.command != "POST":
                return self._send_json(405, {"detail": "Method not allowed"}, headers={"Allow": "POST"})
            name = unquote(path[len("/admin/functions/"):]).strip("/")
            status = self.server.admin(name, self._read_body())
            return self._send_json(status, {} if status == 202 else {"detail": _admin_detail(status)})
        if path != ROUTE_PREFIX and not path.startswith(ROUTE_PREFIX + "/"):
            return self._send_json(404, {"detail": "Not found"})
        route, route_params, allowed = self.server.router.match(self.command, path[len(ROUTE_PREFIX):])
        if route is None:
            if allowed:
                return self._send_json(
                    405, {"detail": "Method not allowed"}, headers={"Allow": ", ".join(sorted(allowed))}
                )
            return self._send_json(404, {"detail": "Not found"})
        body = self._read_body()
        request = func.HttpRequest(
            self.command,
            f"http://{self.headers.get('Host') or self._local_address()}{self.path}",
            headers=self._headers(),
            params=dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True)),
            route_params=route_params,
            body=body,
        )
        try:
            response = _http_response(route.function, self.server.run(route.function, request))
        except Exception:
            log.exception("devhost.http.function_failed", extra={"function": route.function.name})
            return self._send_json(500, {"detail": "Internal server error"})
        return self._send(response)

    def _local_address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host!s}:{port}"

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return headers

    def _read_body(self) -> bytes:
        self._body_read = True
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > MAX_BODY_BYTES:
            raise RequestTooLarge
        body = self.rfile.read(length) if length > 0 else b""
        if len(body) < length:
            raise ConnectionError("client closed the connection mid-body")
        return body

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(1024)
            if not line:
                raise ConnectionError("client closed the connection mid-body")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                raise RequestTooLarge
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _send_json(
        self, status: int, document: Any, *, headers: dict[str, str] | None = None, close: bool = False
    ) -> int:
        response = func.HttpResponse(
            json.dumps(document), status_code=status, headers=headers, mimetype="application/json"
        )
        if close:
            self.close_connection = True
        return self._send(response)

    def _has_body(self) -> bool:
        chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
        return chunked or self.headers.get("Content-Length", "0").strip() not in ("", "0")

    def _send(self, response: func.HttpResponse) -> int:
        body = response.get_body() or b""
        if not self._body_read and self._has_body():
            self.close_connection = True  # the unread body would corrupt the next request
        self.send_response(response.status_code)
        headers = list(response.headers.items())
        names = {name.lower() for name, _ in headers}
        for name, value in headers:
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        if "content-type" not in names and response.mimetype:
            charset = f"; charset={response.charset}" if response.charset else ""
            self.send_header("Content-Type", f"{response.mimetype}{charset}")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)
        self.wfile.flush()
        return int(response.status_code)


def _http_response(function: Function, result: Any) -> func.HttpResponse:
    """The response from the `$return` value or a named http output binding."""
    value = result.value
    for binding in function.outputs():
        if binding.get("type") == "http" and binding["name"] != "$return":
            value = result.outputs.get(binding["name"])
    if isinstance(value, func.HttpResponse):
        return value
    if isinstance(value, str | bytes):
        return func.HttpResponse(value, status_code=200)
    if value is None:
        return func.HttpResponse(status_code=204)
    raise TypeError(f"function {function.name} returned {type(value).__name__}, not an HttpResponse")


def _admin_detail(status: int) -> str:
    return {404: "Not found", 400: "Not a function the admin API can run"}.get(status, "Error")
