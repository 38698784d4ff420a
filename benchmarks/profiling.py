"""`python -m benchmarks.profiling`: where a sekiban append and a replay spend their time,
per event, on SQLite (WAL, synchronous=NORMAL).

Two workloads, each timed unprofiled first and then run under cProfile:
- append: the store level of `benchmarks.throughput` (`decide` one deposit, `append`,
  `fold`), one event per command, round robin over 100 aggregates; the time inside the
  driver (the INSERT statement) is measured apart, by wrapping `appending.insert`;
- replay: `EventReplayOptimizer.load` of a 10,000-event stream, no snapshot.

The table lists the functions with the most own time (cProfile's tottime), in
microseconds per event. cProfile inflates small calls (about 2x here): read the
unprofiled total for the real cost, the table for the shares. Results go to
benchmarks/results/profile.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.engines import SqliteEngine
from benchmarks.environment import environment, environment_markdown
from benchmarks.loads import SekibanLoads
from benchmarks.throughput import SekibanStoreLevel
from sekiban.stores.sqlite import appending

RESULTS = Path("benchmarks/results")
TOP = 18


def _rows(profile: cProfile.Profile, events: int) -> list[tuple[str, float, float, int]]:
    stats = pstats.Stats(profile)
    rows = []
    for (file, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).name}:{line}({name})" if file != "~" else name
        rows.append((where, tottime / events * 1e6, cumtime / events * 1e6, calls))
    rows.sort(key=lambda r: -r[1])
    return rows[:TOP]


async def profile_append(directory: Path, commands: int) -> dict[str, Any]:
    in_driver = [0.0]
    real_insert = appending.insert

    def timed_insert(connection: Any, parameters: Any) -> bool:
        started = time.perf_counter()
        try:
            return real_insert(connection, parameters)
        finally:
            in_driver[0] += time.perf_counter() - started

    engine = SqliteEngine("sqlite", directory, "NORMAL")
    async with engine.sekiban_stores() as stores:
        store: Any = stores.events
        subject = SekibanStoreLevel(stores)
        accounts = [await subject.open_account() for _ in range(100)]
        for i in range(commands // 10):
            await subject.deposit(accounts[i % 100], 1)
        store._group._insert = timed_insert  # the group writer calls it
        started = time.perf_counter()
        for i in range(commands):
            await subject.deposit(accounts[i % 100], 1)
        total = (time.perf_counter() - started) / commands * 1e6
        store._group._insert = real_insert
        profile = cProfile.Profile()
        profile.enable()
        for i in range(commands):
            await subject.deposit(accounts[i % 100], 1)
        profile.disable()
    driver = in_driver[0] / commands * 1e6
    return {"total_us": total, "driver_us": driver, "rows": _rows(profile, commands)}


async def profile_replay(directory: Path, history: int, runs: int) -> dict[str, Any]:
    engine = SqliteEngine("sqlite", directory, "NORMAL")
    async with engine.sekiban_stores() as stores:
        loads = SekibanLoads(stores)
        account = await loads.seed(history, 0)
        load = loads.loader(account, history, False, 0)
        await load()
        started = time.perf_counter()
        for _ in range(runs):
            await load()
        total = (time.perf_counter() - started) / (runs * history) * 1e6
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(runs):
            await load()
        profile.disable()
    return {"total_us": total, "rows": _rows(profile, runs * history)}


def _table(rows: list[tuple[str, float, float, int]]) -> list[str]:
    lines = ["| function | own µs/event | cumulative µs/event | calls |", "|---|--:|--:|--:|"]
    lines += [f"| `{w}` | {own:.2f} | {cum:.2f} | {calls:,} |" for w, own, cum, calls in rows]
    return lines


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m benchmarks.profiling", description=__doc__)
    p.add_argument("--commands", type=int, default=5_000)
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    env = environment(" ".join(["python -m benchmarks.profiling", *argv]))
    with tempfile.TemporaryDirectory(prefix="sekiban-profile-") as directory:
        append = asyncio.run(profile_append(Path(directory), args.commands))
        replay = asyncio.run(profile_replay(Path(directory), 10_000, 10))
    python = append["total_us"] - append["driver_us"]
    lines = [
        "# Per-event cost: append and replay on SQLite (profile)",
        "",
        *environment_markdown(env),
        "",
        f"## Append, 1 event per command: {append['total_us']:.1f} µs per command unprofiled",
        "",
        f"In the driver (the conditional INSERT): {append['driver_us']:.1f} µs; Python above "
        f"it (decide, envelopes, payload check, encoding, checks, fold, asyncio): "
        f"{python:.1f} µs.",
        "",
        *_table(append["rows"]),
        "",
        f"## Full replay of 10,000 events: {replay['total_us']:.2f} µs per event unprofiled",
        "",
        *_table(replay["rows"]),
    ]
    text = "\n".join(lines)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "profile.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
