"""Snapshot signing (HMAC-SHA-256, key rotation) and bounded decompression."""

from __future__ import annotations

import dataclasses
import tracemalloc
import zlib
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from examples.bank import AccountProjector, bank_domain
from sekiban import PartitionKeys, Serializer
from sekiban.errors import ConfigurationError, SnapshotRejectedError
from sekiban.snapshot import (
    AggregateSnapshot,
    RejectionReason,
    SnapshotConfiguration,
    SnapshotEncoding,
    SnapshotSigning,
    check_snapshot,
    restore_snapshot,
    take_snapshot,
)
from sekiban.snapshot.types import DEFAULT_MAX_SNAPSHOT_BYTES
from tests.support import bomb, forged, zlib_bomb
from tests.unit.domain import account_at

SERIALIZER = Serializer(bank_domain())
PROJECTOR = AccountProjector()
OLD_KEY = b"o" * 32
KEY = b"k" * 32
SIGNING = SnapshotSigning("k2", KEY, {"k1": OLD_KEY})
MIB = 1 << 20


def snapshot(
    signing: SnapshotSigning | None = SIGNING, compress_above: int | None = None
) -> AggregateSnapshot:
    return take_snapshot(
        account_at(PartitionKeys.generate("account"), 7, balance=123),
        SERIALIZER,
        taken_at=datetime(2026, 3, 4, tzinfo=UTC),
        events_since_previous=4,
        compress_above=compress_above,
        signing=signing,
    )


def rejection_of(s: AggregateSnapshot, signing: SnapshotSigning | None = SIGNING) -> object:
    rejection = check_snapshot(s, PROJECTOR, SERIALIZER, signing=signing)
    return rejection and rejection.reason


def test_a_signed_snapshot_restores_with_its_key() -> None:
    for compress_above in (None, 0):
        s = snapshot(compress_above=compress_above)
        assert s.metadata.signature is not None and s.metadata.signature.startswith("k2:")
        assert restore_snapshot(s, PROJECTOR, SERIALIZER, signing=SIGNING).payload.balance == 123


def test_unsigned_forged_and_foreign_snapshots_are_refused_with_a_key_set() -> None:
    assert rejection_of(snapshot(signing=None)) is RejectionReason.UNSIGNED
    assert rejection_of(forged(snapshot())) is RejectionReason.UNSIGNED
    attacker = SnapshotSigning("k2", b"a" * 32)
    assert rejection_of(attacker.sign(forged(snapshot()))) is RejectionReason.BAD_SIGNATURE
    stranger = SnapshotSigning("k9", b"a" * 32)
    assert rejection_of(stranger.sign(snapshot())) is RejectionReason.UNKNOWN_KEY
    garbled = dataclasses.replace(
        snapshot(), metadata=dataclasses.replace(snapshot().metadata, signature="k2:zz\u00e9")
    )
    assert rejection_of(garbled) is RejectionReason.BAD_SIGNATURE


def _meta(**changes: object) -> Callable[[AggregateSnapshot], AggregateSnapshot]:
    return lambda s: dataclasses.replace(s, metadata=dataclasses.replace(s.metadata, **changes))


@pytest.mark.parametrize(
    "change",
    [
        _meta(projector_name="cart"),
        _meta(projector_version="2"),
        _meta(payload_type="ClosedAccount"),
        _meta(format_version=0),
        _meta(encoding=SnapshotEncoding.ZLIB),
        lambda s: dataclasses.replace(s, version=s.version + 1),
        lambda s: dataclasses.replace(s, partition_keys=PartitionKeys.generate("account")),
        lambda s: dataclasses.replace(s, last_sortable_unique_id=None),
        lambda s: dataclasses.replace(s, payload=s.payload.replace(b"123", b"999")),
    ],
    ids=[
        "projector",
        "projector-version",
        "payload-type",
        "format",
        "encoding",
        "version",
        "partition-keys",
        "last-id",
        "payload",
    ],
)
def test_the_signature_covers_everything_that_decides_the_restored_state(
    change: Callable[[AggregateSnapshot], AggregateSnapshot],
) -> None:
    rejection = SIGNING.verify(change(snapshot()))
    assert rejection is not None and rejection.reason is RejectionReason.BAD_SIGNATURE


def test_a_snapshot_signed_with_an_old_accepted_key_is_accepted() -> None:
    old = snapshot(signing=SnapshotSigning("k1", OLD_KEY))
    assert rejection_of(old) is None
    assert rejection_of(old, SnapshotSigning("k2", KEY)) is RejectionReason.UNKNOWN_KEY


def test_without_keys_signatures_are_not_looked_at() -> None:
    assert rejection_of(snapshot(), signing=None) is None
    assert rejection_of(snapshot(signing=None), signing=None) is None


def test_the_signature_round_trips_through_the_document_form() -> None:
    s = snapshot()
    assert AggregateSnapshot.from_json(s.to_json()) == s
    # A document written before signing existed has no signature field.
    old = s.to_json().replace(b',"signature":"' + s.metadata.signature.encode() + b'"', b"")  # type: ignore[union-attr]
    assert AggregateSnapshot.from_json(old).metadata.signature is None


