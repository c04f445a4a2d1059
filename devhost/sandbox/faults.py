"""Faults the sandbox injects into API answers on demand: throttling, server errors, slowness, drops.

Pure bookkeeping (thread-safe); the HTTP layer acts on the fault `take()` returns.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

KINDS = ("429", "500", "503", "slow", "drop", "timeout")


@dataclass
class Fault:
    kind: str
    times: int
    rate: float | None
    path_contains: str | None
    retry_after: int


class Faults:
    """Armed faults, checked in the order they were injected."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._random = random.Random(seed)

    def inject(
        self,
        kind: str,
        *,
        times: int = 1,
        rate: float | None = None,
        path_contains: str | None = None,
        retry_after: int = 1,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {KINDS}")
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        with self._lock:
            self._faults.append(Fault(kind, times, rate, path_contains, retry_after))

    def clear(self, path_contains: str | None = None) -> None:
        """Disarm every fault, or only those armed for `path_contains`."""
        with self._lock:
            self._faults = [f for f in self._faults if path_contains is not None and f.path_contains != path_contains]

    def take(self, path: str) -> Fault | None:
        """The fault to apply to a request for `path` (and use up one of its `times`), if any."""
        with self._lock:
            for fault in list(self._faults):
                if fault.path_contains and fault.path_contains.lower() not in path.lower():
                    continue
                if fault.rate is not None:
                    if self._random.random() < fault.rate:
                        return fault
                    continue
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None
