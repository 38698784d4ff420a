"""Concurrency stress: 8 clients x 500 commands on every store, on one and many aggregates.

Afterwards each aggregate's version equals 1 + its successful deposits, its balance
equals them, and its stream is contiguous: conflicts were reported, never silent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.bank import AccountProjector, ActiveAccount, bank_domain
from sekiban import PartitionKeys, SekibanExecutor
from sekiban.snapshot import SnapshotConfiguration
from tests.conformance.backends import BACKENDS
from tests.integration.stress_support import CLIENTS, COMMANDS_PER_CLIENT, stress


async def check_streams(executor: SekibanExecutor, succeeded: dict, group: str = "account") -> None:
    for aggregate_id, deposits in succeeded.items():
        keys = PartitionKeys.existing(aggregate_id, group)
        versions = [e.version async for b in executor.event_store.read_stream(keys) for e in b]
        assert versions == list(range(1, deposits + 2))
        aggregate = await executor.load_aggregate(AccountProjector, keys)
        assert isinstance(aggregate.payload, ActiveAccount)
        assert aggregate.payload.balance == deposits


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("aggregates", [1, 16])
async def test_many_clients_lose_and_duplicate_nothing(
    backend: str, aggregates: int, tmp_path: Path
) -> None:
    async with BACKENDS[backend](tmp_path) as (event_store, snapshot_store):
        executor = SekibanExecutor(
            bank_domain(),
            event_store,
            snapshot_store=snapshot_store,
            snapshot_config=SnapshotConfiguration(count_threshold=50),
        )
        counts, succeeded = await stress(
            f"{backend} store", executor.command, executor.command, aggregates
        )
        assert counts.attempts == CLIENTS * COMMANDS_PER_CLIENT
        assert counts.succeeded + counts.conflicts == counts.attempts
        assert counts.succeeded == sum(succeeded.values()) > 0
        await check_streams(executor, succeeded)


@pytest.mark.dapr
@pytest.mark.parametrize("aggregates", [1, 16])
async def test_many_clients_through_dapr_actors(aggregates: int, tmp_path: Path) -> None:
    from sekiban.dapr.executor import DaprSekibanExecutor
    from tests.integration.dapr_support import bank_cluster

    async with bank_cluster(tmp_path, snapshot_count=50) as bank:
        node = bank.cluster.start_node("stress")
        actors = DaprSekibanExecutor(
            bank_domain(), bank.store, dapr_http_endpoint=node.http_endpoint
        )
        counts, succeeded = await stress(
            "Dapr actors (PostgreSQL)", actors.command, actors.command, aggregates
        )
        assert counts.succeeded == counts.attempts == CLIENTS * COMMANDS_PER_CLIENT
        await check_streams(SekibanExecutor(bank_domain(), bank.store), succeeded)
