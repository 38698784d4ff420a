"""The sample bank domain on the embedded SQLite store, with snapshots at work.

Run with `make demo` (or `python -m examples.demo [--keep] [--db PATH]`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sekiban import AggregateStateError, SekibanExecutor
from sekiban.examples.bank import (
    AccountProjector,
    ActiveAccountsQuery,
    CloseAccount,
    DepositMoney,
    OpenAccount,
    WithdrawMoney,
    bank_domain,
)
from sekiban.snapshot import SnapshotConfiguration
from sekiban.stores.sqlite import SqliteEventStore

console = Console()


async def run(db_path: Path, deposits: int) -> None:
    store = await SqliteEventStore.open(db_path)
    snapshots = store.snapshot_store()
    config = SnapshotConfiguration(strategy="count", count_threshold=100)
    executor = SekibanExecutor(
        bank_domain(), store, snapshot_store=snapshots, snapshot_config=config
    )
    console.rule(f"[bold]sekiban demo[/] — SQLite at {db_path}")

    alice = (await executor.command(OpenAccount(owner="alice"))).partition_keys
    bob = (await executor.command(OpenAccount(owner="bob"))).partition_keys
    carol = (await executor.command(OpenAccount(owner="carol"))).partition_keys
    console.print(f"opened 3 accounts; alice is [cyan]{alice}[/]")

    started = time.perf_counter()
    for _ in range(deposits):
        await executor.command(DepositMoney(account_id=alice.aggregate_id, amount=1))
    elapsed = time.perf_counter() - started
    console.print(
        f"{deposits} deposits to alice in {elapsed:.2f}s ({deposits / elapsed:,.0f} commands/s); "
        f"snapshots taken: {executor.snapshots.taken} (every {config.count_threshold} events)"
    )
    await executor.command(DepositMoney(account_id=bob.aggregate_id, amount=250))
    await executor.command(WithdrawMoney(account_id=bob.aggregate_id, amount=40))
    await executor.command(DepositMoney(account_id=carol.aggregate_id, amount=75))
    await executor.command(CloseAccount(account_id=carol.aggregate_id, reason="moved away"))

    try:
        await executor.command(DepositMoney(account_id=carol.aggregate_id, amount=1))
    except AggregateStateError as error:
        console.print(f"[yellow]rejected as expected:[/] {error}")

    table = Table("load of alice", "snapshot used", "events replayed", "version", "ms")
    with_snapshot = await executor.load(AccountProjector, alice)
    await snapshots.delete(alice, AccountProjector.name)
    without = await SekibanExecutor(bank_domain(), store).load(AccountProjector, alice)
    for label, result in (("with snapshot", with_snapshot), ("full replay", without)):
        stats = result.statistics
        table.add_row(
            label,
            f"v{stats.snapshot_version}" if stats.from_snapshot else "none",
            str(stats.events_replayed),
            str(result.aggregate.version),
            f"{stats.duration.total_seconds() * 1000:.2f}",
        )
    console.print(table)
    assert with_snapshot.aggregate == without.aggregate
    console.print("snapshot + delta gives the same aggregate as full replay: [green]yes[/]")

    await executor.load(AccountProjector, alice)  # re-creates the deleted snapshot
    AccountProjector.version = "2"  # what a release's one-line bump does
    try:
        result = await executor.load(AccountProjector, alice)
    finally:
        AccountProjector.version = "1"
    console.print(
        f"after a projector version bump the snapshot is discarded: "
        f"[magenta]{result.statistics.rejection}[/]"
    )

    accounts = await executor.query(ActiveAccountsQuery(min_balance=1))
    table = Table("owner", "balance", "version")
    for aggregate in accounts.items:
        payload = aggregate.payload
        table.add_row(payload.owner, str(payload.balance), str(aggregate.version))  # type: ignore[attr-defined]
    console.print(f"ActiveAccountsQuery(min_balance=1): {accounts.total_count} accounts")
    console.print(table)
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", type=Path, help="database file (default: a temp file)")
    parser.add_argument("--keep", action="store_true", help="keep the database between runs")
    parser.add_argument("--deposits", type=int, default=1000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="  log %(levelname)s %(name)s: %(message)s")
    db_path = args.db or Path(tempfile.gettempdir()) / "sekiban-demo.db"
    if not args.keep:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    asyncio.run(run(db_path, args.deposits))


if __name__ == "__main__":
    main()
