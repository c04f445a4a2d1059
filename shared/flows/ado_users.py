"""Azure DevOps users by e-mail (Services: the graph), for outbound assignment, cached per e-mail."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from shared.adapters.ado_client import AdoClient
from shared.adapters.cache import CacheStore

USER_TTL = 3600.0
NO_USER_TTL = 300.0
Client = Callable[[], AdoClient]


def find_ado_user(client: Client, cache: CacheStore, account_id: str, emails: Iterable[str]) -> dict[str, Any] | None:
    """The ADO user whose `mailAddress` is one of `emails` (case-insensitive), cached per e-mail.

    Reads graph users page by page and stops at the first match; an e-mail nobody has is cached as
    such for a few minutes, so a repeated miss does not page through the organization again.
    """
    wanted = sorted({e.strip().lower() for e in emails if e and e.strip()})
    unknown: list[str] = []
    for email in wanted:
        cached = cache.get(account_id, f"graph_user|{email}")
        if cached is None:
            unknown.append(email)
        elif isinstance(cached, dict) and cached.get("found"):
            return dict(cached["user"])
    if not unknown:
        return None
    for user in client().iter_graph_users():
        mail = str(user.get("mailAddress") or "").lower()
        if mail and mail in unknown:
            found = {"mailAddress": user.get("mailAddress"), "principalName": user.get("principalName"),
                     "displayName": user.get("displayName")}
            cache.put(account_id, f"graph_user|{mail}", {"found": True, "user": found}, ttl=USER_TTL)
            return found
    cache.put_many(account_id, {f"graph_user|{e}": {"found": False} for e in unknown}, ttl=NO_USER_TTL)
    return None
