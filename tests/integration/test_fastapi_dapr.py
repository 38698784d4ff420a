"""sekiban.fastapi over DaprSekibanExecutor: actor refusals and an absent sidecar."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from examples.bank import bank_domain
from sekiban import Executor, RetryPolicy
from sekiban.dapr.executor import DaprSekibanExecutor
from sekiban.fastapi import sekiban_lifespan, sekiban_router
from sekiban.stores.memory import InMemoryEventStore
from tests.integration.dapr_support import bank_cluster

PROBLEM = "application/problem+json"


@asynccontextmanager
async def served(executor: Executor) -> AsyncIterator[httpx.AsyncClient]:
    """The generated routes over `executor`, in this event loop (the executor's store
    and HTTP session belong to it), with the lifespan run as the server would."""

    @asynccontextmanager
    async def open_executor() -> AsyncIterator[Executor]:
        yield executor

    app = FastAPI(lifespan=sekiban_lifespan(open_executor))
    app.include_router(sekiban_router(bank_domain()))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://bank") as client,
    ):
        yield client


@pytest.mark.dapr
async def test_actor_refusals_map_to_statuses_and_a_resend_is_answered_once(
    tmp_path: Path,
) -> None:
    async with bank_cluster(tmp_path) as bank:
        node = bank.cluster.start_node("bank")
        executor = DaprSekibanExecutor(
            bank_domain(), bank.store, dapr_http_endpoint=node.http_endpoint
        )
        async with served(executor) as client:
            opened = await client.post("/commands/open-account", json={"owner": "Ann"})
            assert opened.status_code == 200, opened.text
            account_id = opened.json()["partition_keys"]["aggregate_id"]

            deposit = {"account_id": account_id, "amount": 10}
            key = {"Idempotency-Key": f"deposit-{account_id}"}
            first = await client.post("/commands/deposit-money", json=deposit, headers=key)
            again = await client.post("/commands/deposit-money", json=deposit, headers=key)
            assert first.status_code == again.status_code == 200
            assert first.json() == again.json()
            assert again.json()["version"] == 2

            overdraft = {"account_id": account_id, "amount": 11}
            refused = await client.post("/commands/withdraw-money", json=overdraft)
            assert (refused.status_code, refused.headers["content-type"]) == (409, PROBLEM)
            assert refused.json()["error"] == "InsufficientFundsError"

            reopen = {"owner": "Bo", "account_id": account_id}
            state = await client.post("/commands/open-account", json=reopen)
            assert (state.status_code, state.json()["type"]) == (
                409,
                "urn:sekiban:problem:aggregate-state",
            )


async def test_an_absent_sidecar_is_503_with_the_command_id_to_resend() -> None:
    executor = DaprSekibanExecutor(
        bank_domain(),
        InMemoryEventStore(),
        dapr_http_endpoint="http://127.0.0.1:9",
        transient_retry=RetryPolicy.never(),
    )
    async with served(executor) as client:
        answer = await client.post(
            "/commands/open-account", json={"owner": "Ann"}, headers={"Idempotency-Key": "k-1"}
        )
    assert (answer.status_code, answer.headers["content-type"]) == (503, PROBLEM)
    body = answer.json()
    assert (body["type"], body["command_id"]) == ("urn:sekiban:problem:outcome-unknown", "k-1")
    assert answer.headers["Idempotency-Key"] == "k-1"
