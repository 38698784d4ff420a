"""Dapr faults under traffic: sidecar and host restarts, and the API and app tokens."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from examples.bank import AccountProjector, DepositMoney, OpenAccount, bank_domain
from sekiban import CommandResponse, PartitionKeys, RetryPolicy, SekibanExecutor, Serializer
from sekiban.dapr.executor import DaprSekibanExecutor
from sekiban.errors import DaprUnavailableError
from sekiban.stores import InMemoryEventStore
from sekiban.stores.postgres import PostgresEventStore
from sekiban.testing.sidecar import DaprCluster, Node, in_memory_actor_state_component
from tests.integration import cut_reply_host
from tests.integration.dapr_support import bank_cluster, dapr_binaries

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
        transient_retry=RetryPolicy(attempts=13, base_delay=timedelta(milliseconds=100)),
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


async def put(client: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with client.put(url, data=b"") as response:
        return response.status, await response.read()


@pytest.mark.parametrize("restart", ["daprd", "app"])
async def test_restart_during_traffic_loses_and_repeats_nothing(
    restart: str, tmp_path: Path
) -> None:
    async with bank_cluster(tmp_path) as bank:
        cluster, store = bank.cluster, bank.store
        node = cluster.start_node("faults")
        fault = node.restart_daprd if restart == "daprd" else node.restart_app
        acknowledged, failed, stored = await traffic_through_fault(node, store, fault)
        assert acknowledged > 100, (acknowledged, failed, stored)
        print(f"{restart} restart: {acknowledged} acknowledged, {failed} failed, {stored} stored")


def restart_when_dead(node: Node, timeout: float = 60) -> None:
    """Wait for the actor host to exit by itself, then start it again."""
    deadline = time.monotonic() + timeout
    while node.app.running:
        if time.monotonic() > deadline:
            raise TimeoutError("the actor host did not exit")
        time.sleep(0.05)
    node.restart_app()


async def test_a_reply_lost_after_the_commit_is_applied_once_and_answered_on_retry(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    markers = tmp_path / "died"
    markers.mkdir()
    env = {
        "SEKIBAN_LOSE_REPLY_PREFIX": "lose-",
        "SEKIBAN_DIE_AFTER_COMMIT_PREFIX": "die-",
        "SEKIBAN_DIE_MARKERS": str(markers),
    }
    target = "tests.integration.lost_reply_host:app"
    async with bank_cluster(tmp_path, extra_env=env, app_target=target) as bank:
        node = bank.cluster.start_node("lossy")
        executor = DaprSekibanExecutor(
            bank_domain(),
            bank.store,
            dapr_http_endpoint=node.http_endpoint,
            transient_retry=RetryPolicy(
                attempts=40, base_delay=timedelta(milliseconds=100), max_delay=timedelta(seconds=1)
            ),
        )
        keys = (await executor.command(OpenAccount(owner="ann"), command_id="open")).partition_keys
        deposit = DepositMoney(account_id=keys.aggregate_id, amount=5)

        # The store's reply to the actor is lost: the actor's retry finds the commit.
        lost_in_actor = await executor.command(deposit, command_id="lose-1")
        assert await executor.command(deposit, command_id="lose-1") == lost_in_actor

        # The host dies right after the commit, and the caller's reply with it: the
        # executor retries through daprd until the restarted host answers.
        restarter = asyncio.create_task(asyncio.to_thread(restart_when_dead, node))
        caplog.clear()
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="sekiban.dapr"):
            lost_with_host = await executor.command(deposit, command_id="die-1")
        await restarter
        print(
            f"host died after the commit: answered after {len(caplog.records)} failed "
            f"attempts, {time.monotonic() - started:.1f} s"
        )
        assert (markers / "die-1").exists()
        assert await executor.command(deposit, command_id="die-1") == lost_with_host

        events = [e async for batch in bank.store.read_stream(keys) for e in batch]
        assert [e.causation_id for e in events] == ["open", "lose-1", "die-1"]
        serializer = Serializer(bank_domain())
        for response, event in ((lost_in_actor, events[1]), (lost_with_host, events[2])):
            assert response == CommandResponse(keys, (serializer.to_event(event),), event.version)
        aggregate = await executor.load_aggregate(AccountProjector, keys)
        assert aggregate.payload.balance == 10  # type: ignore[attr-defined]


async def test_api_and_app_tokens_are_required_when_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = {"DAPR_API_TOKEN": "api-secret", "APP_API_TOKEN": "app-secret"}
    async with bank_cluster(tmp_path, extra_env=tokens) as bank:
        cluster, store = bank.cluster, bank.store
        node = cluster.start_node("tokens")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as client:
            # The app refuses callers without daprd's app token ...
            keys = PartitionKeys.generate("account")
            url = (
                f"http://127.0.0.1:{node.app_port}/actors/DaprAggregateActor/"
                f"account:{keys}/method/LoadAggregate"
            )
            async with client.put(url) as refused:
                assert refused.status == 401
            # ... and daprd refuses API callers without the API token.
            metadata = f"{node.http_endpoint}/v1.0/metadata"
            async with client.get(metadata) as refused:
                assert refused.status == 401
            async with client.get(metadata, headers={"dapr-api-token": "api-secret"}) as ok:
                assert ok.status == 200

        anonymous = DaprSekibanExecutor(
            bank_domain(),
            store,
            dapr_http_endpoint=node.http_endpoint,
            api_token="",
            transient_retry=RetryPolicy.never(),
        )
        with pytest.raises(DaprUnavailableError, match="HTTP 401"):
            await anonymous.command(OpenAccount(owner="nobody"))

        # Two executors with different tokens in one process: each sends its own.
        trusted = DaprSekibanExecutor(
            bank_domain(), store, dapr_http_endpoint=node.http_endpoint, api_token="api-secret"
        )
        response = await trusted.command(OpenAccount(owner="somebody"))
        assert response.version == 1
        monkeypatch.setenv("DAPR_API_TOKEN", "api-secret")
        from_environment = DaprSekibanExecutor(
            bank_domain(), store, dapr_http_endpoint=node.http_endpoint
        )
        assert (await from_environment.command(OpenAccount(owner="env"))).version == 1


async def test_daprd_passes_on_a_reply_cut_by_a_dying_host_as_a_success(
    tmp_path: Path,
) -> None:
    """daprd, not the host, turns a dropped connection into status 200 with a cut body;
    the executor treats that as a fault whose outcome is unknown."""
    component = in_memory_actor_state_component("actorstate")
    app_target = "tests.integration.cut_reply_host:app"
    with DaprCluster(tmp_path, app_target, component, binaries=dapr_binaries()) as cluster:
        node = cluster.start_node("cut")
        keys = PartitionKeys.generate("account")
        url = (
            f"{node.http_endpoint}/v1.0/actors/DaprAggregateActor/"
            f"account:{keys}/method/LoadAggregate"
        )
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as client:
            status, content = await put(client, url)
            deadline = time.monotonic() + 20
            while status >= 500 and time.monotonic() < deadline:
                # Placement has not yet told daprd where the actor type lives.
                await asyncio.sleep(0.2)
                status, content = await put(client, url)
        assert status == 200
        assert content == cut_reply_host.PARTIAL_BODY
        assert len(content) < cut_reply_host.DECLARED_LENGTH

        executor = DaprSekibanExecutor(
            bank_domain(),
            InMemoryEventStore(),
            dapr_http_endpoint=node.http_endpoint,
            transient_retry=RetryPolicy(attempts=3, base_delay=timedelta(milliseconds=50)),
        )
        with pytest.raises(DaprUnavailableError, match="outcome is unknown"):
            await executor.command(OpenAccount(owner="x"))
        with pytest.raises(DaprUnavailableError, match="incomplete reply"):
            await executor.load(AccountProjector, keys)
