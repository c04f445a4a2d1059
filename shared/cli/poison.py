"""Move messages that ended in `<queue>-poison` back to `<queue>`, so the Functions host tries them again.

Messages are moved as they are (the same text, so the same base64 encoding the host expects): each
is sent to the queue first and removed from the poison queue after, so a failure in between leaves
a duplicate, never a loss (every handler ignores a message it has already applied).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueServiceClient

from shared.cli.client import CliError
from shared.config import settings

POISON = "-poison"
QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,54}[a-z0-9]$")  # a queue whose poison name is valid too
BATCH = 32
LEASE = 120  # seconds a message being moved stays invisible in the poison queue


@dataclass(frozen=True)
class Moved:
    id: str
    inserted: datetime | None
    dequeue_count: int
    size: int


def _service() -> QueueServiceClient:
    """Queues without any message encoding: text is moved exactly as stored."""
    config = settings()
    if config.storage_connection:
        return QueueServiceClient.from_connection_string(config.storage_connection)
    if not config.storage_queue_uri:
        raise CliError("AzureWebJobsStorage (or AzureWebJobsStorage__queueServiceUri) is not set", code=2)
    from azure.identity import DefaultAzureCredential

    credential: Any = DefaultAzureCredential(managed_identity_client_id=config.storage_client_id)
    return QueueServiceClient(account_url=config.storage_queue_uri, credential=credential)


def replay(queue: str, *, limit: int | None = None, dry_run: bool = False,
           service: QueueServiceClient | None = None) -> list[Moved]:
    """Move up to `limit` messages from `<queue>-poison` to `<queue>` (`dry_run`: only list them)."""
    if queue.endswith(POISON) or not QUEUE_NAME.match(queue):
        raise CliError(f"{queue!r} is not a queue name (give the queue, e.g. sync-outbound, not its poison queue)")
    service = service or _service()
    source = service.get_queue_client(queue + POISON)
    target = service.get_queue_client(queue)
    try:
        if not dry_run:
            with contextlib.suppress(ResourceExistsError):
                target.create_queue()
        if dry_run:
            return [_moved(m) for m in source.peek_messages(max_messages=min(limit or BATCH, BATCH))]
        return _move(source, target, limit)
    except ResourceNotFoundError:
        return []  # no poison queue: nothing ever failed for good


def _move(source: QueueClient, target: QueueClient, limit: int | None) -> list[Moved]:
    moved: list[Moved] = []
    while limit is None or len(moved) < limit:
        want = BATCH if limit is None else min(BATCH, limit - len(moved))
        batch = list(source.receive_messages(max_messages=want, messages_per_page=want, visibility_timeout=LEASE))
        if not batch:
            break
        for message in batch:
            target.send_message(message.content)
            source.delete_message(message)
            moved.append(_moved(message))
    return moved


def _moved(message: Any) -> Moved:
    return Moved(id=str(message.id), inserted=message.inserted_on, dequeue_count=int(message.dequeue_count or 0),
                 size=len(message.content or ""))
