"""Builders shared by the test suites."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import socket
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from examples.bank import DepositMoney, OpenAccount, bank_domain
from sekiban import (
    PartitionKeys,
    SekibanExecutor,
    SortableUniqueId,
    StoreConnectionError,
    StoredEvent,
)
from sekiban.snapshot import (
    AggregateSnapshot,
    SnapshotConfiguration,
    SnapshotEncoding,
    SnapshotSigning,
)
from sekiban.stores import EventStore, SnapshotStore


def stored_events(
    keys: PartitionKeys,
    first_version: int,
    count: int,
    *,
    payload: str = '{"amount":1}',
    event_type: str = "MoneyDeposited",
) -> list[StoredEvent]:
    """`count` events of one stream at versions `first_version ...`."""
    now = datetime.now(UTC)
    return [
        StoredEvent(
            id=str(uuid.uuid4()),
            sortable_unique_id=SortableUniqueId.generate(),
            version=first_version + i,
            partition_keys=keys,
            event_type=event_type,
            payload=payload,
            timestamp=now,
            causation_id="cause",
            correlation_id="corr",
            executed_user="tester",
        )
        for i in range(count)
    ]


async def bank_account_with_snapshot(
    store: EventStore,
    snapshots: SnapshotStore,
    *,
    events: int = 10,
    every: int = 7,
    signing: SnapshotSigning | None = None,
) -> tuple[SekibanExecutor, PartitionKeys]:
    """A bank account of `events` events (opened, then deposits of 1) written by an
    executor that snapshots every `every` events (signed with `signing`, if given); the
    executor and the account's keys."""
    executor = SekibanExecutor(
        bank_domain(),
        store,
        snapshot_store=snapshots,
        snapshot_config=SnapshotConfiguration(count_threshold=every, signing=signing),
    )
    keys = (await executor.command(OpenAccount(owner="ann"))).partition_keys
    for _ in range(events - 1):
        await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
    return executor, keys


def forged(snapshot: AggregateSnapshot, *, balance: int = 1_000_000) -> AggregateSnapshot:
    """`snapshot` with an attacker-chosen balance, a valid CRC and no signature: what
    someone who can write the snapshot store, but holds no key, can plant."""
    state = json.loads(
        zlib.decompress(snapshot.payload)
        if snapshot.metadata.encoding is SnapshotEncoding.ZLIB
        else snapshot.payload
    )
    payload = json.dumps({**state, "balance": balance}).encode()
    metadata = dataclasses.replace(
        snapshot.metadata,
        encoding=SnapshotEncoding.JSON,
        checksum=zlib.crc32(payload),
        signature=None,
    )
    return dataclasses.replace(snapshot, payload=payload, metadata=metadata)


@functools.cache
def zlib_bomb(inflated_bytes: int) -> bytes:
    """Zeros that inflate to `inflated_bytes`, compressed about a thousandfold, built a
    mebibyte at a time so the test itself never holds the inflated size."""
    compressor = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(inflated_bytes >> 20)]
    return b"".join(parts) + compressor.flush()


def bomb(snapshot: AggregateSnapshot, inflated_bytes: int = 256 << 20) -> AggregateSnapshot:
    """`snapshot` with a payload that inflates to `inflated_bytes`, CRC valid."""
    payload = zlib_bomb(inflated_bytes)
    metadata = dataclasses.replace(
        snapshot.metadata, encoding=SnapshotEncoding.ZLIB, checksum=zlib.crc32(payload)
    )
    return dataclasses.replace(snapshot, payload=payload, metadata=metadata)


class LostReplyStore:
    """A real event store whose chosen appends commit and then fail as a dropped
    connection does after COMMIT: the write landed, the caller hears an error.

    `lose_reply(causation_id)` picks the appends by their events' causation id, which
    the executors set to the command id (each loses one reply at most). With
    `stay_down`, every call fails after a lost reply until `down` is cleared, as while
    a database restarts.
    """

    def __init__(
        self,
        store: EventStore,
        lose_reply: Callable[[str], bool] = lambda causation_id: True,
        *,
        stay_down: bool = False,
    ) -> None:
        self.store = store
        self.lose_reply = lose_reply
        self.stay_down = stay_down
        self.down = False
        self.lost: list[str] = []

    def _check_up(self) -> None:
        if self.down:
            raise StoreConnectionError("the database is restarting (injected)")

    async def append(
        self,
        events: Sequence[StoredEvent],
        expected_version: int,
        *,
        command_id: str | None = None,
    ) -> None:
        self._check_up()
        await self.store.append(events, expected_version, command_id=command_id)
        cause = events[0].causation_id
        if cause not in self.lost and self.lose_reply(cause):
            self.lost.append(cause)
            self.down = self.stay_down
            raise StoreConnectionError(
                "connection reset after COMMIT (injected)", outcome_unknown=True
            )

    async def read_command(
        self, partition_keys: PartitionKeys, command_id: str
    ) -> list[StoredEvent] | None:
        self._check_up()
        return await self.store.read_command(partition_keys, command_id)

    def read_stream(
        self, partition_keys: PartitionKeys, after_version: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[list[StoredEvent]]:
        self._check_up()
        return self.store.read_stream(partition_keys, after_version, batch_size)

    def read_all(
        self, after_position: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[list[StoredEvent]]:
        self._check_up()
        return self.store.read_all(after_position, batch_size)

    async def close(self) -> None:
        await self.store.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


REPOSITORY = Path(__file__).resolve().parents[1]


def repository_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child Python that imports the repository's
    `sekiban` and `tests` (its source first on PYTHONPATH), plus `extra`."""
    paths = [str(REPOSITORY / "src"), str(REPOSITORY), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **extra}