def test_keys_never_show_in_repr() -> None:
    shown = repr(SnapshotConfiguration(signing=SIGNING))
    assert "k2" in shown and "k1" in shown
    assert KEY.decode() not in shown and OLD_KEY.decode() not in shown


def test_keys_from_settings() -> None:
    signing = SnapshotSigning.from_settings("k2:" + "s" * 20, "k1:" + "t" * 20 + ", k0:" + "u" * 20)
    assert signing.key == b"s" * 20
    assert dict(signing.accepted) == {"k2": b"s" * 20, "k1": b"t" * 20, "k0": b"u" * 20}


@pytest.mark.parametrize(
    "make",
    [
        lambda: SnapshotSigning("k1", b"short"),
        lambda: SnapshotSigning("has space", KEY),
        lambda: SnapshotSigning("k1", KEY, {"k0": "a text key, not bytes"}),  # type: ignore[dict-item]
        lambda: SnapshotSigning.from_settings("just-a-secret-without-an-id"),
        lambda: SnapshotConfiguration(max_snapshot_bytes=0),
        lambda: SnapshotConfiguration(signing="k1:secret"),  # type: ignore[arg-type]
        lambda: SnapshotConfiguration(
            signing=SIGNING,
            overrides={"account": SnapshotConfiguration(signing=SnapshotSigning("x", KEY))},
        ),
    ],
    ids=[
        "short-key",
        "bad-key-id",
        "text-key",
        "setting-without-id",
        "zero-limit",
        "signing-not-a-value",
        "override-with-its-own-keys",
    ],
)
def test_invalid_signing_configuration_is_refused(make: Callable[[], object]) -> None:
    with pytest.raises(ConfigurationError):
        make()


@pytest.mark.parametrize(
    "make",
    [
        lambda: SnapshotSigning.from_settings("hunter2hunter2hunter2"),
        lambda: SnapshotConfiguration(signing="hunter2hunter2hunter2"),  # type: ignore[arg-type]
        lambda: SnapshotSigning("k1", b"hunter2"),
    ],
    ids=["setting-without-id", "text-as-signing", "short-key"],
)
def test_a_refused_key_is_not_echoed_in_the_error(make: Callable[[], object]) -> None:
    with pytest.raises(ConfigurationError) as error:
        make()
    assert "hunter2" not in str(error.value)


def _peak_while(run: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("limit", [MIB, DEFAULT_MAX_SNAPSHOT_BYTES])
def test_a_decompression_bomb_is_refused_while_inflating(limit: int) -> None:
    # About 1 MB compressed, 1 GiB inflated: the old code allocated all of it.
    planted = bomb(snapshot(signing=None), 1 << 30)
    assert planted.size < 2 * MIB

    def restore() -> None:
        with pytest.raises(SnapshotRejectedError) as error:
            restore_snapshot(planted, PROJECTOR, SERIALIZER, max_bytes=limit)
        assert error.value.rejection.reason is RejectionReason.TOO_LARGE

    assert _peak_while(restore) < 2 * limit + 4 * MIB


def test_a_payload_at_the_limit_restores_and_one_byte_over_is_refused() -> None:
    s = snapshot(signing=None, compress_above=0)
    size = len(zlib.decompress(s.payload))
    assert check_snapshot(s, PROJECTOR, SERIALIZER, max_bytes=size) is None
    rejection = check_snapshot(s, PROJECTOR, SERIALIZER, max_bytes=size - 1)
    assert rejection is not None and rejection.reason is RejectionReason.TOO_LARGE
    plain = snapshot(signing=None)
    rejection = check_snapshot(plain, PROJECTOR, SERIALIZER, max_bytes=plain.size - 1)
    assert rejection is not None and rejection.reason is RejectionReason.TOO_LARGE


def test_a_truncated_compressed_payload_with_a_valid_crc_is_corrupt() -> None:
    s = snapshot(signing=None, compress_above=0)
    cut = s.payload[:-6]
    damaged = dataclasses.replace(
        s, payload=cut, metadata=dataclasses.replace(s.metadata, checksum=zlib.crc32(cut))
    )
    assert rejection_of(damaged, signing=None) is RejectionReason.CORRUPT


def test_a_snapshot_too_large_to_restore_is_not_taken() -> None:
    with pytest.raises(SnapshotRejectedError) as error:
        take_snapshot(
            account_at(PartitionKeys.generate("account"), 3),
            SERIALIZER,
            taken_at=datetime(2026, 3, 4, tzinfo=UTC),
            events_since_previous=3,
            max_bytes=10,
        )
    assert error.value.rejection.reason is RejectionReason.TOO_LARGE


def test_the_bomb_helper_is_small_and_inflates_to_what_it_says() -> None:
    data = zlib_bomb(4 * MIB)
    assert len(data) < 16_384 and len(zlib.decompress(data)) == 4 * MIB
