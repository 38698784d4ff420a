"""A projection save SIGKILLed at any moment leaves a whole record: the one saved before
it or the one being saved, never a mix, never a head without its chunks (Cosmos DB)."""

from __future__ import annotations

import asyncio
import hashlib
import random
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sekiban.stores import open_store
from tests.conformance.backends import cosmos_url, postgres_url
from tests.integration.projection_save_driver import NAME, payload_at
from tests.support import repository_env

ROOT = Path(__file__).resolve().parents[2]
KILLS = 5
URLS: dict[str, Callable[[Path], str]] = {
    "sqlite": lambda tmp_path: f"sqlite:///{tmp_path / 'events.db'}",
    "postgres": lambda tmp_path: postgres_url(),
    "cosmos": lambda tmp_path: cosmos_url(),
}


async def save_until_killed(url: str, first: int, delay: float) -> int:
    """Run the driver from position `first`; once one save has returned, SIGKILL it
    `delay` seconds later. Returns the last position it reported saved."""
    driver = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.projection_save_driver",
        url,
        str(first),
        cwd=ROOT,
        env=repository_env(),
        stdout=asyncio.subprocess.PIPE,
    )
    assert driver.stdout is not None
    saved = first - 1
    try:
        while saved < first:
            line = await asyncio.wait_for(driver.stdout.readline(), 60)
            assert line, "the driver ended before saving"
            word, position = line.split()
            if word == b"SAVED":
                saved = int(position)
        await asyncio.sleep(delay)
    finally:
        driver.send_signal(signal.SIGKILL)
        rest = await driver.stdout.read()
        await driver.wait()
    for line in rest.split(b"\n")[:-1]:  # complete lines only: the kill may cut one
        word, position = line.split()
        if word == b"SAVED":
            saved = int(position)
    assert driver.returncode == -signal.SIGKILL
    return saved


@pytest.mark.parametrize("backend", sorted(URLS))
async def test_a_save_killed_at_any_moment_leaves_a_whole_record(
    backend: str, tmp_path: Path
) -> None:
    url = URLS[backend](tmp_path)
    delays = random.Random(18)
    stored = 0
    try:
        for _ in range(KILLS):
            saved = await save_until_killed(url, stored + 1, delays.uniform(0, 0.4))
            async with await open_store(url) as stores:
                record = await stores.projections.get(NAME)
            assert record is not None and record.payload is not None
            assert saved <= record.position <= saved + 1, "a returned save was lost"
            assert record.payload == payload_at(record.position)
            assert hashlib.sha256(record.payload).hexdigest() == record.sha256
            stored = record.position
    finally:
        async with await open_store(url) as stores:
            drop = getattr(stores.events, "drop_schema", None) or getattr(
                stores.events, "drop", None
            )
            if drop is not None:
                await drop()
