"""Table Storage plumbing shared by the stores: reads, transactions, and the one optimistic-write loop.

Every read-modify-write of the bundle runs through `optimistic`: an attempt reads, decides and
writes under the ETag it read (`if_match`), and a lost race (412, an entity that appeared or
vanished meanwhile) runs the attempt again with a short jittered pause, up to one shared budget.
Storage outages surface as `StorageUnavailable` (see `shared.adapters.storage.translated`).
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableEntity, TableTransactionError, UpdateMode

from shared.adapters import storage
from shared.core.errors import Conflict

T = TypeVar("T")
MAX_ATTEMPTS = 30
MAX_PAUSE = 0.2  # seconds; the pause before attempt n is uniform in [0, min(MAX_PAUSE, 0.005 n)]
LOST_STATUSES = (404, 409, 412)
LOST_CODES = ("UpdateConditionNotSatisfied", "EntityAlreadyExists", "ResourceNotFound")
TRANSACTION_LIMIT = 100  # operations per entity group transaction

Op = tuple[Any, ...]
_PLACEHOLDER_PAREN = re.compile(r"(@\w+)\)")


class LostRace(Exception):
    """Raised by an attempt whose conditional write met a concurrent change; `optimistic` retries it."""


# What a conditional write raises when it lost: a changed ETag, a row that appeared or vanished.
LOST_ERRORS = (LostRace, ResourceModifiedError, ResourceExistsError, ResourceNotFoundError)


def optimistic(what: str, attempt: Callable[[], T]) -> T:
    """Run `attempt` until it completes without losing a race; `Conflict` naming `what` past the budget."""
    for n in range(MAX_ATTEMPTS):
        if n:
            time.sleep(random.uniform(0, min(MAX_PAUSE, 0.005 * n)))
        try:
            return attempt()
        except LOST_ERRORS:
            continue
    raise Conflict(f"{what} changed concurrently too often")


def table(name: str) -> TableClient:
    return storage.table(name)


def etag(entity: TableEntity) -> str:
    return str(entity.metadata["etag"])


def if_match(tag: str | None) -> dict[str, Any]:
    """Keyword arguments of a replace that only succeeds if the row still has ETag `tag`."""
    return {"mode": UpdateMode.REPLACE, "etag": tag, "match_condition": MatchConditions.IfNotModified}


def prefix_range(prefix: str) -> tuple[str, str]:
    """RowKey bounds of every key starting with `prefix` (which ends with the `|` separator)."""
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def query(name: str, flt: str, *, select: list[str] | None = None, page_size: int | None = None,
          params: dict[str, str] | None = None, **more: str) -> Iterator[TableEntity]:
    """Rows matching `flt`, whose `@name` placeholders are filled (quoted) from `params` and `more`."""
    # The SDK finds placeholders by splitting on spaces: keep a closing parenthesis apart from a name.
    flt = _PLACEHOLDER_PAREN.sub(r"\1 )", flt)
    with storage.translated():
        yield from table(name).query_entities(flt, parameters={**(params or {}), **more}, select=select,
                                              results_per_page=page_size)


def get(name: str, pk: str, rk: str) -> TableEntity | None:
    with storage.translated():
        try:
            return table(name).get_entity(pk, rk)
        except ResourceNotFoundError:
            return None


def upsert(name: str, entity: dict[str, Any]) -> None:
    with storage.translated():
        table(name).upsert_entity(entity, mode=UpdateMode.REPLACE)


def create_or_replace(name: str, entity: dict[str, Any], tag: str | None) -> dict[str, Any]:
    """Create the row (tag None) or replace it under ETag `tag`; the write's metadata (with the new ETag)."""
    with storage.translated():
        if tag is None:
            return dict(table(name).create_entity(entity))
        return dict(table(name).update_entity(entity, **if_match(tag)))


def delete(name: str, pk: str, rk: str) -> None:
    with storage.translated():
        table(name).delete_entity(pk, rk)


def transact(name: str, ops: list[Op]) -> list[Any]:
    """Submit one all-or-nothing transaction; the metadata (ETags) of its writes, in order.

    Raises `LostRace` when an ETag or existence check failed.
    """
    try:
        with storage.translated():
            return list(table(name).submit_transaction(ops))
    except TableTransactionError as error:
        if error.status_code in LOST_STATUSES or getattr(error, "error_code", None) in LOST_CODES:
            raise LostRace from error
        raise
    except (ResourceModifiedError, ResourceExistsError) as error:
        raise LostRace from error
    except HttpResponseError as error:
        if error.status_code in LOST_STATUSES:
            raise LostRace from error
        raise


def write(entity: dict[str, Any], tag: str | None) -> Op:
    """A transaction operation: create `entity` (tag None) or replace it under ETag `tag`."""
    return ("update", entity, if_match(tag)) if tag else ("create", entity)


def remove(pk: str, rk: str, tag: str) -> Op:
    """A transaction operation: delete the row, only if it still has ETag `tag`."""
    condition = {"etag": tag, "match_condition": MatchConditions.IfNotModified}
    return ("delete", {"PartitionKey": pk, "RowKey": rk}, condition)


def loads(text: Any, default: Any) -> Any:
    if not isinstance(text, str) or not text:
        return default
    return json.loads(text)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
