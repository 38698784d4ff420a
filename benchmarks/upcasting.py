"""`python -m benchmarks.upcasting`: replay throughput with and without upcasting.

One account of `--history` events (an "opened" event, then deposits) is written at
schema version 1 and replayed in full through `EventReplayOptimizer`:

- `none`: by the domain that wrote it, whose event types are unchanged: the path every
  store without evolved events takes, which must cost what it did before upcasting;
- `upcast`: by a domain whose `MoneyDeposited` is at schema version 2 (the amount in
  cents) with a v1 -> v2 upcaster, so every deposit is upcast on the way in.

The scenarios alternate within each round (the machine is noisy) and medians are
reported. Run it from the repository root; `--save` writes
benchmarks/results/upcasting.{json,md}.
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

from benchmarks.domains import AccountOpened, AccountProjector, ActiveAccount, bench_domain
from benchmarks.engines import engines_for
from benchmarks.environment import environment
from benchmarks.seeding import seed_sekiban
from benchmarks.timing import median
from sekiban import (
    AggregatePayload,
    AggregateProjector,
    DomainTypes,
    EmptyAggregatePayload,
    Event,
    EventPayload,
    Serializer,
)
from sekiban.loading import EventReplayOptimizer

PROG = "python -m benchmarks.upcasting"
SCENARIOS = ("none", "upcast")


def upcasting_domain() -> tuple[DomainTypes, AggregateProjector]:
    """The bench domain after `MoneyDeposited` moved to cents (schema version 2), and
    its projector. Made on demand: code before schema versions cannot define it."""
    from pydantic import Field

    class MoneyDeposited(EventPayload):
        cents: int = Field(gt=0)
        schema_version = 2

    class CentsAccountProjector(AggregateProjector):
        name = "account"

        def project(
            self, payload: AggregatePayload, event: Event[EventPayload]
        ) -> AggregatePayload:
            match payload, event.payload:
                case EmptyAggregatePayload(), AccountOpened(owner=owner):
                    return ActiveAccount(owner=owner)
                case ActiveAccount(), MoneyDeposited(cents=cents):
                    return payload.evolve(
                        balance=payload.balance + cents // 100,
                        transactions=payload.transactions + 1,
                    )
            return payload

    domain = DomainTypes(AccountOpened, MoneyDeposited, ActiveAccount, CentsAccountProjector)

    @domain.upcaster(MoneyDeposited, from_version=1)
    def to_cents(data: dict[str, Any]) -> dict[str, Any]:
        return {"cents": data["amount"] * 100}

    return domain, domain.projector(CentsAccountProjector)


async def bench_engine(
    engine: Any, history: int, rounds: int, scenarios: list[str]
) -> dict[str, Any]:
    """Median full-replay time of each scenario on `engine`, alternating per round."""
    readers: dict[str, tuple[Serializer, AggregateProjector]] = {}
    if "none" in scenarios:
        readers["none"] = (Serializer(bench_domain()), AccountProjector())
    if "upcast" in scenarios:
        domain, projector = upcasting_domain()
        readers["upcast"] = (Serializer(domain), projector)
    samples: dict[str, list[float]] = {name: [] for name in readers}
    async with engine.sekiban_stores() as stores:
        keys = await seed_sekiban(stores, Serializer(bench_domain()), history)
        balances = set()
        for round_ in range(rounds + 1):  # round 0 warms up, untimed
            order = list(readers) if round_ % 2 else list(reversed(readers))
            for name in order:
                serializer, projector = readers[name]
                optimizer = EventReplayOptimizer(stores.events, serializer)
                started = time.perf_counter()
                result = await optimizer.load(projector, keys)
                elapsed = time.perf_counter() - started
                assert result.aggregate.version == history
                balances.add(result.aggregate.payload.balance)  # type: ignore[attr-defined]
                if round_:
                    samples[name].append(elapsed)
        assert len(balances) == 1, "the scenarios must fold to the same account"
    figures: dict[str, Any] = {}
    for name, times in samples.items():
        figures[name] = {
            "median_ms": round(median(times) * 1000, 2),
            "events_per_s": round(history / median(times)),
            "samples_ms": [round(t * 1000, 2) for t in times],
        }
    if len(figures) == 2:
        figures["upcast_cost"] = round(
            figures["upcast"]["median_ms"] / figures["none"]["median_ms"], 3
        )
    return figures


async def run(stores: list[str], history: int, rounds: int, scenarios: list[str]) -> dict[str, Any]:
    skipped: dict[str, str] = {}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as directory:
        for engine in engines_for(stores, Path(directory), skipped):
            print(f"{engine.name}: {history:,} events, {rounds} rounds", file=sys.stderr)
            results[engine.name] = await bench_engine(engine, history, rounds, scenarios)
    command = " ".join([PROG, *sys.argv[1:]])
    return {
        "command": command,
        "history": history,
        "rounds": rounds,
        "results": results,
        "skipped": skipped,
        "environment": environment(command),
    }


def markdown(run: dict[str, Any]) -> str:
    lines = [
        "# Replay with and without upcasting",
        "",
        f"Full replay of one {run['history']:,}-event stream written at schema version 1, "
        f"median of {run['rounds']} alternating rounds. Reproduce: `{run['command']}`.",
        "",
        "| store | no upcaster | one upcaster per event | upcast cost |",
        "|---|--:|--:|--:|",
    ]
    for store, figures in run["results"].items():
        none, upcast = figures.get("none"), figures.get("upcast")
        cells = [
            f"{f['events_per_s']:,} events/s ({f['median_ms']} ms)" if f else "-"
            for f in (none, upcast)
        ]
        cost = f"{figures['upcast_cost']}x" if "upcast_cost" in figures else "-"
        lines.append(f"| {store} | {cells[0]} | {cells[1]} | {cost} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__)
    p.add_argument("--stores", default="sqlite,postgres", help="comma-separated engines")
    p.add_argument("--history", type=int, default=10_000, help="events in the stream")
    p.add_argument("--rounds", type=int, default=15, help="timed rounds per scenario")
    p.add_argument("--scenarios", default="none,upcast", help="none, upcast or both")
    p.add_argument("--json", dest="json_output", action="store_true", help="print JSON")
    p.add_argument("--save", action="store_true", help="write benchmarks/results/upcasting.*")
    p.add_argument("--output", type=Path, default=Path("benchmarks/results"))
    args = p.parse_args(argv)
    scenarios = [s for s in args.scenarios.split(",") if s]
    if not set(scenarios) <= set(SCENARIOS):
        p.error(f"--scenarios: choose from {', '.join(SCENARIOS)}")
    stores = [s for s in args.stores.split(",") if s]
    result = asyncio.run(run(stores, args.history, args.rounds, scenarios))
    if args.json_output:
        print(json.dumps(result, indent=2))
    else:
        print(markdown(result), end="")
    if args.save:
        args.output.mkdir(parents=True, exist_ok=True)
        (args.output / "upcasting.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.output / "upcasting.md").write_text(markdown(result))


if __name__ == "__main__":
    main()
