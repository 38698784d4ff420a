"""Command latency on a warm Dapr actor against the single-process executor.

    python -m benchmarks.dapr_latency [--histories 10,1000,10000] [--commands 200]

For each history length an account is seeded with that many events, then the same
deposit command is timed: through `SekibanExecutor` without snapshots (loads the whole
history every time), with snapshots in PostgreSQL (snapshot + delta every time), and
through `DaprSekibanExecutor` to a warm `DaprAggregateActor` (no events read at all).
Needs SEKIBAN_POSTGRES_DSN and the daprd/placement build (`make dapr`). Results go to
`benchmarks/results/dapr_latency.{md,json}`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import track
from rich.table import Table

from examples.bank import AccountOpened, DepositMoney, MoneyDeposited, bank_domain
from sekiban import (
    Event,
    EventMetadata,
    PartitionKeys,
    SekibanExecutor,
    Serializer,
    SortableUniqueId,
)
from sekiban.dapr.executor import DaprSekibanExecutor
from sekiban.snapshot import SnapshotConfiguration
from sekiban.stores import with_query
from sekiban.stores.postgres import PostgresEventStore
from sekiban.testing.sidecar import DaprCluster, postgres_actor_state_component

RESULTS = Path(__file__).parent / "results"
console = Console()


async def seed(store: PostgresEventStore, history: int) -> PartitionKeys:
    """An account with `history` events: opened, then deposits of 1."""
    serializer = Serializer(bank_domain())
    keys = PartitionKeys.generate("account")
    now = datetime.now(UTC)
    payloads = [AccountOpened(owner="bench"), *[MoneyDeposited(amount=1)] * (history - 1)]
    events = [
        serializer.to_stored(
            Event(uuid.uuid4(), SortableUniqueId.generate(), v, keys, p, now, EventMetadata())
        )
        for v, p in enumerate(payloads, 1)
    ]
    for start in range(0, history, 1000):
        await store.append(events[start : start + 1000], start)
    return keys


async def time_commands(
    run: Callable[[DepositMoney], Awaitable[object]], keys: PartitionKeys, commands: int
) -> list[float]:
    command = DepositMoney(account_id=keys.aggregate_id, amount=1)
    for _ in range(5):  # warm-up: activation, pools, caches
        await run(command)
    samples = []
    for _ in range(commands):
        started = time.perf_counter()
        await run(command)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def main(histories: list[int], commands: int) -> dict[str, object]:
    dsn = os.environ["SEKIBAN_POSTGRES_DSN"]
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    store = await PostgresEventStore.open(dsn, schema=schema)
    domain = bank_domain()
    plain = SekibanExecutor(domain, store)
    snapshotting = SekibanExecutor(
        domain,
        store,
        snapshot_store=store.snapshot_store(),
        snapshot_config=SnapshotConfiguration(count_threshold=50),
    )
    rows: list[dict[str, object]] = []
    env = {"SEKIBAN_STORE_URL": with_query(dsn, schema=schema)}
    component = postgres_actor_state_component("actorstate", dsn, f"{schema}_actor_state")
    with (
        tempfile.TemporaryDirectory() as work,
        DaprCluster(Path(work), "examples.dapr_host:app", component, app_env=env) as cluster,
    ):
        node = cluster.start_node("bench")
        actors = DaprSekibanExecutor(domain, store, dapr_http_endpoint=node.http_endpoint)
        try:
            for history in track(histories, description="history lengths", console=console):
                for label, executor in (
                    ("executor, no snapshots", plain),
                    ("executor, snapshots", snapshotting),
                    ("warm Dapr actor", actors),
                ):
                    keys = await seed(store, history)
                    samples = await time_commands(executor.command, keys, commands)
                    rows.append(
                        {
                            "history": history,
                            "path": label,
                            "median_ms": statistics.median(samples),
                            "p95_ms": statistics.quantiles(samples, n=20)[18],
                            "p99_ms": statistics.quantiles(samples, n=100)[98],
                        }
                    )
        finally:
            await store.drop_schema()
            await store.close()
    return {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "commands_per_case": commands,
        "rows": rows,
    }


def report(results: dict[str, object], command: str) -> None:
    rows = results["rows"]
    assert isinstance(rows, list)
    table = Table("history", "path", "median ms", "p95 ms", "p99 ms")
    lines = [
        "# Command latency: warm Dapr actor vs single-process executor",
        "",
        f"Reproduce: `{command}` (PostgreSQL events, PostgreSQL actor state, "
        f"{results['commands_per_case']} commands per case after 5 warm-up commands).",
        f"Machine: {results['machine']}.",
        "",
        "| history (events) | path | median ms | p95 ms | p99 ms |",
        "|---:|---|---:|---:|---:|",
    ]
    for row in rows:
        cells = (
            str(row["history"]),
            str(row["path"]),
            f"{row['median_ms']:.2f}",
            f"{row['p95_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
        )
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "dapr_latency.md").write_text("\n".join(lines) + "\n")
    (RESULTS / "dapr_latency.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--histories", default="10,1000,10000")
    parser.add_argument("--commands", type=int, default=200)
    args = parser.parse_args()
    histories = [int(h) for h in args.histories.split(",")]
    results = asyncio.run(main(histories, args.commands))
    report(
        results,
        f"python -m benchmarks.dapr_latency --histories {args.histories} "
        f"--commands {args.commands}",
    )
