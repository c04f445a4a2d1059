"""Done states of a work item type, cached in memory and in Table Storage with an expiry.

A warm webhook resolves them without any Azure DevOps call. A failed lookup raises: the caller
changes nothing rather than guessing (the reference treated a failure as "no done states" and
reopened issues in bulk).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from shared.adapters.ado_client import AdoClient
from shared.adapters.cache import CacheStore
from shared.core import sync
from shared.core.errors import AdoNotFound

TTL = 3600.0
FALLBACK_TYPES = ("Bug", "Issue", "Task")
_memory: dict[tuple[str, str, str], tuple[float, list[str]]] = {}
_lock = threading.Lock()


def done_states(
    cache: CacheStore,
    account_id: str,
    project_id: str,
    work_item_type: str | None,
    client: Callable[[], AdoClient],
    *,
    now: Callable[[], float] = time.time,
) -> list[str]:
    """Names of the done states of `work_item_type` in `project_id` (falls back to Bug, Issue, Task)."""
    wit = work_item_type or ""
    key = (account_id, project_id, wit)
    with _lock:
        hit = _memory.get(key)
    if hit and hit[0] > now():
        return hit[1]
    cache_key = f"states|{project_id}|{wit}"
    cached = cache.get(account_id, cache_key)
    if cached is None:
        cached = _fetch(client(), project_id, work_item_type)
        cache.put(account_id, cache_key, cached, ttl=TTL)
    with _lock:
        _memory[key] = (now() + TTL, list(cached))
    return list(cached)


def _fetch(client: AdoClient, project_id: str, work_item_type: str | None) -> list[str]:
    candidates = [work_item_type] if work_item_type else []
    candidates += [t for t in FALLBACK_TYPES if t not in candidates]
    for wit in candidates:
        try:
            return sync.done_states(client.get_work_item_type_states(project_id, wit))
        except AdoNotFound:
            continue
    return []


def forget() -> None:
    """Drop the in-memory cache (tests)."""
    with _lock:
        _memory.clear()
