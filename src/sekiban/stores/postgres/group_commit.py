"""Group commit on PostgreSQL: the appends that concurrent tasks make while a group is
on its way to the server are sent together, as ONE statement in one transaction.

Why it stays sound with the store's positions and `read_command`:

- positions are `(transaction id << 16) + n`; the group's events are numbered 1, 2, ...
  across all its commands (at most `MAX_EVENTS_PER_APPEND` per group), so they are
  unique and follow the order the commands joined;
- a group holds at most one command per stream (a second one waits for the next
  group), so the rows of one stream in one transaction are still exactly one command's:
  `read_command` finds them as before;
- each command's rows are inserted only if its stream is at its expected version (the
  same `EXISTS` check as a lone append, made per command); a command whose check fails
  inserts nothing, the others go in, and its writer gets `ConcurrencyError`;
- a unique violation (another writer took a version, or a command id is already in
  its stream) aborts the whole statement, so nothing of the group is written; then
  every command of the group is appended on its own, exactly as without grouping, and
  each writer gets its own outcome (success, `ConcurrencyError`,
  `DuplicateCommandError`).

A lone append (no group on its way, no other task ready: `loop_peek.others_ready`) is
sent at once as its own statement, as without grouping. Up to `MAX_IN_FLIGHT` groups
are on their way at once, each on its own connection: a group held up in the server
(a lock wait, a slow trigger) does not hold back the appends after it. Two groups in
flight may hold commands of one stream; they then race as two lone appends would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sekiban.stores.loop_peek import others_ready
from sekiban.stores.postgres.appending import insert_head
from sekiban.stores.postgres.schema import (
    MAX_EVENTS_PER_APPEND,
    POSITION_BITS,
    Tables,
)

MAX_IN_FLIGHT = 4
"""Groups on their way to the server at once (each holds a pool connection)."""


@dataclass(frozen=True)
class Command:
    """One append's arguments, as the lone append statement takes them."""

    stream: tuple[str, str, Any]
    expected_version: int
    columns: tuple[list[Any], ...]  # id, sortable id, type, payload, timestamp, causation,
    # correlation, executed user: one list each, one item per event
    command_id: str | None
    keys: Any  # the PartitionKeys, for the errors

    @property
    def size(self) -> int:
        return len(self.columns[0])


def group_append_sql(t: Tables) -> str:
    """Every event of the group on its own row of the unnest, with its command's stream,
    expected version and command id repeated, and its offset in its command."""
    # The same writer lock as a lone append (`appending.insert_head`): `read_all`'s
    # bound sees the group in flight.
    return f"""{insert_head(t)}
SELECT writer.base + e.ordinal,
    e.root, e.grp, e.aggregate_id, e.expected + e.offset_in_command,
    e.id, e.sortable_unique_id, e.event_type, e.payload, e.timestamp,
    e.causation_id, e.correlation_id, e.executed_user,
    CASE WHEN e.offset_in_command = 1 THEN e.command_id END
FROM writer, unnest($1::text[], $2::text[], $3::uuid[], $4::integer[], $5::integer[], $6::text[],
            $7::uuid[], $8::text[], $9::text[], $10::json[], $11::timestamptz[],
            $12::text[], $13::text[], $14::text[])
    WITH ORDINALITY AS e(root, grp, aggregate_id, expected, offset_in_command, command_id,
                         id, sortable_unique_id, event_type, payload, timestamp,
                         causation_id, correlation_id, executed_user, ordinal)
WHERE e.expected = 0 OR EXISTS (
    SELECT FROM {t.events} x
    WHERE x.root_partition_key = e.root AND x.aggregate_group = e.grp
        AND x.aggregate_id = e.aggregate_id AND x.version = e.expected)
RETURNING position & {(1 << POSITION_BITS) - 1}"""


