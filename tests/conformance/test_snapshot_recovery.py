"""Bad snapshots in every snapshot store are detected, reported and replaced."""

from __future__ import annotations

import dataclasses
import logging
import zlib
from collections.abc import Callable

import pytest

from examples.bank import AccountProjector, DepositMoney, bank_domain
from sekiban import PartitionKeys, SekibanExecutor
from sekiban.snapshot import (
    AggregateSnapshot,
    RejectionReason,
    SnapshotConfiguration,
    SnapshotSigning,
)
from tests.conformance.backends import Stores
from tests.support import bank_account_with_snapshot, bomb, forged


def _meta(**changes: object) -> Callable[[AggregateSnapshot], AggregateSnapshot]:
    return lambda s: dataclasses.replace(s, metadata=dataclasses.replace(s.metadata, **changes))


DAMAGE: dict[str, tuple[Callable[[AggregateSnapshot], AggregateSnapshot], RejectionReason]] = {
    "truncated-bytes": (
        lambda s: dataclasses.replace(s, payload=s.payload[: len(s.payload) // 2]),
        RejectionReason.CORRUPT,
    ),
    "wrong-payload-type": (_meta(payload_type="ClosedAccount"), RejectionReason.CORRUPT),
    "unknown-payload-type": (_meta(payload_type="os.system"), RejectionReason.UNKNOWN_PAYLOAD_TYPE),
    "future-format": (_meta(format_version=99), RejectionReason.NEWER_FORMAT),
    "projector-bump": (_meta(projector_version="0"), RejectionReason.PROJECTOR_VERSION),
    "ahead-of-stream": (
        lambda s: dataclasses.replace(s, version=s.version + 50),
        RejectionReason.AHEAD_OF_STREAM,
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
async def test_bad_snapshot_is_reported_replayed_and_replaced(
    stores: Stores, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    event_store, snapshot_store = stores
    executor, keys = await bank_account_with_snapshot(
        event_store, snapshot_store, events=12, every=5
    )
    good = await snapshot_store.get(keys, AccountProjector.name)
    assert good is not None and good.version == 10
    mangle, reason = DAMAGE[damage]
    await snapshot_store.delete(keys, AccountProjector.name)
    await snapshot_store.save(mangle(good))

    with caplog.at_level(logging.WARNING, "sekiban.snapshot"):
        loaded = await executor.load(AccountProjector, keys)
    rejection = loaded.statistics.rejection
    assert rejection is not None and rejection.reason is reason
    assert "discarded" in caplog.text
    assert executor.snapshots.rejected == 1
    full = await SekibanExecutor(bank_domain(), event_store).load_aggregate(AccountProjector, keys)
    assert loaded.aggregate == full

    fresh = await snapshot_store.get(keys, AccountProjector.name)
    assert fresh is not None and fresh.version == 12
    again = await executor.load(AccountProjector, keys)
    assert again.statistics.from_snapshot and again.statistics.events_replayed == 0


KEY = SnapshotSigning("current", b"c" * 32, {"previous": b"p" * 32})
ATTACKER = SnapshotSigning("current", b"a" * 32)
STRANGER = SnapshotSigning("someone-else", b"a" * 32)

FORGERIES: dict[str, tuple[Callable[[AggregateSnapshot], AggregateSnapshot], RejectionReason]] = {
    "unsigned": (forged, RejectionReason.UNSIGNED),
    "wrong-key": (lambda s: ATTACKER.sign(forged(s)), RejectionReason.BAD_SIGNATURE),
    "unknown-key-id": (lambda s: STRANGER.sign(forged(s)), RejectionReason.UNKNOWN_KEY),
    "signature-moved": (
        # A genuine signature lifted onto another state.
        lambda s: dataclasses.replace(
            forged(s),
            metadata=dataclasses.replace(forged(s).metadata, signature=s.metadata.signature),
        ),
        RejectionReason.BAD_SIGNATURE,
    ),
}


async def _load_refuses(
    executor: SekibanExecutor, stores: Stores, keys: PartitionKeys, reason: RejectionReason
) -> None:
    """Loading refuses the planted snapshot for `reason`, gives the fully replayed
    aggregate, and saves a good snapshot in its place."""
    event_store, snapshot_store = stores
    loaded = await executor.load(AccountProjector, keys)
    rejection = loaded.statistics.rejection
    assert rejection is not None and rejection.reason is reason, rejection
    full = await SekibanExecutor(bank_domain(), event_store).load_aggregate(AccountProjector, keys)
    assert loaded.aggregate == full and loaded.aggregate.payload.balance == 11
    fresh = await snapshot_store.get(keys, AccountProjector.name)
    assert fresh is not None and fresh.version == 12
    # Loading again uses the replacement: with signing on, it is signed by the key.
    again = await executor.load(AccountProjector, keys)
    assert again.statistics.from_snapshot and again.statistics.rejection is None


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
async def test_forged_snapshot_is_refused_and_replaced_with_signing_on(
    stores: Stores, forgery: str
) -> None:
    event_store, snapshot_store = stores
    executor, keys = await bank_account_with_snapshot(
        event_store, snapshot_store, events=12, every=5, signing=KEY
    )
    good = await snapshot_store.get(keys, AccountProjector.name)
    assert good is not None and good.version == 10 and good.metadata.signature
    forge, reason = FORGERIES[forgery]
    planted = forge(good)
    assert planted.metadata.checksum == zlib.crc32(planted.payload)  # only the key tells
    await snapshot_store.save(planted)
    assert await snapshot_store.get(keys, AccountProjector.name) == planted
    await _load_refuses(executor, stores, keys, reason)


async def test_without_keys_a_forged_snapshot_with_a_valid_crc_is_trusted(stores: Stores) -> None:
    """What signing is for: with no key set, only the CRC is checked."""
    event_store, snapshot_store = stores
    executor, keys = await bank_account_with_snapshot(
        event_store, snapshot_store, events=12, every=5
    )
    good = await snapshot_store.get(keys, AccountProjector.name)
    assert good is not None
    await snapshot_store.save(forged(good))
    loaded = await executor.load(AccountProjector, keys)
    assert loaded.statistics.from_snapshot and loaded.aggregate.payload.balance == 1_000_002


async def test_a_snapshot_signed_with_an_old_key_is_used_then_re_signed(stores: Stores) -> None:
    event_store, snapshot_store = stores
    _, keys = await bank_account_with_snapshot(
        event_store,
        snapshot_store,
        events=10,
        every=5,
        signing=SnapshotSigning("previous", b"p" * 32),
    )
    rotated = SekibanExecutor(
        bank_domain(),
        event_store,
        snapshot_store=snapshot_store,
        snapshot_config=SnapshotConfiguration(count_threshold=5, signing=KEY),
    )
    loaded = await rotated.load(AccountProjector, keys)
    assert loaded.statistics.from_snapshot and loaded.statistics.rejection is None
    for _ in range(5):
        await rotated.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
    fresh = await snapshot_store.get(keys, AccountProjector.name)
    assert fresh is not None and fresh.version == 15
    assert fresh.metadata.signature is not None
    assert fresh.metadata.signature.startswith("current:")
    assert KEY.verify(fresh) is None
    # Once the old key is dropped, the re-signed snapshot is still good.
    assert SnapshotSigning("current", b"c" * 32).verify(fresh) is None


@pytest.mark.parametrize("signing", [None, KEY], ids=["unsigned", "signed"])
async def test_a_decompression_bomb_is_refused_and_replaced(
    stores: Stores, signing: SnapshotSigning | None
) -> None:
    event_store, snapshot_store = stores
    executor, keys = await bank_account_with_snapshot(
        event_store, snapshot_store, events=12, every=5, signing=signing
    )
    good = await snapshot_store.get(keys, AccountProjector.name)
    assert good is not None
    planted = bomb(good)  # 256 MiB of zeros in about 256 KB
    if signing is not None:  # a bomb from someone holding the key: the limit still holds
        planted = signing.sign(planted)
    await snapshot_store.save(planted)
    await _load_refuses(executor, stores, keys, RejectionReason.TOO_LARGE)
