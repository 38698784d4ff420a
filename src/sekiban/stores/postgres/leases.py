"""Leases on PostgreSQL: session advisory locks on one connection of the store's own.

A lease is `pg_try_advisory_lock` on a connection opened for leases alone (a pooled
connection would hand the lock to whoever borrows it next). The server ends the session,
and with it every lease, when the process dies or the connection is lost: `held` then
answers False, and another process can take the names at once.
"""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from typing import Any

import asyncpg

from sekiban.stores.leases import Lease
from sekiban.stores.postgres.faults import translate_faults

LEASE_LOCK_CLASS = 0x5E4B
"""The first key of every lease's advisory lock (the second is the name's hash), apart
from the writer lock's class."""


_SESSION_GONE = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
CHECK_EVERY = 0.5
"""Seconds a successful check of the lease connection answers `held` for."""
CHECK_TIMEOUT = 5.0
"""Seconds a check may take before the connection counts as lost."""


class PostgresLeases:
    """The leases of one store: one connection, opened on the first lease."""

    def __init__(self, dsn: str, namespace: str, where: str) -> None:
        self._dsn, self._namespace, self._where = dsn, namespace, where
        self._connection: Any = None
        self._lock = asyncio.Lock()  # one statement at a time on the connection
        self._held: dict[str, PostgresLease] = {}
        self._checked_at = -CHECK_EVERY

    async def try_lease(self, name: str) -> Lease | None:
        async with self._lock:
            # The session holds it already: advisory locks are re-entrant in a session,
            # and a second runner of this process must not get it.
            if name in self._held and not self._held[name].lost:
                return None
            connection = await self._open()
            with translate_faults(self._where):
                taken = await connection.fetchval(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))",
                    LEASE_LOCK_CLASS,
                    f"{self._namespace}:{name}",
                )
            if not taken:
                return None
            lease = PostgresLease(self, name, connection)
            self._held[name] = lease
            return lease

    async def _open(self) -> Any:
        if self._connection is not None and not self._connection.is_closed():
            return self._connection
        # A new session holds none of the old one's locks: those leases are lost.
        for lease in self._held.values():
            lease.lost = True
        self._held.clear()
        with translate_faults(self._where):
            self._connection = await asyncpg.connect(self._dsn)
        return self._connection

    async def _alive(self, connection: Any) -> bool:
        async with self._lock:
            if connection is not self._connection or connection.is_closed():
                return False
            # Runners ask before every round, for every subscriber: one round trip per
            # CHECK_EVERY seconds answers them all.
            if time.monotonic() - self._checked_at < CHECK_EVERY:
                return True
            try:
                await connection.fetchval("SELECT 1", timeout=CHECK_TIMEOUT)
            except (*_SESSION_GONE, TimeoutError):
                # Over, or unreachable (a partition): no longer ours to count on.
                connection.terminate()
                return False
            self._checked_at = time.monotonic()
            return True

    async def _release(self, lease: PostgresLease) -> None:
        async with self._lock:
            if self._held.get(lease.name) is not lease:
                return
            del self._held[lease.name]
            # A session that is gone holds nothing to unlock.
            with suppress(*_SESSION_GONE):
                await lease.connection.fetchval(
                    "SELECT pg_advisory_unlock($1, hashtext($2))",
                    LEASE_LOCK_CLASS,
                    f"{self._namespace}:{lease.name}",
                )

    async def close(self) -> None:
        """Close the lease connection: every lease it holds ends."""
        async with self._lock:
            for lease in self._held.values():
                lease.lost = True
            self._held.clear()
            if self._connection is not None:
                connection, self._connection = self._connection, None
                try:
                    await connection.close(timeout=1)
                except (*_SESSION_GONE, TimeoutError):
                    connection.terminate()  # gone already, or not answering: drop it


class PostgresLease:
    def __init__(self, leases: PostgresLeases, name: str, connection: Any) -> None:
        self.name, self.connection, self.lost = name, connection, False
        self._leases = leases

    async def held(self) -> bool:
        if self.lost:
            return False
        if not await self._leases._alive(self.connection):
            self.lost = True
        return not self.lost

    async def release(self) -> None:
        if not self.lost:
            self.lost = True
            await self._leases._release(self)