def group_arguments(commands: list[Command]) -> list[list[Any]]:
    """The statement's 14 arrays for `commands`, event by event."""
    arrays: list[list[Any]] = [[] for _ in range(14)]
    for c in commands:
        n = c.size
        arrays[0] += [c.stream[0]] * n
        arrays[1] += [c.stream[1]] * n
        arrays[2] += [c.stream[2]] * n
        arrays[3] += [c.expected_version] * n
        arrays[4] += range(1, n + 1)
        arrays[5] += [c.command_id] * n
        for i, column in enumerate(c.columns):
            arrays[6 + i] += column
    return arrays


def inserted_commands(commands: list[Command], ordinals: list[int]) -> list[bool]:
    """Which commands' rows came back (a command's rows go in all together or not)."""
    returned = set(ordinals)
    out, first = [], 1
    for c in commands:
        out.append(first in returned)
        first += c.size
    return out


class PostgresGroupCommit:
    """Pending appends of one store, sent as groups, one group on its way at a time.

    `write_group(commands)` runs the group statement and returns, per command, whether
    it was inserted, raising `UniqueViolation`-like errors for `is_unique_violation`;
    `write_one(command)` is the lone append (raising what it raises).
    """

    def __init__(
        self,
        write_group: Callable[[list[Command]], Awaitable[list[bool]]],
        write_one: Callable[[Command], Awaitable[bool]],
        is_unique_violation: Callable[[BaseException], bool],
    ) -> None:
        self._write_group = write_group
        self._write_one = write_one
        self._is_unique_violation = is_unique_violation
        self._pending: list[tuple[Command, asyncio.Future[bool]]] = []
        self._sending: set[asyncio.Task[None]] = set()
        self._scheduled = False

    async def append(self, command: Command) -> bool:
        """Whether the command was inserted (False: its stream was not at the expected
        version); raises what a lone append would raise for it."""
        loop = asyncio.get_running_loop()
        if not self._sending and not self._scheduled and not others_ready(loop):
            return await self._write_one(command)
        future: asyncio.Future[bool] = loop.create_future()
        self._pending.append((command, future))
        self._schedule(loop)
        return await future

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if len(self._sending) < MAX_IN_FLIGHT and not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._send)

    def _send(self) -> None:
        self._scheduled = False
        group, rest, streams, events = [], [], set(), 0
        for item in self._pending:
            command = item[0]
            if command.stream in streams or events + command.size > MAX_EVENTS_PER_APPEND:
                rest.append(item)  # one command per stream and group; numbering fits
            else:
                group.append(item)
                streams.add(command.stream)
                events += command.size
        self._pending = rest
        sending = asyncio.ensure_future(self._write(group))
        self._sending.add(sending)
        sending.add_done_callback(self._sent)

    def _sent(self, sending: asyncio.Task[None]) -> None:
        self._sending.discard(sending)
        if self._pending:
            self._schedule(asyncio.get_running_loop())

    async def _write(self, group: list[tuple[Command, asyncio.Future[bool]]]) -> None:
        commands = [command for command, _ in group]
        try:
            if len(commands) == 1:
                inserted = [await self._write_one(commands[0])]
            else:
                inserted = await self._write_group(commands)
        except BaseException as error:  # handed to the group's appends
            if len(commands) > 1 and self._is_unique_violation(error):
                # Nothing of the group was written: each command on its own, as if
                # there had been no group, each writer getting its own outcome.
                outcomes = await asyncio.gather(
                    *(self._write_one(c) for c in commands), return_exceptions=True
                )
                for (_, future), outcome in zip(group, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
            else:
                for _, future in group:
                    if future.done():
                        continue
                    if isinstance(error, asyncio.CancelledError):
                        future.cancel()  # the group's sending was cancelled: so are they
                    else:
                        future.set_exception(error)
                if not isinstance(error, Exception):
                    raise
        else:
            for (_, future), ok in zip(group, inserted, strict=True):
                if not future.done():
                    future.set_result(ok)
        finally:
            if self._pending:  # more joined meanwhile: send them beside this group
                self._schedule(asyncio.get_running_loop())
