"""The sandbox's HTTP server: a threading TLS server, and the handler that turns requests into `routes` calls.

Does socket I/O: records each call (credentials redacted), applies injected faults, and writes the
`Response` that `routes.dispatch` builds.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from devhost.sandbox import routes
from devhost.sandbox.errors import ApiError
from devhost.sandbox.faults import Fault

if TYPE_CHECKING:
    from devhost.sandbox.server import SandboxAdo

log = logging.getLogger("devhost.sandbox.server")

_SECRET_FORM_FIELDS = ("refresh_token", "client_secret", "client_assertion", "assertion", "code")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: SandboxAdo) -> None:
        super().__init__(address, Handler)
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._connections_lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        """Cut open keep-alive connections so a stopped sandbox really stops answering."""
        with self._connections_lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SandboxADO/1.0"
    disable_nagle_algorithm = True  # headers and body are separate writes; avoid 40 ms delayed-ACK stalls
    timeout = 120
    server: Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (ssl.SSLError, ConnectionError, TimeoutError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sandbox_ado.http", extra={"detail": format % args})

    def _serve(self) -> None:
        sandbox = self.server.sandbox
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        call: dict[str, Any] = {
            "method": self.command,
            "path": unquote(split.path),
            "query": dict(parse_qsl(split.query, keep_blank_values=True)),
            "headers": _redacted_headers(self.headers.items()),
            "body": _redacted_body(split.path, body),
            "status": None,
        }
        sandbox._record(call)
        fault = sandbox.faults.take(self.path)
        if fault is not None and self._apply_fault(fault, call):
            return
        request = routes.Request(
            method=self.command,
            segments=[unquote(s) for s in split.path.split("/") if s],
            query={k.lower(): v for k, v in parse_qsl(split.query, keep_blank_values=True)},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        try:
            response = routes.dispatch(sandbox.state, request)
        except Exception:  # a sandbox bug must still produce an answer
            log.exception("sandbox_ado.handler.crashed")
            response = routes.ok(ApiError(500, "Sandbox internal error.").payload(), 500)
        call["status"] = response.status
        self._send(response)

    def _apply_fault(self, fault: Fault, call: dict[str, Any]) -> bool:
        """Act on a fault; True when the request is answered (or dropped) by it."""
        sandbox = self.server.sandbox
        call["fault"] = fault.kind
        if fault.kind == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if fault.kind in ("slow", "timeout"):
            sandbox._sleep(sandbox.slow_seconds if fault.kind == "slow" else sandbox.timeout_seconds)
            return False
        status = int(fault.kind)
        headers: dict[str, str] = {}
        if status == 429:
            message = (
                "TF400733: The request has been canceled: Request was blocked due to exceeding usage of "
                "resource 'WorkItemTracking' in namespace 'User'."
            )
            headers = {
                "Retry-After": str(fault.retry_after),
                "X-RateLimit-Resource": "WorkItemTracking",
                "X-RateLimit-Limit": "200",
                "X-RateLimit-Remaining": "0",
            }
        else:
            message = "The service is unavailable." if status == 503 else "An unexpected error occurred (injected)."
        call["status"] = status
        self._send(routes.ok(ApiError(status, message, "InjectedFault").payload(), status, headers))
        return True

    def _send(self, response: routes.Response) -> None:
        self.send_response(response.status)
        if response.status != 204:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("ActivityId", str(uuid.uuid4()))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if response.body:
            self.wfile.write(response.body)


def _redacted_headers(items: Any) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in items:
        headers[name] = str(value).split(" ", 1)[0] if name.lower() == "authorization" else str(value)
    return headers


def _redacted_body(path: str, body: bytes) -> str:
    text = body.decode("utf-8", "replace")
    if path.rstrip("/").lower().endswith("oauth2/token"):
        form = [(k, "***" if k in _SECRET_FORM_FIELDS else v) for k, v in parse_qsl(text, keep_blank_values=True)]
        return urlencode(form)
    return text
