"""Bad snapshots in every snapshot store are detected, reported and replaced."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import pytest

from examples.bank import AccountProjector, bank_domain
from sekiban import SekibanExecutor
from sekiban.snapshot import AggregateSnapshot, RejectionReason
from tests.conformance.backends import Stores
from tests.support import bank_account_with_snapshot


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
