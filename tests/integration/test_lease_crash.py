"""A process killed with SIGKILL lets its leases go at once: another process takes the
name without waiting for any timeout (SQLite: the kernel drops the file lock;
PostgreSQL: the server ends the session)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from sekiban.stores import open_store
from sekiban.stores.leases import LeaseProvider
from tests.conformance.backends import postgres_url
from tests.support import repository_env

ROOT = Path(__file__).resolve().parents[2]
URLS: dict[str, Callable[[Path], str]] = {
    "sqlite": lambda tmp_path: f"sqlite:///{tmp_path / 'events.db'}",
    "postgres": lambda tmp_path: postgres_url(),
}


@pytest.mark.parametrize("backend", list(URLS))
async def test_the_lease_of_a_killed_process_is_taken_by_another_at_once(
    backend: str, tmp_path: Path
) -> None:
    url = URLS[backend](tmp_path)
    name = f"reaction:crash-{os.getpid()}-{backend}"
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.integration.lease_holder",
        url,
        name,
        cwd=ROOT,
        env=repository_env(),
        stdout=asyncio.subprocess.PIPE,
    )
    assert holder.stdout is not None
    try:
        assert await asyncio.wait_for(holder.stdout.readline(), 60) == b"held\n"
        async with await open_store(url) as stores:
            leases = stores.events
            assert isinstance(leases, LeaseProvider)
            assert await leases.try_lease(name) is None

            holder.send_signal(signal.SIGKILL)
            await holder.wait()
            lease = None
            for _ in range(200):  # the server notices the closed socket in a moment
                lease = await leases.try_lease(name)
                if lease is not None:
                    break
                await asyncio.sleep(0.05)
            assert lease is not None and await lease.held()
            await lease.release()
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def test_a_postgres_lease_whose_session_is_ended_is_lost_and_can_be_taken_again(
    tmp_path: Path,
) -> None:
    import asyncpg

    from sekiban.stores.postgres.leases import PostgresLease

    url = postgres_url()
    async with await open_store(url) as stores:
        leases = stores.events
        assert isinstance(leases, LeaseProvider)
        lease = await leases.try_lease("projection:terminated")
        assert isinstance(lease, PostgresLease) and await lease.held()
        admin = await asyncpg.connect(os.environ["SEKIBAN_POSTGRES_DSN"])
        try:
            pid = lease.connection.get_server_pid()
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            for _ in range(500):  # the signal is asynchronous: wait for the session to end
                if not await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
                ):
                    break
                await asyncio.sleep(0.01)
        finally:
            await admin.close()
        assert not await lease.held()  # the server let it go with the session
        again = await leases.try_lease("projection:terminated")
        assert again is not None and await again.held()
        await again.release()
