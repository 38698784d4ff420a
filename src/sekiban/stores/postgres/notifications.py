"""Append notifications on PostgreSQL: a statement trigger on the events table issues
`NOTIFY` in the appending transaction (delivered only if it commits), and
`AppendListener` holds a dedicated connection that `LISTEN`s on that channel.

The channel is named after the schema and table prefix, so stores in other schemas of
one database do not wake each other. A notification carries no data: it only says
"read again". The listener reconnects after its connection was lost (a server restart,
`pg_terminate_backend`) and then reports an append, since any sent meanwhile were lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from typing import Any

from sekiban._extras import require_extra
from sekiban.stores.postgres.faults import translate_faults
from sekiban.stores.postgres.schema import Tables

with require_extra("postgres", "sekiban.stores.postgres"):
    import asyncpg

_MAX_CHANNEL_BYTES = 63  # PostgreSQL's identifier length (NAMEDATALEN - 1)


def channel_name(t: Tables) -> str:
    """`sekiban:<schema>.<prefix>`, or a digest of it when longer than a channel name
    may be."""
    name = f"sekiban:{t.schema}.{t.prefix}"
    if len(name.encode()) <= _MAX_CHANNEL_BYTES:
        return name
    return "sekiban:" + hashlib.sha256(name.encode()).hexdigest()[:32]


def notify_ddl(t: Tables) -> str:
    """The trigger function and the statement trigger that notify appends.

    PostgreSQL serialises the commits of all transactions that NOTIFY (a lock held
    through the commit's flush), which costs concurrent writers their group commit:
    measured with ten writers, a NOTIFY per append halved append throughput. So an
    append notifies only when no other append in flight is about to
    (`pg_try_advisory_xact_lock` on the channel, held to its commit): then at most one
    notifying commit runs at a time, and the others commit as before. An append that
    committed after the notifying one is read on the subscriber's next poll, which
    follows soon after any activity (see `SubscriptionRunner`).
    """
    function = f'"{t.schema}"."{t.prefix}_notify_append"'
    trigger = t.notify_trigger
    channel = channel_name(t).replace("'", "''")
    return f"""
CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF pg_try_advisory_xact_lock(hashtext('{channel}')) THEN
        PERFORM pg_notify('{channel}', '');
    END IF;
    RETURN NULL;
END $$;
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_trigger
                   WHERE tgname = '{trigger}' AND tgrelid = '{t.events}'::regclass) THEN
        CREATE TRIGGER "{trigger}" AFTER INSERT ON {t.events}
            FOR EACH STATEMENT EXECUTE FUNCTION {function}();
    END IF;
END $$;
"""


class AppendListener:
    """LISTENs for a store's appends on a connection of its own, opened on first use.

    Each task that waits has its own mark of the notifications it has seen, so several
    subscriptions in one process can share the listener without taking each other's
    wake-ups.
    """

    def __init__(self, dsn: str, channel: str, where: str) -> None:
        self._dsn, self._channel, self._where = dsn, channel, where
        self._connection: Any = None
        self._connecting = asyncio.Lock()
        self._generation = 0
        self._changed = asyncio.Event()
        self._seen: weakref.WeakKeyDictionary[asyncio.Task[Any], int] = weakref.WeakKeyDictionary()

    async def wait(self, timeout: float) -> bool:
        """See `EventNotifier.wait_for_append`."""
        await self._listening()
        task = asyncio.current_task()
        assert task is not None
        seen = self._seen.get(task)
        if seen != self._generation:
            self._seen[task] = self._generation
            return True
        changed = self._changed
        try:
            async with asyncio.timeout(timeout):
                await changed.wait()
        except TimeoutError:
            pass
        self._seen[task] = self._generation
        return seen != self._generation

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            with translate_faults(self._where):
                await connection.close(timeout=5)

    async def _listening(self) -> None:
        if self._connection is not None and not self._connection.is_closed():
            return
        async with self._connecting:
            if self._connection is not None and not self._connection.is_closed():
                return
            with translate_faults(self._where):
                connection = await asyncpg.connect(self._dsn)
                try:
                    connection.add_termination_listener(self._lost)
                    await connection.add_listener(self._channel, self._notified)
                except BaseException:
                    await connection.close(timeout=5)
                    raise
            self._connection = connection
            # Appends made while nobody listened were not notified: report one.
            self._bump()

    def _notified(self, *_: Any) -> None:
        self._bump()

    def _lost(self, connection: Any) -> None:
        if connection is self._connection:
            self._connection = None
        self._bump()  # wake the waiters: they read again, then wait on a new connection

    def _bump(self) -> None:
        self._generation += 1
        self._changed.set()
        self._changed = asyncio.Event()
