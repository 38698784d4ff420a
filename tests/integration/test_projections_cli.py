"""`sekiban projections run` as a process on every store that outlives one: killed
(SIGKILL) in the middle of a catch-up, stopped (SIGTERM) in the middle of one, then run
to the head; the final state is a full replay, with no event applied twice."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sekiban import PartitionKeys
from sekiban.projections import Projections
from sekiban.stores import open_store
from tests.conformance.backends import cosmos_url, postgres_url
from tests.runner_domain import GROUP, AppliedEvents, all_ids, deposits, domain
from tests.support import repository_env

ROOT = Path(__file__).resolve().parents[2]
EVENTS = {"sqlite": 20_000, "postgres": 20_000, "cosmos": 6_000}
PER_APPEND = 100


@pytest.fixture(params=sorted(EVENTS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[str, int]]:
    """A store URL on fresh storage, and how many events to seed in it."""
    kind = request.param
    url = {
        "sqlite": lambda: f"sqlite:///{tmp_path / 'events.db'}",
        "postgres": postgres_url,
        "cosmos": cosmos_url,
    }[kind]()
    yield url, EVENTS[kind]
    async with await open_store(url) as stores:
        drop = getattr(stores.events, "drop_schema", None) or getattr(stores.events, "drop", None)
        if drop is not None:
            await drop()


def sekiban(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "sekiban.cli", *arguments]


def start_runner(url: str) -> subprocess.Popen[bytes]:
    command = sekiban(
        "projections",
        "run",
        "--store",
        url,
        "--domain",
        "tests.runner_domain:domain",
        "--projector",
        AppliedEvents.name,
        "--persist-every",
        "500",
        "--poll-interval",
        "0.05",
        "--max-backoff",
        "0.5",
    )
    return subprocess.Popen(command, cwd=ROOT, env=repository_env(), stdout=subprocess.PIPE)


async def seed(url: str, count: int) -> int:
    """`count` deposits in appends of PER_APPEND; the position of the last."""
    async with await open_store(url) as stores:
        keys = PartitionKeys.generate(GROUP)
        for first in range(1, count + 1, PER_APPEND):
            await stores.events.append(deposits(keys, first, [1] * PER_APPEND), first - 1)
        last = [e async for batch in stores.events.read_all(0) for e in batch][-1]
        assert last.position is not None
        return last.position


async def checkpoint(url: str) -> int:
    async with await open_store(url) as stores:
        record = await stores.projections.get(AppliedEvents.name)
        return 0 if record is None else record.position


async def wait_for_checkpoint(url: str, process: subprocess.Popen[bytes], above: int) -> int:
    """The first checkpoint seen above `above` (the process must still be running)."""
    async with asyncio.timeout(300):
        while True:
            assert process.poll() is None, "the runner exited"
            position = await checkpoint(url)
            if position > above:
                return position
            await asyncio.sleep(0.01)


def finish(process: subprocess.Popen[bytes], signum: int) -> int:
    process.send_signal(signum)
    return process.wait(timeout=120)


async def test_killed_stopped_and_restarted_the_runner_ends_with_a_full_replay(
    store: tuple[str, int],
) -> None:
    url, count = store
    head = await seed(url, count)

    killed = start_runner(url)
    at_kill = await wait_for_checkpoint(url, killed, 0)
    assert at_kill < head, "caught up before it could be killed: seed more events"
    killed.kill()  # SIGKILL: no chance to save
    killed.wait(timeout=60)

    stopped = start_runner(url)
    at_stop = await wait_for_checkpoint(url, stopped, at_kill)
    assert at_stop < head, "caught up before it could be stopped: seed more events"
    assert finish(stopped, signal.SIGTERM) == 0
    assert at_stop <= await checkpoint(url) < head

    last = start_runner(url)
    await wait_for_checkpoint(url, last, head - 1)
    assert finish(last, signal.SIGTERM) == 0
    # At the head, or past it: on PostgreSQL a grouped projection's position moves to
    # what the server has scanned, beyond the last event.
    assert await checkpoint(url) >= head

    projection, replayed = await _final_state(url)
    assert projection.state == replayed
    assert len(set(projection.state)) == len(projection.state) == count
    assert projection.events_applied == count


async def _final_state(url: str) -> Any:
    async with await open_store(url) as stores:
        manager = Projections(domain(), stores.events, stores.projections)
        projection = await manager.projection(AppliedEvents)
        return projection, await all_ids(stores.events)
