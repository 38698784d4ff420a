"""examples/fastapi_bank.py served by a real uvicorn process, spoken to over HTTP."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
PROBLEM = "application/problem+json"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    """The example service on a free port, with a small payload limit to reach 413."""
    port = free_port()
    env = {
        **os.environ,
        "SEKIBAN_SQLITE_PATH": str(tmp_path / "bank.db"),
        "SEKIBAN_MAX_PAYLOAD_BYTES": "64",
    }
    # Its log goes to a file (a pipe nobody reads could fill and stall the server).
    log = (tmp_path / "uvicorn.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "examples.fastapi_bank:app", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture
async def http(service: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(service) as session:
        for _ in range(300):  # readiness: the OpenAPI document answers
            try:
                async with session.get("/openapi.json") as answer:
                    if answer.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
        else:
            pytest.fail(f"uvicorn did not answer on {service}")
        yield session


async def post(
    http: aiohttp.ClientSession, path: str, body: Any, **headers: str
) -> tuple[int, dict[str, Any], Any]:
    async with http.post(path, json=body, headers=headers) as answer:
        return answer.status, dict(answer.headers), await answer.json(content_type=None)


async def test_the_example_service_over_real_http(http: aiohttp.ClientSession) -> None:
    status, _, opened = await post(http, "/commands/open-account", {"owner": "Ann"})
    assert status == 200
    account_id = opened["partition_keys"]["aggregate_id"]
    deposit = {"account_id": account_id, "amount": 40}

    key = {"Idempotency-Key": f"deposit-{account_id}"}
    first = await post(http, "/commands/deposit-money", deposit, **key)
    again = await post(http, "/commands/deposit-money", deposit, **key)
    assert first[0] == again[0] == 200
    assert first[2] == again[2]
    assert first[2]["version"] == 2

    async with http.get("/queries/active-accounts-query", params={"min_balance": 1}) as answer:
        listed = await answer.json()
    assert [item["payload"]["balance"] for item in listed["items"]] == [40]  # appended once

    status, headers, problem = await post(
        http, "/commands/withdraw-money", {"account_id": account_id, "amount": 41}
    )
    assert (status, headers["Content-Type"], problem["error"]) == (
        409,
        PROBLEM,
        "InsufficientFundsError",
    )
    status, _, problem = await post(http, "/commands/deposit-money", {"amount": "lots"})
    assert (status, problem["type"]) == (422, "urn:sekiban:problem:validation")
    status, _, problem = await post(http, "/commands/open-account", {"owner": "x" * 90})
    assert (status, problem["error"]) == (413, "PayloadTooLargeError")

    async with http.get("/openapi.json") as answer:
        paths = (await answer.json())["paths"]
    assert {"/commands/open-account", "/queries/active-accounts-query"} <= set(paths)
