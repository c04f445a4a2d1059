"""Benchmark a cold start: importing function_app.py in a fresh interpreter, against azure.functions alone.

Each figure is the median of several fresh `python -c "import ..."` runs (interpreter start-up
included in both, so the difference is what the bundle adds). Run: `.venv/bin/python bench/coldstart.py`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(statement: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], cwd=ROOT, check=True)
        times.append(time.perf_counter() - began)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    rows = [
        ("python alone", "pass"),
        ("import azure.functions", "import azure.functions"),
        ("import function_app", "import function_app"),
        ("function_app + get_functions()", "import function_app; function_app.app.get_functions()"),
    ]
    print(f"cold start, median of {args.runs} fresh interpreters ({sys.version.split()[0]})")
    baseline = None
    for label, statement in rows:
        median = statistics.median(timed(statement, args.runs))
        if label == "import azure.functions":
            baseline = median
        extra = ""
        if baseline is not None and "function_app" in label:
            extra = f"  (+{(median - baseline) * 1000:.0f} ms over azure.functions)"
        print(f"  {label:<34} {median * 1000:8.0f} ms{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
