"""`python -m benchmarks.contention`: many writers racing on ONE aggregate.

Each writer is its own `SekibanExecutor` with the default conflict policy
(`sekiban.retry.CONFLICT_RETRY`) sending `--deposits` deposits to one bank account; the
table gives, per store and writer count, how many commands succeeded, how many
conflicts were retried, and the p50/p99 latency of a command (retries included).

SQLite writers run on threads, each with its own event loop and its own connection to
one file (a SQLite statement does not yield to the event loop, so writers on one loop
would never interleave); PostgreSQL writers are tasks on one loop sharing a pool
(`--pool` connections). PostgreSQL needs SEKIBAN_POSTGRES_DSN; without it it is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from examples.bank import AccountProjector, DepositMoney, OpenAccount, bank_domain
from sekiban import ConcurrencyError, PartitionKeys, SekibanExecutor, StoredEvent
from sekiban.retry import CONFLICT_RETRY, RetryPolicy
from sekiban.stores import EventStore


@dataclass
class Tally:
    """What the writers of one run saw; shared by threads, so updated under a lock."""

    succeeded: int = 0
    failed: int = 0
    conflicts: int = 0
    latencies: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class CountingStore:
    """An event store that counts the conflicts its appends report."""

    def __init__(self, inner: EventStore, tally: Tally) -> None:
        self.inner, self.tally = inner, tally

    async def append(
        self,
        events: Sequence[StoredEvent],
        expected_version: int,
        *,
        command_id: str | None = None,
    ) -> None:
        try:
            await self.inner.append(events, expected_version, command_id=command_id)
        except ConcurrencyError:
            with self.tally.lock:
                self.tally.conflicts += 1
            raise

    def read_stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[list[StoredEvent]]:
        return self.inner.read_stream(*args, **kwargs)

    def read_all(self, *args: Any, **kwargs: Any) -> AsyncIterator[list[StoredEvent]]:
        return self.inner.read_all(*args, **kwargs)

    async def read_command(
        self, partition_keys: PartitionKeys, command_id: str
    ) -> list[StoredEvent] | None:
        return await self.inner.read_command(partition_keys, command_id)

    async def close(self) -> None:
        await self.inner.close()


async def write(
    store: EventStore, keys: PartitionKeys, deposits: int, tally: Tally, policy: RetryPolicy
) -> None:
    executor = SekibanExecutor(bank_domain(), CountingStore(store, tally), conflict_retry=policy)
    for _ in range(deposits):
        started = time.perf_counter()
        try:
            await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
        except ConcurrencyError:
            ok = False
        else:
            ok = True
        elapsed = time.perf_counter() - started
        with tally.lock:
            tally.latencies.append(elapsed)
            if ok:
                tally.succeeded += 1
            else:
                tally.failed += 1


async def check_contiguous(store: EventStore, keys: PartitionKeys, expected: int) -> None:
    versions = [e.version async for batch in store.read_stream(keys) for e in batch]
    assert versions == list(range(1, expected + 1)), "the stream has a gap or a duplicate"


def sqlite_run(writers: int, deposits: int, policy: RetryPolicy) -> Tally:
    from sekiban.stores.sqlite import SqliteEventStore

    tally = Tally()
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "contention.db"

        async def setup() -> PartitionKeys:
            store = await SqliteEventStore.open(path)
            keys = await SekibanExecutor(bank_domain(), store).command(OpenAccount(owner="a"))
            await store.close()
            return keys.partition_keys

        keys = asyncio.run(setup())
        start = threading.Barrier(writers)

        def writer() -> None:
            async def run() -> None:
                store = await SqliteEventStore.open(path)
                start.wait()
                try:
                    await write(store, keys, deposits, tally, policy)
                finally:
                    await store.close()

            asyncio.run(run())

        threads = [threading.Thread(target=writer) for _ in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        async def verify() -> None:
            store = await SqliteEventStore.open(path)
            await check_contiguous(store, keys, 1 + tally.succeeded)
            await store.close()

        asyncio.run(verify())
    return tally


async def postgres_run(
    dsn: str, writers: int, deposits: int, policy: RetryPolicy, pool: int
) -> Tally:
    from sekiban.stores.postgres import PostgresEventStore

    tally = Tally()
    store = await PostgresEventStore.open(
        dsn, schema=f"bench_{uuid.uuid4().hex[:12]}", max_size=pool
    )
    try:
        opened = await SekibanExecutor(bank_domain(), store).command(OpenAccount(owner="a"))
        keys = opened.partition_keys
        await asyncio.gather(*(write(store, keys, deposits, tally, policy) for _ in range(writers)))
        await check_contiguous(store, keys, 1 + tally.succeeded)
        aggregate = await SekibanExecutor(bank_domain(), store).load_aggregate(
            AccountProjector, keys
        )
        assert aggregate.payload.balance == tally.succeeded  # type: ignore[attr-defined]
    finally:
        await store.drop_schema()
        await store.close()
    return tally


def row(store: str, writers: int, tally: Tally) -> str:
    total = tally.succeeded + tally.failed
    retries = tally.conflicts - tally.failed  # each failure ended on one unretried conflict
    ms = sorted(x * 1000 for x in tally.latencies)
    p50 = statistics.median(ms)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return (
        f"| {store} | {writers} | {total:,} | {tally.succeeded:,} | {tally.failed:,} | "
        f"{100 * tally.succeeded / total:.1f} % | {retries:,} | {p50:.1f} | {p99:.1f} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.contention", description=__doc__)
    p.add_argument("--writers", default="8,32,64", help="comma-separated writer counts")
    p.add_argument("--deposits", type=int, default=20, help="deposits per writer")
    p.add_argument("--stores", default="sqlite,postgres")
    p.add_argument("--pool", type=int, default=16, help="PostgreSQL pool size")
    p.add_argument("--attempts", type=int, help="override CONFLICT_RETRY.attempts")
    p.add_argument("--base-ms", type=float, help="override CONFLICT_RETRY.base_delay")
    p.add_argument("--max-ms", type=float, help="override CONFLICT_RETRY.max_delay")
    args = p.parse_args()
    policy = RetryPolicy(
        attempts=args.attempts or CONFLICT_RETRY.attempts,
        base_delay=timedelta(milliseconds=args.base_ms)
        if args.base_ms
        else CONFLICT_RETRY.base_delay,
        max_delay=timedelta(milliseconds=args.max_ms) if args.max_ms else CONFLICT_RETRY.max_delay,
    )
    print(f"policy: {policy}; {args.deposits} deposits per writer")
    print(
        "| store | writers | commands | succeeded | failed | success | retries | p50 ms | p99 ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    dsn = os.environ.get("SEKIBAN_POSTGRES_DSN")
    for store in args.stores.split(","):
        for writers in (int(w) for w in args.writers.split(",")):
            if store == "sqlite":
                tally = sqlite_run(writers, args.deposits, policy)
            elif store == "postgres" and dsn:
                tally = asyncio.run(postgres_run(dsn, writers, args.deposits, policy, args.pool))
            else:
                continue
            print(row(store, writers, tally), flush=True)


if __name__ == "__main__":
    main()
