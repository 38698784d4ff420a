"""Timing and memory measurement of one call, repeated."""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

Call = Callable[[], Awaitable[Any]]


async def time_calls(
    call: Call, *, budget_s: float, min_runs: int, max_runs: int, warm_up: bool = True
) -> list[float]:
    """Seconds each run of `call` took: an untimed warm-up (if `warm_up`), then at least
    `min_runs` and at most `max_runs` runs, stopping once `budget_s` seconds are spent.

    Each run is timed on its own (the median resists the odd slow one); the garbage
    collector stays on, as it is in real use, after one collection up front.
    """
    if warm_up:
        await call()
    gc.collect()
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < max_runs and (
        len(samples) < min_runs or time.perf_counter() - started < budget_s
    ):
        begin = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - begin)
    return samples


async def peak_memory(call: Call) -> int:
    """Bytes of Python heap one run of `call` needed at its peak, above what was
    allocated before it (as `tracemalloc` sees it: memory a C library allocates for
    itself, such as SQLite's page cache, is not counted)."""
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        await call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return max(peak - before, 0)


def median(samples: list[float]) -> float:
    return statistics.median(samples)
