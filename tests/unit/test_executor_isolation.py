"""No process-wide state: differently configured executors in one process never meet."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from aiohttp import web

from examples.bank import AccountProjector, DepositMoney, OpenAccount, bank_domain
from sekiban import DaprUnavailableError, PartitionKeys, RetryPolicy, SekibanExecutor
from sekiban.core.serialization import Serializer
from sekiban.dapr import messages
from sekiban.dapr.executor import DaprSekibanExecutor
from sekiban.snapshot import SnapshotConfiguration, SnapshotContext
from sekiban.stores import InMemoryEventStore, InMemorySnapshotStore


class Always:
    def should_snapshot(self, context: SnapshotContext) -> bool:
        return True


async def test_two_executors_with_different_snapshot_strategies_keep_their_own() -> None:
    eager = SekibanExecutor(
        bank_domain(),
        snapshot_store=InMemorySnapshotStore(),
        snapshot_config=SnapshotConfiguration(
            strategy="eager", strategies={"eager": lambda c: Always()}
        ),
    )
    lazy = SekibanExecutor(
        bank_domain(),
        snapshot_store=InMemorySnapshotStore(),
        snapshot_config=SnapshotConfiguration(strategy="count", count_threshold=100),
    )
    for executor in (eager, lazy):
        keys = (await executor.command(OpenAccount(owner="ann"))).partition_keys
        for _ in range(3):
            await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
    assert (eager.snapshots.taken, lazy.snapshots.taken) == (4, 0)


@dataclass
class FakeSidecar:
    """A daprd stand-in on a loopback port: records actor calls, answers as told."""

    status: int
    body: bytes
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    endpoint: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        token = request.headers.get("dapr-api-token", "")
        self.calls.append((request.method, request.path, token))
        return web.Response(status=self.status, body=self.body)


@asynccontextmanager
async def sidecar(status: int, body: bytes) -> AsyncIterator[FakeSidecar]:
    fake = FakeSidecar(status, body)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.endpoint = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


def sdk_globals() -> dict[str, object]:
    from dapr.conf import settings

    names = ["DAPR_HTTP_ENDPOINT", "DAPR_API_TOKEN", "DAPR_HTTP_PORT", "DAPR_RUNTIME_HOST"]
    return {name: getattr(settings, name) for name in names}


async def test_two_dapr_executors_use_their_own_sidecar_token_and_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAPR_API_TOKEN", "from-environment")
    keys = PartitionKeys.generate("account")
    empty = await SekibanExecutor(bank_domain()).load(AccountProjector, keys)
    reply = messages.aggregate_reply(Serializer(bank_domain()), empty).encode()
    failure = json.dumps({"errorCode": "ERR_ACTOR_RUNTIME_NOT_FOUND", "message": "no"}).encode()
    before = sdk_globals()

    async with sidecar(200, reply) as good, sidecar(500, failure) as bad:
        healthy = DaprSekibanExecutor(
            bank_domain(), InMemoryEventStore(), dapr_http_endpoint=good.endpoint, api_token="a"
        )
        failing = DaprSekibanExecutor(
            bank_domain(),
            InMemoryEventStore(),
            dapr_http_endpoint=bad.endpoint + "/",
            transient_retry=RetryPolicy(attempts=2, base_delay=timedelta(0)),
        )
        loaded = await healthy.load(AccountProjector, keys)
        with pytest.raises(DaprUnavailableError) as unavailable:
            await failing.load(AccountProjector, keys)

    assert loaded.aggregate.version == 0
    path = f"/v1.0/actors/DaprAggregateActor/account:{keys}/method/LoadAggregate"
    assert good.calls == [("PUT", path, "a")]
    assert bad.calls == [("PUT", path, "from-environment")] * 2
    message = str(unavailable.value)
    assert bad.endpoint in message and good.endpoint not in message
    assert "HTTP 500" in message and "ERR_ACTOR_RUNTIME_NOT_FOUND" in message
    assert "failed 2 times" in message
    assert sdk_globals() == before


async def test_an_unreachable_sidecar_is_named_in_the_error() -> None:
    async with sidecar(200, b"") as gone:
        endpoint = gone.endpoint
    executor = DaprSekibanExecutor(
        bank_domain(),
        InMemoryEventStore(),
        dapr_http_endpoint=endpoint,
        transient_retry=RetryPolicy.never(),
    )
    with pytest.raises(DaprUnavailableError, match="no Dapr sidecar answers") as raised:
        await executor.command(OpenAccount(owner="x"), command_id="open-x")
    assert endpoint in str(raised.value)
    assert "command_id='open-x'" in str(raised.value)
