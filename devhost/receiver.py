"""A local tracker endpoint: receives the bundle's signed event webhooks and checks their signatures.

    python -m devhost.receiver --port 7073 --secret whsec_...

prints one line per verified event (type, group, id) and answers 204; a delivery whose signature does
not verify gets 401 and a warning. The secret defaults to TRACKER_WEBHOOK_SECRET. Tests use
`Receiver` in-process: `events` holds the verified payloads in arrival order, `received` the raw
body and headers of each, `rejected` counts the refused ones, and `down = True` makes it answer 503
until switched back (to exercise redelivery).

Verification is what a tracker would do, with the `standardwebhooks` package:
https://www.standardwebhooks.com/
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from shared.adapters.tracker_webhook import SECRET_SETTING, check_secret
from shared.core.errors import ConfigError

DEFAULT_PORT = 7073
MAX_BODY_BYTES = 1024 * 1024


class Receiver:
    """A threaded HTTP server on `host:port` (0: any free port) that verifies every POST it gets."""

    def __init__(
        self,
        secret: str,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self._webhook = Webhook(check_secret(secret))
        self._echo = echo or (lambda line: None)
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._received: list[tuple[bytes, dict[str, str]]] = []
        self._rejected = 0
        self._arrived = threading.Condition(self._lock)
        self.down = False
        self.retry_after: int | None = None  # sent with 503 while down, when set
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = str(self._server.server_address[0]), int(self._server.server_address[1])
        return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"

    @property
    def events(self) -> list[dict[str, Any]]:
        """The verified payloads, in arrival order (redeliveries included)."""
        with self._lock:
            return list(self._events)

    @property
    def received(self) -> list[tuple[bytes, dict[str, str]]]:
        """The raw body and (lower-cased) headers of each verified delivery, in arrival order."""
        with self._lock:
            return list(self._received)

    @property
    def rejected(self) -> int:
        """How many deliveries failed verification."""
        with self._lock:
            return self._rejected

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The verified payloads once at least `count` have arrived; TimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self._events) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._events)} of {count} events arrived")
                self._arrived.wait(left)
            return list(self._events)

    def start(self) -> Receiver:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (Ctrl-C), then close the socket."""
        try:
            self._server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self._server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _receive(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        """Status and headers to answer a delivery with."""
        if self.down:
            return 503, {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}
        try:
            payload = self._webhook.verify(body, headers)
        except (WebhookVerificationError, ValueError):  # ValueError: malformed header, body or JSON
            with self._lock:
                self._rejected += 1
            webhook_id = headers.get("webhook-id", "-")[:64]
            self._echo(f"WARNING rejected a delivery: signature did not verify (webhook-id {webhook_id})")
            return 401, {}
        if not isinstance(payload, dict):
            with self._lock:
                self._rejected += 1
            self._echo("WARNING rejected a delivery: the body is not a JSON object")
            return 400, {}
        with self._arrived:
            self._events.append(payload)
            self._received.append((body, dict(headers)))
            self._arrived.notify_all()
        self._echo(f"{payload.get('type')} group={payload.get('group_id') or '-'} id={payload.get('id')}")
        return 204, {}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if not 0 <= length <= MAX_BODY_BYTES:
                    self._answer(413, {"Connection": "close"})
                    return
                body = self.rfile.read(length)
                status, headers = receiver._receive(body, {k.lower(): v for k, v in self.headers.items()})
                self._answer(status, headers)

            def _answer(self, status: int, headers: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # one line per event is printed by the receiver itself

        return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost.receiver", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free)")
    parser.add_argument("--secret", default=os.environ.get(SECRET_SETTING),
                        help=f"signing secret whsec_... (default: ${SECRET_SETTING})")
    args = parser.parse_args(argv)

    def echo(line: str) -> None:
        print(line, flush=True)

    try:
        receiver = Receiver(args.secret, args.port, host=args.host, echo=echo)
    except ConfigError as error:
        print(f"error: {error.message} (pass --secret or set {SECRET_SETTING})", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: cannot listen on {args.host}:{args.port}: {error.strerror}", file=sys.stderr)
        return 1
    echo(f"receiving tracker events on {receiver.url}")
    receiver.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
