"""The connections to one SQLite file: statements on the event loop, or on a worker
thread while a WAL checkpoint runs there or another writer holds the lock."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any, TypeVar

from sekiban.errors import ConfigurationError, StoreConnectionError
from sekiban.stores.sqlite.faults import is_busy
from sekiban.stores.sqlite.schema import create_schema

T = TypeVar("T")

CHECKPOINT_EVERY = 200
"""Rows written on the loop's connection between two checkpoints on the worker thread:
at 2.5-5.5 WAL pages per commit, about SQLite's own 1,000-page auto-checkpoint."""
SYNCHRONOUS = ("NORMAL", "FULL", "EXTRA")
"""The `synchronous` levels a store may run at (WAL mode); docs/performance.md says what
each risks. OFF is not offered: a power loss could corrupt the file."""


class Locked(Exception):
    """Internal: the loop's connection cannot run a statement now (another writer holds
    the lock, or a checkpoint runs on the worker thread); `run_here` wrote nothing: run
    it on the worker thread instead (`run_waiting`)."""


class Database:
    """Two connections to one database file.

    Statements run directly on the event loop's connection, which never waits for a
    lock (`busy_timeout=0`): a local SQLite statement takes microseconds, less than a
    hop to a thread. When another connection or process holds the write lock, the
    statement fails at once with SQLITE_BUSY, before changing anything, and is run again
    on a worker thread whose connection waits for the lock, up to `busy_timeout`. An
    in-memory database has a single connection (a second one would be another database).

    The loop's connection never checkpoints the WAL (`wal_autocheckpoint=0`): SQLite's
    automatic checkpoint runs inside the commit that crosses 1,000 pages and copies them
    into the database file with an fsync, milliseconds to tens of milliseconds that
    would stall every task. Every `CHECKPOINT_EVERY` rows written, a PASSIVE checkpoint
    runs on the worker thread instead (sqlite3 releases the GIL while it works), and
    until it has finished every statement runs on the worker thread behind it: the loop
    never waits for the checkpoint's I/O (nor for a commit slowed by its fsync), and no
    commit of this process adds frames while it copies, so it copies every frame and
    the next commit starts the WAL over.
    """

    def __init__(
        self,
        path: str,
        busy_timeout: timedelta = timedelta(seconds=5),
        synchronous: str = "NORMAL",
    ) -> None:
        if synchronous not in SYNCHRONOUS:
            raise ConfigurationError(
                f"synchronous must be one of {', '.join(SYNCHRONOUS)}, got {synchronous!r}"
            )
        self._path = path
        self.synchronous = synchronous
        self.where = f"SQLite database {path}"
        """What fault messages name."""
        self._busy_timeout_ms = max(0, round(busy_timeout.total_seconds() * 1000))
        self._executor: ThreadPoolExecutor | None = None
        self.connection: sqlite3.Connection | None = None
        self._waiting: sqlite3.Connection | None = None
        self._checkpointed_at = 0  # the loop connection's total_changes then
        self._checkpoint: Future[None] | None = None

    @property
    def path(self) -> str:
        """The database file's path (":memory:" for a database in memory)."""
        return self._path

    def _connect(self, busy_timeout_ms: int) -> sqlite3.Connection:
        # Autocommit: every statement is its own transaction unless BEGIN says otherwise.
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        if self._path != ":memory:":
            connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(f"PRAGMA synchronous={self.synchronous}")
        return connection

    async def open(self) -> None:
        if self._path == ":memory:":
            self.connection = self._connect(0)
            create_schema(self.connection)
            return
        loop = asyncio.get_running_loop()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="sekiban-sqlite")
        try:
            self._waiting = await loop.run_in_executor(
                self._executor, self._connect, self._busy_timeout_ms
            )
            await loop.run_in_executor(self._executor, create_schema, self._waiting)
        except BaseException:
            await self.close()
            raise
        self.connection = self._connect(0)
        self.connection.execute("PRAGMA wal_autocheckpoint=0")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(connection, *args)`: at once on the loop, or on the worker thread while a
        checkpoint runs there or another writer holds the database's lock."""
        try:
            return self.run_here(fn, *args)
        except Locked:
            return await self.run_waiting(fn, *args)

    def run_here(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(connection, *args)` on the loop's connection; raises `Locked` (having
        rolled back whatever `fn` began) while a checkpoint runs on the worker thread or
        another writer holds the lock."""
        if self.connection is None:
            raise StoreConnectionError(f"the SQLite store on {self._path} is closed")
        if self._checkpoint is not None:
            if not self._checkpoint.done():
                raise Locked  # behind the checkpoint, on its thread
            self._checkpoint = None
        try:
            result = fn(self.connection, *args)
        except sqlite3.OperationalError as error:
            if self._waiting is None or not is_busy(error):
                raise
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
            raise Locked from error
        if self._waiting is not None:
            self._checkpoint_wal(self.connection)
        return result

    async def run_waiting(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(connection, *args)` on the worker thread (behind a checkpoint running
        there), whose connection waits for the lock up to `busy_timeout`."""
        if self._waiting is None:
            raise StoreConnectionError(f"the SQLite store on {self._path} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, self._waiting, *args)

    def _checkpoint_wal(self, connection: sqlite3.Connection) -> None:
        """Start a checkpoint on the worker thread every `CHECKPOINT_EVERY` rows."""
        if connection.total_changes - self._checkpointed_at < CHECKPOINT_EVERY:
            return
        assert self._executor is not None and self._waiting is not None
        self._checkpointed_at = connection.total_changes
        # A failure (a busy or read-only file) leaves the WAL to the next checkpoint;
        # the writes were committed either way.
        self._checkpoint = self._executor.submit(_checkpoint, self._waiting)

    async def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        if self._executor is not None:
            waiting, self._waiting = self._waiting, None
            if waiting is not None:
                await asyncio.get_running_loop().run_in_executor(self._executor, waiting.close)
            self._executor.shutdown(wait=True)
            self._executor = None


def _checkpoint(connection: sqlite3.Connection) -> None:
    with contextlib.suppress(sqlite3.Error):
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
