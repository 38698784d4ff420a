"""Property: snapshot + delta gives exactly the aggregate full replay gives."""

import asyncio
import contextlib
import dataclasses
import zlib
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from examples.bank import AccountProjector, DepositMoney, OpenAccount, WithdrawMoney, bank_domain
from sekiban import SekibanExecutor, Serializer
from sekiban.loading import EventReplayOptimizer
from sekiban.snapshot import AggregateSnapshot, take_snapshot
from sekiban.stores import InMemoryEventStore, InMemorySnapshotStore

DOMAIN = bank_domain()
SERIALIZER = Serializer(DOMAIN)
PROJECTOR = DOMAIN.projector(AccountProjector)

DAMAGE = {
    "none": lambda s: s,
    "truncated": lambda s: dataclasses.replace(s, payload=s.payload[: len(s.payload) // 2]),
    "projector-bump": lambda s: dataclasses.replace(
        s, metadata=dataclasses.replace(s.metadata, projector_version="old")
    ),
    "future-format": lambda s: dataclasses.replace(
        s, metadata=dataclasses.replace(s.metadata, format_version=99)
    ),
    "wrong-type": lambda s: dataclasses.replace(
        s, metadata=dataclasses.replace(s.metadata, payload_type="ClosedAccount")
    ),
    "bit-flip": lambda s: dataclasses.replace(s, payload=bytes([s.payload[0] ^ 1]) + s.payload[1:]),
    "ahead": lambda s: dataclasses.replace(s, version=s.version + 5),
    "rechecksummed-garbage": lambda s: dataclasses.replace(
        s,
        payload=b'{"owner":1}',
        metadata=dataclasses.replace(s.metadata, checksum=zlib.crc32(b'{"owner":1}')),
    ),
}

operations = st.lists(
    st.tuples(st.sampled_from(["deposit", "withdraw"]), st.integers(1, 50)), min_size=0, max_size=40
)


async def _check(ops: list[tuple[str, int]], point: float, damage: str, compress: bool) -> None:
    executor = SekibanExecutor(DOMAIN, InMemoryEventStore())
    keys = (await executor.command(OpenAccount(owner="p"))).partition_keys
    for op, amount in ops:
        command = (DepositMoney if op == "deposit" else WithdrawMoney)(
            account_id=keys.aggregate_id, amount=amount
        )
        with contextlib.suppress(ValueError):  # insufficient funds: nothing appended
            await executor.command(command)
    store = executor.event_store
    events = [SERIALIZER.to_event(e) async for b in store.read_stream(keys) for e in b]
    full = PROJECTOR.fold(PROJECTOR.empty_aggregate(keys), events)
    at = max(1, round(point * len(events)))
    snapshot: AggregateSnapshot = take_snapshot(
        PROJECTOR.fold(PROJECTOR.empty_aggregate(keys), events[:at]),
        SERIALIZER,
        taken_at=datetime.now(UTC),
        events_since_previous=at,
        compress_above=0 if compress else None,
    )
    snapshots = InMemorySnapshotStore()
    await snapshots.save(DAMAGE[damage](snapshot))
    result = await EventReplayOptimizer(store, SERIALIZER, snapshots).load(PROJECTOR, keys)
    assert result.aggregate == full
    if damage == "none":
        assert result.statistics.from_snapshot
        assert result.statistics.events_replayed == len(events) - at
    else:
        assert not result.statistics.from_snapshot and result.statistics.rejection is not None


@settings(max_examples=150, deadline=None)
@given(operations, st.floats(0, 1), st.sampled_from(sorted(DAMAGE)), st.booleans())
def test_snapshot_plus_delta_equals_full_replay(
    ops: list[tuple[str, int]], point: float, damage: str, compress: bool
) -> None:
    asyncio.run(_check(ops, point, damage, compress))
