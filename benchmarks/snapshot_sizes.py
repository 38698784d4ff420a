"""Snapshot size, raw and zlib-compressed, and what taking and restoring one costs.

Two payloads: the benchmark account (owner, balance, count: the same few bytes at any
history length) and `LedgerAccount`, which keeps every transaction (amount and time),
so its snapshot grows with the history. Sizes are the stored payload bytes of
`take_snapshot` with `compress_above=None` (raw JSON) and `compress_above=0` (always
zlib at the default level), and with the default `SnapshotConfiguration`
(`compress_above_bytes` 16,384: what is actually stored).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from benchmarks.domains import (
    AccountProjector,
    ActiveAccount,
    LedgerAccount,
    Transaction,
    account_keys,
    bench_domain,
)
from benchmarks.timing import median, time_calls
from sekiban import Aggregate, AggregatePayload, Serializer, SortableUniqueId
from sekiban.snapshot import (
    AggregateSnapshot,
    SnapshotConfiguration,
    restore_snapshot,
    take_snapshot,
)


@dataclass(frozen=True)
class SnapshotSize:
    payload: str
    history: int
    raw_bytes: int
    compressed_bytes: int
    stored_bytes: int
    """With the default `compress_above_bytes`."""
    take_raw_ms: float
    take_compressed_ms: float
    restore_raw_ms: float
    restore_compressed_ms: float


def ledger(history: int) -> LedgerAccount:
    """A ledger of `history` - 1 deposits (the first event opened it)."""
    rng = random.Random(history)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    transactions = [
        Transaction(amount=rng.randint(1, 10_000), at=start + timedelta(seconds=i * 37))
        for i in range(history - 1)
    ]
    return LedgerAccount(
        owner="bench", balance=sum(t.amount for t in transactions), transactions=transactions
    )


async def measure_snapshot_sizes(
    histories: tuple[int, ...], *, budget_s: float = 0.2
) -> list[SnapshotSize]:
    """Sizes and take/restore times of both payloads at each history length."""
    sizes = []
    for history in histories:
        account = ActiveAccount(owner="bench", balance=history - 1, transactions=history - 1)
        for name, payload in (("account", account), ("ledger", ledger(history))):
            sizes.append(await _measure(name, payload, history, budget_s))
    return sizes


async def _measure(
    name: str, payload: AggregatePayload, history: int, budget_s: float
) -> SnapshotSize:
    serializer = Serializer(bench_domain())
    projector = AccountProjector()
    aggregate: Aggregate[AggregatePayload] = Aggregate(
        payload,
        account_keys(uuid.uuid4()),
        history,
        SortableUniqueId.generate(),
        projector.name,
        projector.version,
    )
    now = datetime.now(UTC)

    def take(compress_above: int | None) -> AggregateSnapshot:
        return take_snapshot(
            aggregate,
            serializer,
            taken_at=now,
            events_since_previous=history,
            compress_above=compress_above,
        )

    raw, compressed = take(None), take(0)
    stored = take(SnapshotConfiguration().compress_above_bytes)

    async def ms(call: Callable[[], object]) -> float:
        async def run() -> object:
            return call()

        return median(await time_calls(run, budget_s=budget_s, min_runs=3, max_runs=1000)) * 1000

    return SnapshotSize(
        name,
        history,
        raw.size,
        compressed.size,
        stored.size,
        take_raw_ms=await ms(lambda: take(None)),
        take_compressed_ms=await ms(lambda: take(0)),
        restore_raw_ms=await ms(lambda: restore_snapshot(raw, projector, serializer)),
        restore_compressed_ms=await ms(lambda: restore_snapshot(compressed, projector, serializer)),
    )
