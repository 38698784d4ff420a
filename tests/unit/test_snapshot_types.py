import dataclasses
import zlib
from datetime import UTC, datetime

import pytest

from examples.bank import AccountProjector, ActiveAccount, bank_domain
from sekiban import PartitionKeys, Serializer
from sekiban.errors import SnapshotRejectedError
from sekiban.snapshot import (
    AggregateSnapshot,
    RejectionReason,
    SnapshotEncoding,
    SnapshotVersion,
    check_snapshot,
    restore_snapshot,
    take_snapshot,
)
from sekiban.snapshot.types import FORMAT_VERSION
from tests.unit.domain import account_at

SERIALIZER = Serializer(bank_domain())
PROJECTOR = AccountProjector()
TAKEN = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def snapshot(version: int = 7, compress_above: int | None = None) -> AggregateSnapshot:
    aggregate = account_at(PartitionKeys.generate("account"), version, balance=123)
    return take_snapshot(
        aggregate,
        SERIALIZER,
        taken_at=TAKEN,
        events_since_previous=4,
        compress_above=compress_above,
    )


def test_snapshot_holds_what_a_restore_needs() -> None:
    s = snapshot()
    m = s.metadata
    assert (m.projector_name, m.projector_version, m.payload_type) == (
        "account",
        "1",
        "ActiveAccount",
    )
    assert (m.format_version, m.taken_at, m.events_since_previous) == (FORMAT_VERSION, TAKEN, 4)
    assert m.encoding is SnapshotEncoding.JSON
    assert s.snapshot_version == SnapshotVersion(7, "1", FORMAT_VERSION)


def test_restore_gives_back_the_aggregate() -> None:
    keys = PartitionKeys.generate("account")
    aggregate = account_at(keys, 9, balance=5)
    s = take_snapshot(aggregate, SERIALIZER, taken_at=TAKEN, events_since_previous=9)
    assert restore_snapshot(s, PROJECTOR, SERIALIZER) == aggregate
    assert check_snapshot(s, PROJECTOR, SERIALIZER) is None


def test_payloads_over_the_threshold_are_compressed_and_flagged() -> None:
    small = snapshot(compress_above=10_000)
    large = snapshot(compress_above=10)
    assert small.metadata.encoding is SnapshotEncoding.JSON
    assert large.metadata.encoding is SnapshotEncoding.ZLIB
    assert zlib.decompress(large.payload) == small.payload
    assert restore_snapshot(large, PROJECTOR, SERIALIZER).payload == ActiveAccount(
        owner="alice", balance=123, transactions=6
    )


def test_document_form_round_trips() -> None:
    for s in (snapshot(), snapshot(compress_above=0)):
        assert AggregateSnapshot.from_json(s.to_json()) == s


@pytest.mark.parametrize("damage", [b"", b"{", b"[]", b'{"version": 1}', b"\xff\xfe"])
def test_unreadable_document_is_rejected_as_corrupt(damage: bytes) -> None:
    with pytest.raises(SnapshotRejectedError) as error:
        AggregateSnapshot.from_json(damage)
    assert error.value.rejection.reason is RejectionReason.CORRUPT


def test_truncated_document_is_rejected_as_corrupt() -> None:
    data = snapshot().to_json()
    with pytest.raises(SnapshotRejectedError):
        AggregateSnapshot.from_json(data[: len(data) // 2])


def _with_metadata(s: AggregateSnapshot, **changes: object) -> AggregateSnapshot:
    return dataclasses.replace(s, metadata=dataclasses.replace(s.metadata, **changes))


@pytest.mark.parametrize(
    ("damaged", "reason"),
    [
        (lambda s: _with_metadata(s, projector_version="2"), RejectionReason.PROJECTOR_VERSION),
        (lambda s: _with_metadata(s, projector_name="cart"), RejectionReason.OTHER_PROJECTOR),
        (
            lambda s: _with_metadata(s, format_version=FORMAT_VERSION + 1),
            RejectionReason.NEWER_FORMAT,
        ),
        (
            lambda s: _with_metadata(s, payload_type="os.system"),
            RejectionReason.UNKNOWN_PAYLOAD_TYPE,
        ),
        (lambda s: dataclasses.replace(s, payload=s.payload[:-3]), RejectionReason.CORRUPT),
        (
            lambda s: dataclasses.replace(
                s,
                payload=b"{}",
                metadata=dataclasses.replace(s.metadata, checksum=zlib.crc32(b"{}")),
            ),
            RejectionReason.CORRUPT,
        ),
        (lambda s: dataclasses.replace(s, version=0), RejectionReason.CORRUPT),
        (lambda s: _with_metadata(s, encoding=SnapshotEncoding.ZLIB), RejectionReason.CORRUPT),
    ],
    ids=[
        "projector-bump",
        "other-projector",
        "newer-format",
        "unknown-type",
        "truncated",
        "wrong-shape",
        "version-zero",
        "not-compressed",
    ],
)
def test_incompatible_snapshot_says_why(damaged: object, reason: RejectionReason) -> None:
    bad = damaged(snapshot())  # type: ignore[operator]
    rejection = check_snapshot(bad, PROJECTOR, SERIALIZER)
    assert rejection is not None and rejection.reason is reason
    with pytest.raises(SnapshotRejectedError):
        restore_snapshot(bad, PROJECTOR, SERIALIZER)


def test_bumping_the_projector_version_invalidates_snapshots() -> None:
    class AccountProjectorV2(AccountProjector):
        name = "account"
        version = "2"

    rejection = check_snapshot(snapshot(), AccountProjectorV2(), SERIALIZER)
    assert rejection is not None and rejection.reason is RejectionReason.PROJECTOR_VERSION
    assert "'1'" in rejection.detail and "'2'" in rejection.detail


def test_snapshot_versions_order_by_aggregate_version() -> None:
    assert max(SnapshotVersion(3, "9"), SnapshotVersion(10, "1")).aggregate_version == 10
