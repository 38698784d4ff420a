"""Leases: which of several processes runs a subscriber (a projection, a reaction).

A service runs several replicas, and each starts the same runners. Without a lease each
replica would catch up every projection and run every reaction; the results stay right
(checkpoints keep the newest, commands are applied once, outbox effects are recorded
once) but the work and the deliveries are multiplied. With leases one replica runs each
subscriber and the others stand by, taking over when the holder's lease ends.

A lease ends with its holder: a process that dies, however, lets its leases go at once
(a file lock the kernel drops, a PostgreSQL session the server ends), so no timeout has
to pass before another replica takes over. A lease is an economy, not a guarantee of
exclusivity: a holder cut off from the database may keep working for a moment after the
server let its lease go, and everything a subscriber does stays safe to do twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from sekiban.errors import StoreError


class Lease(Protocol):
    """One name held by this process until `release` or the process ends."""

    @property
    def name(self) -> str: ...

    async def held(self) -> bool:
        """Whether this process still holds it (False once lost, e.g. with the
        database session that held it)."""
        ...

    async def release(self) -> None:
        """Let it go (at once, for another process to take)."""
        ...


@runtime_checkable
class LeaseProvider(Protocol):
    """Optional for event stores: exclusive leases by name among the processes that use
    the same store (memory: one process; SQLite: one file, one host; PostgreSQL: one
    database)."""

    async def try_lease(self, name: str) -> Lease | None:
        """The lease on `name` when no other holder has it, else None at once."""
        ...


class LocalLeases:
    """Leases among the runners of one process (for the in-memory store)."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    async def try_lease(self, name: str) -> Lease | None:
        if name in self._held:
            return None
        self._held.add(name)
        return _LocalLease(name, self._held)


class _LocalLease:
    def __init__(self, name: str, held: set[str]) -> None:
        self.name, self._held, self._released = name, held, False

    async def held(self) -> bool:
        return not self._released

    async def release(self) -> None:
        if not self._released:
            self._released = True
            self._held.discard(self.name)


class FileLeases:
    """Leases as exclusive `flock` locks on files beside a database file: the kernel
    drops them when the process ends, however it ends. Every process on the host that
    opens the same database shares them (POSIX file locks; SQLite's store)."""

    def __init__(self, database: str | Path) -> None:
        self._prefix = f"{database}.lease-"

    def path_of(self, name: str) -> str:
        # Names may hold any character: the file is named by a digest of the name.
        return self._prefix + hashlib.sha256(name.encode()).hexdigest()[:24]

    async def try_lease(self, name: str) -> Lease | None:
        """Raises `StoreError` when the lease file cannot be opened or locked (a
        directory that is not writable, no file descriptors left)."""
        path = self.path_of(name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise StoreError(f"cannot open the lease file {path}: {error}") from error
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as error:
            os.close(fd)
            raise StoreError(f"cannot lock the lease file {path}: {error}") from error
        return _FileLease(name, fd)


class _FileLease:
    def __init__(self, name: str, fd: int) -> None:
        self.name, self._fd = name, fd

    async def held(self) -> bool:
        return self._fd >= 0

    async def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)  # closing the only descriptor drops the lock
