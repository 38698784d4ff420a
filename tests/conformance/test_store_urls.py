"""Every store opened by URL, as users and `SekibanSettings` open them, runs commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.bank import AccountProjector, DepositMoney, OpenAccount, bank_domain
from sekiban import SekibanExecutor
from sekiban.settings import SekibanSettings
from sekiban.snapshot import SnapshotConfiguration
from sekiban.stores import Stores, open_store
from sekiban.stores.cosmos import CosmosEventStore
from sekiban.stores.postgres import PostgresEventStore
from tests.conformance.backends import cosmos_url, postgres_url


def url_for(name: str, tmp_path: Path) -> str:
    return {
        "memory": lambda: "memory://",
        "sqlite": lambda: f"sqlite:///{tmp_path / 'events.db'}",
        "sqlite-in-memory": lambda: "sqlite:///:memory:",
        "postgres": postgres_url,
        "cosmos": cosmos_url,
    }[name]()


async def drop(stores: Stores) -> None:
    if isinstance(stores.events, PostgresEventStore):
        await stores.events.drop_schema()
    elif isinstance(stores.events, CosmosEventStore):
        await stores.events.drop()


@pytest.mark.parametrize("name", ["memory", "sqlite", "sqlite-in-memory", "postgres", "cosmos"])
async def test_a_store_opened_by_url_runs_commands_and_snapshots(name: str, tmp_path: Path) -> None:
    async with await open_store(url_for(name, tmp_path)) as stores:
        try:
            executor = SekibanExecutor(
                bank_domain(),
                stores.events,
                snapshot_store=stores.snapshots,
                snapshot_config=SnapshotConfiguration(count_threshold=2),
            )
            keys = (await executor.command(OpenAccount(owner="alice"))).partition_keys
            await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=5))
            aggregate = await executor.load_aggregate(AccountProjector, keys)
            assert aggregate.version == 2
            assert await stores.snapshots.get(keys, AccountProjector.name) is not None
        finally:
            await drop(stores)


@pytest.mark.parametrize("name", ["sqlite", "postgres", "cosmos"])
async def test_settings_open_the_store_their_url_names(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEKIBAN_STORE_URL", url_for(name, tmp_path))
    settings = SekibanSettings()
    async with await settings.open_store() as stores:
        try:
            executor = SekibanExecutor(
                bank_domain(),
                stores.events,
                snapshot_store=stores.snapshots,
                snapshot_config=settings.snapshot_configuration(),
                conflict_retry=settings.conflict_retry(),
                limits=settings.command_limits(),
            )
            response = await executor.command(OpenAccount(owner="bob"))
            assert response.version == 1
        finally:
            await drop(stores)
