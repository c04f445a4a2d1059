"""Benchmark of the subscription kickoff: `python -m bench.kickoff [--sizes 1000 10000]`.

Starts a fresh in-memory Azurite, seeds org links (one integration per link, half of them due),
and runs `shared.flows.lifecycle.kickoff` at each size: once timed, once under tracemalloc for the
peak Python memory. Peak memory should stay flat as the number of links grows (the scan streams).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devhost import azurite
from shared import compose, config
from shared.adapters import cache, integrations, storage
from shared.core import kickoff as plan
from shared.flows import lifecycle


def seed(start: int, stop: int, now: float) -> None:
    """Links `start..stop-1`: even ones never checked (due), odd ones checked an hour ago (not due)."""
    table = storage.table(integrations.TABLE)

    def one(n: int) -> None:
        account_id = f"{n:08d}-bench-0000-0000-000000000000"
        table.submit_transaction([
            ("upsert", {"PartitionKey": account_id, "RowKey": integrations.RK_INTEGRATION, "account_name": f"org{n}",
                        "domain_name": f"https://dev.azure.com/org{n}/", "status": "active",
                        "subscription_id": f"sub-{n}", "secret_hash": "0" * 64,
                        "last_checked": None if n % 2 == 0 else now - 3600.0}),
            ("upsert", {"PartitionKey": account_id, "RowKey": f"{integrations.ORG_PREFIX}tracker-{n}",
                        "status": "active", "config": "{}"}),
        ])

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(start, stop)))


def reset_slot(now: float) -> None:
    """Forget this slot's kickoff progress and empty the queue, so the next run starts over."""
    storage.table(cache.TABLE).delete_entity(cache.KICKOFF_PARTITION, str(plan.slot_of(now)))
    storage.queue(lifecycle.QUEUE).clear_messages()


def measure(links: int, now: float) -> dict[str, float]:
    svc = compose.build(clock=lambda: now)
    reset_slot(now)
    started = time.perf_counter()
    lifecycle.kickoff(svc)
    elapsed = time.perf_counter() - started
    messages = int(storage.queue(lifecycle.QUEUE).get_queue_properties().approximate_message_count or 0)

    reset_slot(now)
    tracemalloc.start()
    lifecycle.kickoff(svc)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    due = links // 2 + links % 2
    return {"links": links, "due": due, "seconds": elapsed, "checks_per_s": due / elapsed,
            "messages": messages, "peak_kib": peak / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.kickoff", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args(argv)

    process = azurite.start()
    os.environ["AzureWebJobsStorage"] = process.connection_string
    config.reset()
    storage.reset()
    try:
        now = time.time()
        seeded = 0
        print(f"{'links':>7} {'due':>6} {'seconds':>8} {'checks/s':>9} {'messages':>8} {'peak KiB':>9}")
        for size in sorted(args.sizes):
            seed(seeded, size, now)
            seeded = size
            row = measure(size, now)
            print(f"{row['links']:>7} {row['due']:>6} {row['seconds']:>8.2f} {row['checks_per_s']:>9.0f} "
                  f"{row['messages']:>8} {row['peak_kib']:>9.0f}", flush=True)
    finally:
        process.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
