"""Replacing an integration's service hook without losing a delivery: which secrets are accepted,
and when the old hook goes (pure).

An integration has one current secret (its hash in `Integration.secret_hash`) and, while a hook is
being replaced, other hashes each accepted until a time (`Integration.overlap_secrets`, hash →
unix seconds). A replacement (rotation, re-install, repair) goes:

1. `with_pending`: the new secret is accepted before its hook exists, so the new hook's first
   deliveries never meet a 401 (an enduring failure puts a hook on probation, and Azure DevOps
   drops new events of a hook on probation);
2. the hook is created with that secret; from now on every event goes to both hooks (the
   webhook's per-field revision guard applies each change once);
3. `after_swap`: the new hash becomes current, the old one stays accepted for `OVERLAP_SECONDS`,
   and the old hook is retired (`retire`): it keeps running for `DRAIN_SECONDS`, so events queued
   for it alone before step 2 are still delivered (Azure DevOps may hold deliveries queued for a
   while, and a deleted subscription delivers nothing more);
4. once due (`due`), the old hook is deleted; its secret stays accepted `RETRY_SECONDS` longer, for
   deliveries already sent and their retries.

Why these numbers: Azure DevOps retries a delivery that met a transient answer (408, 502, 503, 504)
up to 8 times over about three minutes, and does not retry other failures
(https://learn.microsoft.com/azure/devops/service-hooks/troubleshoot): five minutes covers that
retry chain, both while the old hook drains and after it is deleted. Ten minutes in all keeps a
leaked old secret useful only briefly. Events held back longer than that are brought back by
reconciliation, like any missed delivery.
"""

from __future__ import annotations

# Hook statuses that may still deliver: a replaced hook in one of these drains before it is deleted;
# any other (disabled, missing) is deleted at once.
DELIVERING = frozenset({"enabled", "onProbation"})
DRAIN_SECONDS = 300.0
RETRY_SECONDS = 300.0
OVERLAP_SECONDS = DRAIN_SECONDS + RETRY_SECONDS
# At most this many other hashes are kept (newest first); more only happens with rotations in a burst.
MAX_OTHERS = 4


def accepted(current: str | None, others: dict[str, float], now: float) -> list[str | None]:
    """The hashes a delivery may match at `now`: the current one first, then the unexpired others."""
    return [current, *pruned(others, now)]


def pruned(others: dict[str, float], now: float) -> dict[str, float]:
    """`others` without expired entries, at most `MAX_OTHERS` of them (the longest-lived kept)."""
    alive = sorted(((until, h) for h, until in others.items() if until > now), reverse=True)
    return {h: until for until, h in alive[:MAX_OTHERS]}


def with_pending(others: dict[str, float], new_hash: str, now: float) -> dict[str, float]:
    """Step 1: `others` also accepting `new_hash`, the secret of a hook about to be created."""
    return pruned({**others, new_hash: now + OVERLAP_SECONDS}, now)


def after_swap(current: str | None, others: dict[str, float], new_hash: str, now: float) -> dict[str, float]:
    """Step 3: the others once `new_hash` is current: the replaced hash accepted for the overlap."""
    kept = {h: until for h, until in others.items() if h != new_hash}
    if current and current != new_hash:
        kept[current] = now + OVERLAP_SECONDS
    return pruned(kept, now)


def without(others: dict[str, float], dropped: str, now: float) -> dict[str, float]:
    """`others` without `dropped` (a pending secret whose hook could not be created)."""
    return pruned({h: until for h, until in others.items() if h != dropped}, now)


def retire(retired: dict[str, float], subscription_id: str | None, now: float) -> dict[str, float]:
    """Retired hooks (id → delete after) with `subscription_id` added, due `DRAIN_SECONDS` from now."""
    if not subscription_id or subscription_id in retired:
        return dict(retired)
    return {**retired, subscription_id: now + DRAIN_SECONDS}


def due(retired: dict[str, float], now: float) -> list[str]:
    """The retired hooks to delete now."""
    return sorted(sub_id for sub_id, after in retired.items() if after <= now)
