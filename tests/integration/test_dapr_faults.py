"""Dapr faults under traffic: sidecar and host restarts, and the API and app tokens."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from examples.bank import AccountProjector, DepositMoney, OpenAccount, bank_domain
from sekiban import PartitionKeys, SekibanExecutor
from sekiban.dapr.executor import DaprSekibanExecutor, DaprUnavailableError
from sekiban.dapr.sidecar import Node
from sekiban.stores.postgres import PostgresEventStore
from tests.conformance.backends import require_env
from tests.integration.dapr_support import bank_cluster

pytestmark = pytest.mark.dapr


async def traffic_through_fault(
    node: Node, store: PostgresEventStore, fault: Callable[[], None]
) -> tuple[int, int, int]:
    """4 clients send deposits to 8 accounts while `fault` runs; returns (acknowledged,
    failed, stored deposits) after checking that no command was applied twice."""
    executor = DaprSekibanExecutor(
        bank_domain(),
        store,
        dapr_http_endpoint=node.http_endpoint,
        transient_retries=12,
        retry_delay_seconds=0.1,
    )
    accounts = [
        (await executor.command(OpenAccount(owner=f"f{i}"))).partition_keys for i in range(8)
    ]
    acknowledged = failed = 0
    stop_at = time.monotonic() + 6

    async def client(offset: int) -> None:
        nonlocal acknowledged, failed
        i = offset
        while time.monotonic() < stop_at:
            keys = accounts[i % len(accounts)]
            i += 1
            try:
                await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
                acknowledged += 1
            except DaprUnavailableError as error:
                failed += 1
                print(f"failed after retries: {error}")

    async def inject() -> None:
        await asyncio.sleep(1.5)
        await asyncio.to_thread(fault)

    await asyncio.gather(inject(), *(client(c) for c in range(4)))
    stored = 0
    for keys in accounts:
        events = [e async for b in store.read_stream(keys) for e in b]
        assert [e.version for e in events] == list(range(1, len(events) + 1))
        causes = [e.causation_id for e in events]
        assert len(set(causes)) == len(causes), "a command was applied twice"
        stored += len(events) - 1
        aggregate = await SekibanExecutor(bank_domain(), store).load_aggregate(
            AccountProjector, keys
        )
        assert aggregate.payload.balance == len(events) - 1  # type: ignore[attr-defined]
    # Every acknowledged deposit is stored; a failed call may or may not have landed.
    assert acknowledged <= stored <= acknowledged + failed, (acknowledged, failed, stored)
    return acknowledged, failed, stored


@pytest.mark.parametrize("restart", ["daprd", "app"])
async def test_restart_during_traffic_loses_and_repeats_nothing(
    restart: str, tmp_path: Path
) -> None:
    dsn = require_env("SEKIBAN_POSTGRES_DSN")
    with bank_cluster(tmp_path) as (cluster, schema):
        node = cluster.start_node("faults")
        store = await PostgresEventStore.connect(dsn, schema=schema)
        try:
            fault = node.restart_daprd if restart == "daprd" else node.restart_app
            acknowledged, failed, stored = await traffic_through_fault(node, store, fault)
            assert acknowledged > 100, (acknowledged, failed, stored)
            print(
                f"{restart} restart: {acknowledged} acknowledged, {failed} failed, {stored} stored"
            )
        finally:
            await store.drop_schema()
            await store.close()


async def test_api_and_app_tokens_are_required_when_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dapr.conf import settings

    dsn = require_env("SEKIBAN_POSTGRES_DSN")
    tokens = {"DAPR_API_TOKEN": "api-secret", "APP_API_TOKEN": "app-secret"}
    with bank_cluster(tmp_path, extra_env=tokens) as (cluster, schema):
        node = cluster.start_node("tokens")
        store = await PostgresEventStore.connect(dsn, schema=schema)
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                # The app refuses callers without daprd's app token ...
                keys = PartitionKeys.generate("account")
                url = (
                    f"http://127.0.0.1:{node.app_port}/actors/DaprAggregateActor/"
                    f"account:{keys}/method/LoadAggregate"
                )
                assert (await client.put(url)).status_code == 401
                # ... and daprd refuses API callers without the API token.
                metadata = f"{node.http_endpoint}/v1.0/metadata"
                assert (await client.get(metadata)).status_code == 401
                ok = await client.get(metadata, headers={"dapr-api-token": "api-secret"})
                assert ok.status_code == 200

            monkeypatch.setattr(settings, "DAPR_API_TOKEN", None)
            anonymous = DaprSekibanExecutor(
                bank_domain(), store, dapr_http_endpoint=node.http_endpoint, transient_retries=0
            )
            with pytest.raises(DaprUnavailableError):
                await anonymous.command(OpenAccount(owner="nobody"))

            monkeypatch.setattr(settings, "DAPR_API_TOKEN", "api-secret")
            trusted = DaprSekibanExecutor(
                bank_domain(), store, dapr_http_endpoint=node.http_endpoint
            )
            response = await trusted.command(OpenAccount(owner="somebody"))
            assert response.version == 1
        finally:
            await store.drop_schema()
            await store.close()
