"""Queue triggers with the Storage Queues extension's semantics, against real storage (Azurite locally).

Each queue function gets a poller thread: it receives up to `batchSize` messages, decodes them
(`messageEncoding`), runs the function on a shared pool, deletes a message on success and, on
failure, moves it to `<queue>-poison` once `dequeueCount >= maxDequeueCount` or makes it visible
again after host.json's `visibilityTimeout` (default 0). As on the real host, nothing the function
raises changes that delay (an exception's `retry_after` is ignored); only the sender can delay a
message, through the visibility timeout it sends it with.
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue-trigger#poison-messages
https://learn.microsoft.com/azure/azure-functions/functions-bindings-storage-queue (host.json settings)
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient
from azure.storage.queue import QueueMessage as StoredMessage

from devhost.functions import Function
from devhost.settings import QueueOptions

SHUTDOWN_GRACE = 20.0  # seconds a stopping host waits for running queue invocations
log = logging.getLogger(__name__)

POISON_SUFFIX = "-poison"
MAX_VISIBILITY = 7 * 24 * 3600
Runner = Callable[[Function, Any], Any]


class Undecodable(ValueError):
    """A message body that cannot be bound (not base64, or not UTF-8 text)."""


def decode_body(text: str, encoding: str) -> bytes:
    """The bytes a function sees for a stored message text."""
    if encoding == "none":
        return text.encode("utf-8")
    try:
        body = base64.b64decode("".join(text.split()), validate=True)
        body.decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise Undecodable(str(exc)) from None
    return body


def encode_body(value: Any, encoding: str) -> str:
    """The stored text for an output binding value (str, bytes, or JSON-serialisable)."""
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        raw = value.encode("utf-8")
    else:
        raw = json.dumps(value).encode("utf-8")
    return base64.b64encode(raw).decode("ascii") if encoding == "base64" else raw.decode("utf-8")


def retry_delay(options: QueueOptions) -> int:
    """Seconds before a failed message is visible again: host.json's `visibilityTimeout`, nothing else."""
    return min(MAX_VISIBILITY, max(0, round(options.visibility_timeout)))


def poison_name(queue_name: str) -> str | None:
    """`<queue>-poison`, or None where the host has no poison queue."""
    if queue_name.endswith(POISON_SUFFIX) or len(queue_name) + len(POISON_SUFFIX) > 63:
        return None
    return queue_name + POISON_SUFFIX


class QueueClients:
    """One `QueueClient` per (connection string, queue), created on first use (queue too)."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, str], QueueClient] = {}
        self._lock = threading.Lock()

    def get(self, connection: str, queue_name: str) -> QueueClient:
        key = (connection, queue_name)
        with self._lock:
            client = self._clients.get(key)
        if client is not None:
            return client
        client = QueueClient.from_connection_string(connection, queue_name)
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        with self._lock:
            return self._clients.setdefault(key, client)

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def send(self, connection: str, queue_name: str, value: Any, encoding: str) -> None:
        """Send an output binding value (a list sends one message per item)."""
        client = self.get(connection, queue_name)
        for item in value if isinstance(value, list) else [value]:
            client.send_message(encode_body(item, encoding))


class QueuePoller:
    """Polls one queue for one function until `stop` is set."""

    def __init__(
        self,
        function: Function,
        *,
        queue_name: str,
        connection: str,
        clients: QueueClients,
        options: QueueOptions,
        pool: ThreadPoolExecutor,
        run: Runner,
        stop: threading.Event,
        lease_seconds: int,
        poll_cap: float,
    ) -> None:
        self.function = function
        self.queue_name = queue_name
        self.connection = connection
        self.clients = clients
        self.options = options
        self.pool = pool
        self.run_function = run
        self.stop = stop
        self.lease_seconds = lease_seconds
        self.poll_cap = poll_cap
        self.thread = threading.Thread(target=self._loop, name=f"devhost-queue-{function.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread.ident is not None:
            self.thread.join(timeout)

    def _loop(self) -> None:
        delay = 0.0
        while not self.stop.is_set():
            try:
                client = self.clients.get(self.connection, self.queue_name)
                messages = list(
                    client.receive_messages(
                        messages_per_page=self.options.batch_size,
                        max_messages=self.options.batch_size,
                        visibility_timeout=self.lease_seconds,
                    )
                )
            except Exception as exc:
                log.warning("devhost.queue.receive_failed", extra={"queue": self.queue_name, "error": repr(exc)})
                messages = []
            if not messages:
                delay = min(self.poll_cap, delay * 2 if delay else 0.1)
                self.stop.wait(delay)
                continue
            delay = 0.0
            self._run_batch(client, messages)

    def _run_batch(self, client: QueueClient, messages: list[StoredMessage]) -> None:
        pending: dict[Future[None], StoredMessage] = {
            self.pool.submit(self._process, client, message): message for message in messages
        }
        while pending:
            done, _ = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                pending.pop(future)
            if self.stop.is_set():
                for future, message in list(pending.items()):
                    if future.cancel():
                        pending.pop(future)
                        self._update_visibility(client, message, 0)
                # Like the host's graceful shutdown: let running invocations finish, within a bound.
                wait(pending, timeout=SHUTDOWN_GRACE)
                return

    def _process(self, client: QueueClient, message: StoredMessage) -> None:
        extra = {
            "function": self.function.name,
            "queue": self.queue_name,
            "message_id": message.id,
            "dequeue_count": message.dequeue_count,
        }
        try:
            body = decode_body(message.content, self.options.message_encoding)
        except Undecodable:
            log.warning("devhost.queue.undecodable", extra={**extra, "encoding": self.options.message_encoding})
            self._failed(client, message, extra)
            return
        binding = QueueMessage(  # type: ignore[no-untyped-call]
            id=message.id,
            body=body,
            dequeue_count=message.dequeue_count,
            insertion_time=message.inserted_on,
            expiration_time=message.expires_on,
            time_next_visible=message.next_visible_on,
            pop_receipt=message.pop_receipt,
        )
        try:
            self.run_function(self.function, binding)
        except Exception as exc:
            log.warning("devhost.queue.function_failed", extra={**extra, "error": repr(exc)}, exc_info=True)
            self._failed(client, message, extra)
            return
        try:
            client.delete_message(message.id, message.pop_receipt)
        except Exception as exc:
            log.warning("devhost.queue.delete_failed", extra={**extra, "error": repr(exc)})

    def _failed(self, client: QueueClient, message: StoredMessage, extra: dict[str, Any]) -> None:
        poison = poison_name(self.queue_name)
        if poison is not None and (message.dequeue_count or 0) >= self.options.max_dequeue_count:
            try:
                self.clients.get(self.connection, poison).send_message(message.content)
                client.delete_message(message.id, message.pop_receipt)
            except Exception as exc:
                log.error("devhost.queue.poison_failed", extra={**extra, "error": repr(exc)})
                return
            log.error("devhost.queue.poisoned", extra={**extra, "poison_queue": poison})
            return
        self._update_visibility(client, message, retry_delay(self.options))

    def _update_visibility(self, client: QueueClient, message: StoredMessage, seconds: int) -> None:
        try:
            client.update_message(message.id, pop_receipt=message.pop_receipt, visibility_timeout=seconds)
        except Exception as exc:
            log.warning(
                "devhost.queue.release_failed",
                extra={"queue": self.queue_name, "message_id": message.id, "error": repr(exc)},
            )
