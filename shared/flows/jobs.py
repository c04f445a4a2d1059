"""Queue message handling shared by the queue triggers: decoding, batches, and the error policy.

Policy: a message that can never succeed (not JSON, wrong shape, unknown records) is logged and
completed; a `TransientError` is re-raised so the queue retries it (and poisons it after
`maxDequeueCount`); other bundle errors are permanent and complete the message. A batch
`{"items": [...]}` is handled item by item: items that fail transiently are re-queued alone, so
one bad item never holds back or poisons the others.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from shared import telemetry
from shared.compose import Send
from shared.core.errors import BundleError, InvalidInput, TransientError

log = logging.getLogger(__name__)

MAX_BATCH_ITEMS = 500


def decode(body: bytes) -> dict[str, Any] | None:
    """The message as a JSON object, or None (logged) when it is not one."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def run(queue: str, body: bytes, handler: Callable[[dict[str, Any]], None], *, send: Send, dequeue_count: int = 1,
        invocation_id: str | None = None) -> None:
    """Handle one queue message (single or batch) with the policy above; `send` re-queues batch items."""
    with telemetry.invocation(invocation_id):
        _run(queue, body, handler, send, dequeue_count)


def _run(queue: str, body: bytes, handler: Callable[[dict[str, Any]], None], send: Send,
         dequeue_count: int) -> None:
    message = decode(body)
    if message is None:
        log.error("queue.message.malformed", extra={"queue": queue, "dequeue_count": dequeue_count})
        return
    items = message.get("items")
    if items is None:
        _one(queue, message, handler, batch=False)
        return
    if not isinstance(items, list) or len(items) > MAX_BATCH_ITEMS:
        log.error("queue.batch.malformed", extra={"queue": queue})
        return
    for item in items:
        if not isinstance(item, dict):
            log.error("queue.message.malformed", extra={"queue": queue})
            continue
        try:
            _one(queue, item, handler, batch=True)
        except TransientError as error:
            log.warning("queue.item.requeued", extra={"queue": queue, "error": type(error).__name__})
            send(queue, item, delay=error.retry_after)
        except Exception as error:  # an unexpected failure: the item goes on alone, to its own poison path
            log.exception("queue.item.requeued_after_error", extra={"queue": queue, "error": type(error).__name__})
            send(queue, item)


def _one(queue: str, message: dict[str, Any], handler: Callable[[dict[str, Any]], None], *, batch: bool) -> None:
    try:
        handler(message)
    except TransientError:
        raise
    except InvalidInput as error:
        log.error("queue.message.invalid", extra={"queue": queue, "detail": error.message})
    except BundleError as error:
        log.warning("queue.message.failed", extra={"queue": queue, "error": type(error).__name__,
                                                   "detail": error.message})
