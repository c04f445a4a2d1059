"""Which service-hook secrets the webhook accepts while an integration's hook is replaced (pure).

An integration has one current secret (its hash in `Integration.secret_hash`) and, while a hook is
being replaced, other hashes each accepted until a time (`Integration.overlap_secrets`, hash →
unix seconds). A replacement (rotation, re-install, repair) goes:

1. `with_pending`: the new secret is accepted before its hook exists, so the new hook's first
   deliveries never meet a 401 (an enduring failure puts a hook on probation, and Azure DevOps
   drops new events of a hook on probation);
2. the hook is created with that secret;
3. `after_swap`: the new hash becomes current and the old one stays accepted for `OVERLAP_SECONDS`
   (deliveries already sent, or retried, with the old secret);
4. the old hook is deleted.

Why ten minutes: Azure DevOps retries a delivery that met a transient answer (408, 502, 503, 504)
up to 8 times over about three minutes, and does not retry other failures
(https://learn.microsoft.com/azure/devops/service-hooks/troubleshoot). Ten minutes covers that
retry chain with room for slow queues, while keeping a leaked old secret useful only briefly.
Events queued longer than that are brought back by reconciliation, like any missed delivery.
"""

from __future__ import annotations

OVERLAP_SECONDS = 600.0
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
