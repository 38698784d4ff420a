"""32 writers, each its own `SekibanExecutor` with the default conflict policy
(`CONFLICT_RETRY`), racing on ONE aggregate in real PostgreSQL: every command succeeds
and the stream stays contiguous. Rates and latencies are in `benchmarks/contention.py`
and docs/reliability.md; this test holds only the behaviour."""

from __future__ import annotations

import asyncio
import uuid

from examples.bank import AccountProjector, DepositMoney, OpenAccount, bank_domain
from sekiban import SekibanExecutor
from sekiban.retry import CONFLICT_RETRY
from sekiban.stores.postgres import PostgresEventStore
from tests.conformance.backends import require_env

WRITERS = 32
DEPOSITS = 5


async def test_32_writers_on_one_aggregate_all_succeed_with_default_retry() -> None:
    store = await PostgresEventStore.open(
        require_env("SEKIBAN_POSTGRES_DSN"), schema=f"t_{uuid.uuid4().hex[:12]}", max_size=16
    )
    try:
        opened = await SekibanExecutor(bank_domain(), store).command(OpenAccount(owner="ann"))
        keys = opened.partition_keys

        async def writer() -> list[int]:
            executor = SekibanExecutor(bank_domain(), store, conflict_retry=CONFLICT_RETRY)
            versions = []
            for _ in range(DEPOSITS):
                deposit = DepositMoney(account_id=keys.aggregate_id, amount=1)
                versions.append((await executor.command(deposit)).version)
            return versions

        results = await asyncio.gather(*(writer() for _ in range(WRITERS)))
        total = WRITERS * DEPOSITS
        acknowledged = sorted(v for versions in results for v in versions)
        assert acknowledged == list(range(2, total + 2))  # each command got its own version
        stored = [e.version async for batch in store.read_stream(keys) for e in batch]
        assert stored == list(range(1, total + 2))
        account = await SekibanExecutor(bank_domain(), store).load_aggregate(AccountProjector, keys)
        assert account.payload.balance == total  # type: ignore[attr-defined]
    finally:
        await store.drop_schema()
        await store.close()
