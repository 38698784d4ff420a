"""Group commit: the appends that tasks make in one turn of the event loop are written
in one transaction, so they share its commit (and, at `synchronous=FULL`, its fsync).

An append joins the pending group and waits; the first one to join asks the loop to
write the group once every task that was ready has had its turn (`call_soon`), so
concurrent writers, each on its own aggregate, commit together. When no other task is
ready to run (`loop_peek.others_ready`) and no group is being written, nobody could
join: the append is written at once, and a lone writer pays nothing for waiting.

Each command is ONE conditional INSERT (`appending.insert`), and SQLite undoes a
failed statement by itself, leaving the transaction and the statements before it as
they were (the ABORT conflict resolution). So inside a group each command is still
all-or-nothing on its own: a version conflict (the INSERT selects nothing), a duplicate
command id or a clashing version (IntegrityError) concerns that command only, and the
group's other commands commit. The commands run in the order they joined, each seeing
those before it, exactly as if they had been committed one by one: two commands on one
stream in one group are checked against each other as they would be in sequence.

Only an error that ends the transaction itself (an I/O error, a full disk: SQLite may
roll back the whole transaction) or a failed COMMIT fails every command of the group;
no command's future is resolved before its group has committed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any

from sekiban.stores.loop_peek import others_ready
from sekiban.stores.sqlite.database import Database, Locked

Outcome = bool | sqlite3.Error
"""What one command's INSERT did: True (written), False (the stream was not at the
expected version: nothing written) or the error of its statement (nothing written)."""


def write_group(
    connection: sqlite3.Connection,
    insert: Callable[[sqlite3.Connection, Any], bool],
    commands: list[Any],
) -> list[Outcome]:
    """Run `insert(connection, parameters)` for each command in one transaction (a lone
    command in its own, as autocommit gives it) and commit; one outcome per command.

    Raises only what fails the whole group: nothing of it is then written (or, if the
    COMMIT itself failed with an I/O error, the outcome is unknown).
    """
    if len(commands) == 1:
        return [_outcome(connection, insert, commands[0])]
    # IMMEDIATE: take the write lock now, so a busy database fails here, before any
    # statement, and the whole group goes to the worker thread.
    connection.execute("BEGIN IMMEDIATE")
    try:
        outcomes = [_outcome(connection, insert, parameters) for parameters in commands]
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return outcomes


def _outcome(
    connection: sqlite3.Connection, insert: Callable[[sqlite3.Connection, Any], bool], p: Any
) -> Outcome:
    try:
        return insert(connection, p)
    except (sqlite3.IntegrityError, sqlite3.DataError) as error:
        # A constraint (the stream's version, its command id) or a value SQLite cannot
        # take: this statement alone was undone. Anything else (I/O, a full disk, a
        # busy database) is the group's, and raised.
        return error


class GroupCommit:
    """The pending group of appends on one `Database`, written by `write_group`."""

    def __init__(
        self, database: Database, insert: Callable[[sqlite3.Connection, Any], bool]
    ) -> None:
        self._db = database
        self._insert = insert
        self._pending: list[tuple[Any, asyncio.Future[Outcome]]] = []
        self._flushing = False
        self._waiting: asyncio.Task[None] | None = None  # a group written on the thread

    async def append(self, parameters: Any) -> Outcome:
        """The outcome of the command's INSERT once its group has committed; raises
        what failed the whole group (translate it with `writing=True`)."""
        loop = asyncio.get_running_loop()
        if not self._flushing and not others_ready(loop):
            try:
                return self._db.run_here(write_group, self._insert, [parameters])[0]
            except Locked:
                pass  # another process holds the lock: a group of one, on the thread
        future: asyncio.Future[Outcome] = loop.create_future()
        self._pending.append((parameters, future))
        if not self._flushing:
            self._flushing = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        group, self._pending = self._pending, []
        commands = [parameters for parameters, _ in group]
        try:
            outcomes = self._db.run_here(write_group, self._insert, commands)
        except Locked:
            # Another writer (another process) holds the lock: write the group on the
            # worker thread, whose connection waits; appends joining meanwhile form
            # the next group.
            self._waiting = asyncio.ensure_future(self._flush_waiting(group, commands))
            return
        except BaseException as error:  # handed to every append of the group
            _fail(group, error)
            self._done()
            if not isinstance(error, Exception):
                raise  # KeyboardInterrupt, SystemExit: the loop's to handle
        else:
            _resolve(group, outcomes)
            self._done()

    async def _flush_waiting(
        self, group: list[tuple[Any, asyncio.Future[Outcome]]], commands: list[Any]
    ) -> None:
        try:
            outcomes = await self._db.run_waiting(write_group, self._insert, commands)
        except BaseException as error:  # handed to every append of the group
            _fail(group, error)
            self._done()
            if not isinstance(error, Exception):
                raise  # cancelled (the loop is closing), or an interrupt
        else:
            _resolve(group, outcomes)
            self._done()

    def _done(self) -> None:
        self._waiting = None
        if self._pending:  # joined while the group was written on the thread
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._flushing = False


def _resolve(group: list[tuple[Any, asyncio.Future[Outcome]]], outcomes: list[Outcome]) -> None:
    for (_, future), outcome in zip(group, outcomes, strict=True):
        if not future.done():  # a cancelled append: its command may still be written
            future.set_result(outcome)


def _fail(group: list[tuple[Any, asyncio.Future[Outcome]]], error: BaseException) -> None:
    for _, future in group:
        if future.done():
            continue
        if isinstance(error, asyncio.CancelledError):
            future.cancel()  # the group's writing was cancelled: so are its appends
        else:
            future.set_exception(error)
