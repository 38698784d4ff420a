"""The aggregate actor on the real Dapr runtime: daprd + placement + PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from examples.bank import AccountProjector, ActiveAccount, DepositMoney, OpenAccount, bank_domain
from sekiban import Executor, PartitionKeys, RetryPolicy
from sekiban.dapr.actor import DaprAggregateActor, actor_id_for
from sekiban.dapr.executor import DaprSekibanExecutor
from sekiban.errors import DaprUnavailableError, RemoteCommandError
from sekiban.snapshot import AggregateSnapshot, RejectionReason
from sekiban.stores import EventStore
from sekiban.stores.postgres import PostgresEventStore
from tests.integration.dapr_support import BankCluster, active_actor_count, bank_cluster
from tests.support import bomb, forged

pytestmark = pytest.mark.dapr


async def actor_state_snapshot(bank: BankCluster, app_id: str, keys: PartitionKeys) -> dict | None:
    key = f"{app_id}||{DaprAggregateActor.__name__}||{actor_id_for('account', keys)}||snapshot"
    connection = await asyncpg.connect(bank.dsn)
    try:
        value = await connection.fetchval(
            f"SELECT value FROM {bank.state_table} WHERE key = $1", key
        )
    finally:
        await connection.close()
    return json.loads(value) if value else None


async def open_account_with_deposits(bank: BankCluster, deposits: int) -> PartitionKeys:
    """Start a node "bank" and open an account on it with `deposits` deposits of 1."""
    node = bank.cluster.start_node("bank")
    executor = DaprSekibanExecutor(bank_domain(), bank.store, dapr_http_endpoint=node.http_endpoint)
    keys = (await executor.command(OpenAccount(owner="ann"))).partition_keys
    for _ in range(deposits):
        await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
    return keys


async def test_commands_snapshots_and_reactivation_on_real_daprd(tmp_path: Path) -> None:
    async with bank_cluster(tmp_path, snapshot_count=10) as bank:
        cluster, store = bank.cluster, bank.store
        node = cluster.start_node("bank")
        executor = DaprSekibanExecutor(bank_domain(), store, dapr_http_endpoint=node.http_endpoint)
        opened = await executor.command(OpenAccount(owner="2024-01-01"))
        keys = opened.partition_keys
        for _ in range(24):
            await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=2))
        aggregate = await executor.load_aggregate(AccountProjector, keys)
        assert aggregate.version == 25
        assert aggregate.payload == ActiveAccount(owner="2024-01-01", balance=48, transactions=24)

        snapshot = await actor_state_snapshot(bank, "bank", keys)
        assert snapshot is not None and snapshot["version"] == 20

        with pytest.raises(RemoteCommandError, match="AggregateStateError"):
            await executor.command(OpenAccount(owner="again", account_id=keys.aggregate_id))

        # Kill the host (no deactivation, so actor state keeps the snapshot at 20)
        # and start it again: activation reads that snapshot plus the 5-event delta.
        node.app.kill()
        node.daprd.kill()
        node = cluster.start_node("bank")
        executor = DaprSekibanExecutor(bank_domain(), store, dapr_http_endpoint=node.http_endpoint)
        loaded = await executor.load(AccountProjector, keys)
        stats = loaded.statistics
        assert stats.from_snapshot and stats.snapshot_version == 20
        assert stats.events_replayed == 5
        assert loaded.aggregate.version == 25


async def test_concurrent_clients_on_one_aggregate_lose_no_event(tmp_path: Path) -> None:
    async with bank_cluster(tmp_path) as bank:
        cluster, store = bank.cluster, bank.store
        node = cluster.start_node("bank")
        executor = DaprSekibanExecutor(bank_domain(), store, dapr_http_endpoint=node.http_endpoint)
        keys = (await executor.command(OpenAccount(owner="ann"))).partition_keys

        async def client() -> None:
            for _ in range(10):
                await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))

        await asyncio.gather(*(client() for _ in range(8)))
        versions = [e.version async for b in store.read_stream(keys) for e in b]
        assert versions == list(range(1, 82))
        aggregate = await executor.load_aggregate(AccountProjector, keys)
        assert aggregate.payload == ActiveAccount(owner="ann", balance=80, transactions=80)


async def test_missing_sidecar_is_a_clear_error() -> None:
    store = PostgresEventStore.__new__(PostgresEventStore)
    executor = DaprSekibanExecutor(
        bank_domain(),
        store,
        dapr_http_endpoint="http://127.0.0.1:9",
        transient_retry=RetryPolicy.never(),
    )
    with pytest.raises(DaprUnavailableError, match="no Dapr sidecar"):
        await executor.command(OpenAccount(owner="x"))


async def test_two_instances_share_aggregates_and_survive_losing_one(tmp_path: Path) -> None:
    async with bank_cluster(tmp_path) as bank:
        cluster, store = bank.cluster, bank.store
        first = cluster.start_node("bank")
        second = cluster.start_node("bank")
        executor = DaprSekibanExecutor(
            bank_domain(),
            store,
            dapr_http_endpoint=first.http_endpoint,
            transient_retry=RetryPolicy(attempts=11, base_delay=timedelta(milliseconds=200)),
        )
        accounts = [
            (await executor.command(OpenAccount(owner=f"owner-{i}"))).partition_keys
            for i in range(24)
        ]
        for keys in accounts:
            await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=5))
        on_first = await active_actor_count(first.http_endpoint)
        on_second = await active_actor_count(second.http_endpoint)
        assert on_first > 0 and on_second > 0 and on_first + on_second == 24

        second.kill()
        for keys in accounts:
            await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=7))
        for keys in accounts:
            aggregate = await executor.load_aggregate(AccountProjector, keys)
            assert aggregate.version == 3
            assert aggregate.payload.balance == 12  # type: ignore[attr-defined]
            versions = [e.version async for b in store.read_stream(keys) for e in b]
            assert versions == [1, 2, 3]
        assert await active_actor_count(first.http_endpoint) == 24


async def test_timer_flushes_the_snapshot_of_a_quiet_actor(tmp_path: Path) -> None:
    env = {"SEKIBAN_SNAPSHOT_STRATEGY": "time", "SEKIBAN_SNAPSHOT_INTERVAL": "1"}
    async with bank_cluster(tmp_path, extra_env=env) as bank:
        keys = await open_account_with_deposits(bank, 5)
        deadline = asyncio.get_running_loop().time() + 10
        snapshot = await actor_state_snapshot(bank, "bank", keys)
        while (snapshot is None or snapshot["version"] < 6) and (
            asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(0.2)
            snapshot = await actor_state_snapshot(bank, "bank", keys)
        assert snapshot is not None and snapshot["version"] == 6


async def test_daprd_uses_the_loopback_name_resolver_and_a_private_component(
    tmp_path: Path,
) -> None:
    async with bank_cluster(tmp_path) as bank:
        node = bank.cluster.start_node("loopback")
        log = node.daprd.log.read_text()
        assert "Initialized name resolution to kubernetes" in log
        assert "mdns" not in log.lower()
        component = bank.cluster.components / "actorstate.yaml"
        assert component.stat().st_mode & 0o077 == 0


async def test_two_clusters_run_side_by_side_on_one_machine(tmp_path: Path) -> None:
    """Every port a cluster opens is a free one (placement's Raft port was a fixed 8201)."""
    async with (
        bank_cluster(tmp_path / "one") as one,
        bank_cluster(tmp_path / "two") as two,
    ):
        for bank in (one, two):
            node = bank.cluster.start_node("bank")
            executor = DaprSekibanExecutor(
                bank_domain(), bank.store, dapr_http_endpoint=node.http_endpoint
            )
            opened = await executor.command(OpenAccount(owner="side-by-side"))
            assert opened.version == 1
        assert one.cluster.placement is not None and one.cluster.placement.running
        assert two.cluster.placement is not None and two.cluster.placement.running


async def test_the_executor_contract_holds_on_real_daprd(tmp_path: Path) -> None:
    """The host-independent cases of tests/unit/test_executor_contract.py, run against
    `DaprSekibanExecutor` and a real sidecar (cold-load statistics and conflict retries
    are covered above and by the in-process harness)."""
    from tests.unit import test_executor_contract as contract

    async with bank_cluster(tmp_path) as bank:
        node = bank.cluster.start_node("bank")

        def dapr(store: EventStore, retry: RetryPolicy) -> Executor:
            return DaprSekibanExecutor(bank_domain(), store, dapr_http_endpoint=node.http_endpoint)

        host = ("dapr", dapr, bank.store)
        # First: it counts every account in the store, answered by the projector actor.
        await contract.test_a_query_sees_every_command(host)
        await contract.test_a_command_round_trips_to_the_aggregate(host)
        await contract.test_an_aggregate_without_events_loads_at_version_zero(host)
        await contract.test_a_refused_command_names_its_error_and_appends_nothing(host)
        await contract.test_the_command_id_is_the_causation_id_of_its_events(host)
        await contract.test_a_command_id_that_contradicts_the_metadata_is_refused_before_sending(
            host
        )
        await contract.test_a_resent_command_id_is_applied_once(host)


SIGNING_ENV = {"SEKIBAN_SNAPSHOT_SIGNING_KEY": "k1:" + "s" * 32}


@pytest.mark.parametrize(
    ("env", "plant", "reason"),
    [
        (SIGNING_ENV, forged, RejectionReason.UNSIGNED),
        ({}, bomb, RejectionReason.TOO_LARGE),
        (SIGNING_ENV, bomb, RejectionReason.BAD_SIGNATURE),  # the genuine signature kept
    ],
    ids=["forged-signing-on", "bomb-signing-off", "bomb-signing-on"],
)
async def test_a_planted_snapshot_in_actor_state_is_refused_and_replaced(
    tmp_path: Path,
    env: dict[str, str],
    plant: Callable[[AggregateSnapshot], AggregateSnapshot],
    reason: RejectionReason,
) -> None:
    """Whoever can write the actor state (the Dapr state API with its token, or the
    state table) can choose neither the state an actor activates with nor its memory use."""
    async with bank_cluster(tmp_path, snapshot_count=5, extra_env=env) as bank:
        cluster, store = bank.cluster, bank.store
        keys = await open_account_with_deposits(bank, 11)
        node = cluster.nodes[0]
        stored = await actor_state_snapshot(bank, "bank", keys)
        assert stored is not None and stored["version"] == 10
        signed = "SEKIBAN_SNAPSHOT_SIGNING_KEY" in env
        assert (stored["signature"] or "").startswith("k1:") == signed

        node.app.kill()
        node.daprd.kill()
        planted = plant(AggregateSnapshot.from_json(json.dumps(stored)))
        await write_actor_state_snapshot(bank, "bank", keys, planted.to_json().decode())
        node = cluster.start_node("bank")
        executor = DaprSekibanExecutor(bank_domain(), store, dapr_http_endpoint=node.http_endpoint)
        loaded = await executor.load(AccountProjector, keys)
        rejection = loaded.statistics.rejection
        assert rejection is not None and rejection.reason is reason
        assert not loaded.statistics.from_snapshot
        assert loaded.aggregate.payload == ActiveAccount(owner="ann", balance=11, transactions=11)

        # The next command replaces the planted snapshot with a good one.
        await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
        replaced = await actor_state_snapshot(bank, "bank", keys)
        assert replaced is not None and replaced["version"] == 13
        assert (replaced["signature"] or "").startswith("k1:") == signed


async def write_actor_state_snapshot(
    bank: BankCluster, app_id: str, keys: PartitionKeys, document: str
) -> None:
    key = f"{app_id}||{DaprAggregateActor.__name__}||{actor_id_for('account', keys)}||snapshot"
    connection = await asyncpg.connect(bank.dsn)
    try:
        status = await connection.execute(
            f"UPDATE {bank.state_table} SET value = $2::jsonb WHERE key = $1", key, document
        )
    finally:
        await connection.close()
    assert status == "UPDATE 1"
