"""`python -m benchmarks.reactions`: reaction throughput, events reacted to per second.

A store is seeded with `--events` "account opened" events (one per account); a reaction
that answers each with one deposit command (a command id derived from the event, the
event's correlation carried on) is then run over them by a `ReactionRunner`, which
checkpoints every 100 events in memory. Timed: from the first event read to the last
command applied. Each round uses fresh storage; medians are reported. `--save` writes
benchmarks/results/reactions.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.domains import AccountOpened, DepositMany, OpenAccount, bench_domain
from benchmarks.engines import engines_for
from benchmarks.environment import environment
from benchmarks.timing import median
from sekiban import Event, EventPayload, SekibanExecutor
from sekiban.reactions import REACTION_TYPES, Reaction, ReactionRunner

PROG = "python -m benchmarks.reactions"


class Deposit(Reaction):
    """One deposit for every account opened."""

    event_types = (AccountOpened,)

    def react(self, event: Event[EventPayload]) -> DepositMany:
        return DepositMany(account_id=event.partition_keys.aggregate_id, amount=1)


async def bench_engine(engine: Any, events: int, rounds: int) -> dict[str, Any]:
    samples: list[float] = []
    domain = bench_domain(*REACTION_TYPES)
    for _ in range(rounds):
        async with engine.sekiban_stores() as stores:
            executor = SekibanExecutor(domain, stores.events)
            for n in range(events):
                await executor.command(OpenAccount(owner=f"owner{n}"))
            runner = ReactionRunner(executor, Deposit())
            started = time.perf_counter()
            reacted = await runner.run_until_idle()
            samples.append(time.perf_counter() - started)
            assert reacted == events, (reacted, events)
    return {
        "median_s": round(median(samples), 3),
        "events_per_s": round(events / median(samples)),
        "samples_s": [round(s, 3) for s in samples],
    }


async def run(stores: list[str], events: int, rounds: int) -> dict[str, Any]:
    skipped: dict[str, str] = {}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        for engine in engines_for(stores, Path(directory), skipped):
            print(f"{engine.name}: {events:,} events, {rounds} rounds", file=sys.stderr)
            results[engine.name] = await bench_engine(engine, events, rounds)
    command = " ".join([PROG, *sys.argv[1:]])
    return {
        "command": command,
        "events": events,
        "rounds": rounds,
        "results": results,
        "skipped": skipped,
        "environment": environment(command),
    }


def markdown(run: dict[str, Any]) -> str:
    lines = [
        "# Reaction throughput",
        "",
        f"{run['events']:,} events, each answered by one command (derived command id, "
        f"checkpoint every 100 events), median of {run['rounds']} rounds on fresh storage. "
        f"Reproduce: `{run['command']}`.",
        "",
        "| store | events reacted per second | median |",
        "|---|--:|--:|",
    ]
    for store, f in run["results"].items():
        lines.append(f"| {store} | {f['events_per_s']:,} | {f['median_s']} s |")
    for store, reason in run["skipped"].items():
        lines.append(f"| {store} | skipped: {reason} | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument("--stores", default="sqlite,postgres", help="comma-separated engines")
    p.add_argument("--events", type=int, default=2_000, help="events to react to")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds")
    p.add_argument("--json", dest="json_output", action="store_true", help="print JSON")
    p.add_argument("--save", action="store_true", help="write benchmarks/results/reactions.*")
    p.add_argument("--output", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args(argv)
    stores = [s for s in args.stores.split(",") if s]
    result = asyncio.run(run(stores, args.events, args.rounds))
    print(json.dumps(result, indent=2) if args.json_output else markdown(result), end="")
    if args.save:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "reactions.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.output / "reactions.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
