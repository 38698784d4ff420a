"""Snapshots: a cached aggregate at one version, and when such a cache may be used."""

from __future__ import annotations

import base64
import json
import zlib
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.core.serialization import Serializer
from sekiban.core.sortable_id import SortableUniqueId
from sekiban.errors import SekibanError, SerializationError, SnapshotRejectedError, UnknownTypeError

if TYPE_CHECKING:
    from sekiban.snapshot.signing import SnapshotSigning

FORMAT_VERSION = 1
"""The snapshot layout this code writes; snapshots with a higher one are not read."""

DEFAULT_MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024
"""The largest serialized payload (after inflating) a snapshot may restore to."""


class SnapshotEncoding(StrEnum):
    """How a snapshot's state is stored: plain JSON, or JSON compressed with zlib."""

    JSON = "json"
    ZLIB = "zlib+json"


@dataclass(frozen=True, slots=True, order=True)
class SnapshotVersion:
    """What a snapshot captured and which code wrote it.

    Ordered by aggregate version first, so `max()` picks the newest snapshot.
    """

    aggregate_version: int
    projector_version: str
    format_version: int = FORMAT_VERSION


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    """How to read a snapshot back and where it came from."""

    projector_name: str
    projector_version: str
    payload_type: str
    format_version: int
    encoding: SnapshotEncoding
    checksum: int
    taken_at: datetime
    events_since_previous: int
    signature: str | None = None
    """`key-id:hex HMAC-SHA-256` of the canonical form (see `SnapshotSigning`), or None."""
    schema_fingerprint: str = ""
    """`DomainTypes.schema_fingerprint()` when taken: the event schemas the payload was
    folded from ("" before any event type evolved)."""


@dataclass(frozen=True, slots=True)
class AggregateSnapshot:
    """An aggregate's payload at `version`, serialized (and maybe compressed) as bytes."""

    partition_keys: PartitionKeys
    version: int
    last_sortable_unique_id: str | None
    payload: bytes
    metadata: SnapshotMetadata

    @property
    def snapshot_version(self) -> SnapshotVersion:
        m = self.metadata
        return SnapshotVersion(self.version, m.projector_version, m.format_version)

    @property
    def size(self) -> int:
        """Bytes of payload as stored."""
        return len(self.payload)

    def to_json(self) -> bytes:
        """One self-describing JSON document, for stores that keep documents."""
        m = self.metadata
        return json.dumps(
            {
                "partition_keys": str(self.partition_keys),
                "version": self.version,
                "last_sortable_unique_id": self.last_sortable_unique_id,
                "payload": base64.b64encode(self.payload).decode(),
                "projector_name": m.projector_name,
                "projector_version": m.projector_version,
                "payload_type": m.payload_type,
                "format_version": m.format_version,
                "encoding": m.encoding.value,
                "checksum": m.checksum,
                "taken_at": m.taken_at.isoformat(),
                "events_since_previous": m.events_since_previous,
                "signature": m.signature,
                "schema_fingerprint": m.schema_fingerprint,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> AggregateSnapshot:
        """Parse `to_json` output; anything malformed raises `SnapshotRejectedError`."""
        try:
            d: dict[str, Any] = json.loads(data)
            return cls(
                partition_keys=PartitionKeys.parse(d["partition_keys"]),
                version=_int(d["version"]),
                last_sortable_unique_id=d["last_sortable_unique_id"],
                payload=base64.b64decode(d["payload"], validate=True),
                metadata=SnapshotMetadata(
                    projector_name=str(d["projector_name"]),
                    projector_version=str(d["projector_version"]),
                    payload_type=str(d["payload_type"]),
                    format_version=_int(d["format_version"]),
                    encoding=SnapshotEncoding(d["encoding"]),
                    checksum=_int(d["checksum"]),
                    taken_at=datetime.fromisoformat(d["taken_at"]),
                    events_since_previous=_int(d["events_since_previous"]),
                    signature=_str_or_none(d.get("signature")),
                    schema_fingerprint=_str_or_none(d.get("schema_fingerprint")) or "",
                ),
            )
        except (ValueError, TypeError, KeyError, RecursionError, SekibanError) as error:
            raise SnapshotRejectedError(
                SnapshotRejection(RejectionReason.CORRUPT, f"unreadable snapshot document: {error}")
            ) from None


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _str_or_none(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


class RejectionReason(StrEnum):
    """Why a snapshot was not used."""

    CORRUPT = "corrupt"
    OTHER_PROJECTOR = "other-projector"
    PROJECTOR_VERSION = "projector-version"
    SCHEMA_CHANGED = "schema-changed"
    UNKNOWN_PAYLOAD_TYPE = "unknown-payload-type"
    NEWER_FORMAT = "newer-format"
    AHEAD_OF_STREAM = "ahead-of-stream"
    STREAM_MISMATCH = "stream-mismatch"
    UNREADABLE = "unreadable"
    UNSIGNED = "unsigned"
    UNKNOWN_KEY = "unknown-key"
    BAD_SIGNATURE = "bad-signature"
    TOO_LARGE = "too-large"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class SnapshotRejection:
    reason: RejectionReason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.detail}"


def take_snapshot(
    aggregate: Aggregate[AggregatePayload],
    serializer: Serializer,
    *,
    taken_at: datetime,
    events_since_previous: int,
    compress_above: int | None = None,
    compression_level: int = 6,
    signing: SnapshotSigning | None = None,
    max_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES,
) -> AggregateSnapshot:
    """Serialize `aggregate`; payloads over `compress_above` bytes are zlib-compressed,
    and the snapshot is signed with `signing`'s current key if given.

    A payload over `max_bytes` raises `SnapshotRejectedError` (too large): it could not
    be restored.
    """
    payload_type, data = serializer.dump_payload(aggregate.payload)
    if len(data) > max_bytes:
        _reject(RejectionReason.TOO_LARGE, f"{len(data)} bytes, the limit is {max_bytes}")
    encoding = SnapshotEncoding.JSON
    if compress_above is not None and len(data) > compress_above:
        data, encoding = zlib.compress(data, compression_level), SnapshotEncoding.ZLIB
    snapshot = AggregateSnapshot(
        partition_keys=aggregate.partition_keys,
        version=aggregate.version,
        last_sortable_unique_id=aggregate.last_sortable_unique_id,
        payload=data,
        metadata=SnapshotMetadata(
            projector_name=aggregate.projector_name,
            projector_version=aggregate.projector_version,
            payload_type=payload_type,
            format_version=FORMAT_VERSION,
            encoding=encoding,
            checksum=zlib.crc32(data),
            taken_at=taken_at,
            events_since_previous=events_since_previous,
            schema_fingerprint=serializer.domain.schema_fingerprint(),
        ),
    )
    return snapshot if signing is None else signing.sign(snapshot)


def restore_snapshot(
    snapshot: AggregateSnapshot,
    projector: AggregateProjector,
    serializer: Serializer,
    *,
    signing: SnapshotSigning | None = None,
    max_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES,
) -> Aggregate[AggregatePayload]:
    """The aggregate a snapshot holds, if `projector` may use it.

    Raises `SnapshotRejectedError` saying why not: another projector or projector
    version, event schemas that changed since (another `schema_fingerprint`), a newer
    format, an unknown payload type, corrupt bytes, a payload that
    inflates beyond `max_bytes` (checked while inflating) or, with `signing`, a missing,
    unknown-key or wrong signature. Without `signing` a signature is not looked at.
    """
    m = snapshot.metadata
    if m.projector_name != projector.name:
        _reject(RejectionReason.OTHER_PROJECTOR, f"taken by {m.projector_name!r}")
    if m.projector_version != projector.version:
        _reject(
            RejectionReason.PROJECTOR_VERSION,
            f"taken by version {m.projector_version!r}, projector is {projector.version!r}",
        )
    if m.schema_fingerprint != (fingerprint := serializer.domain.schema_fingerprint()):
        _reject(
            RejectionReason.SCHEMA_CHANGED,
            f"taken under event schemas {m.schema_fingerprint or 'unversioned'!r}, "
            f"the domain's are {fingerprint or 'unversioned'!r}",
        )
    if m.format_version > FORMAT_VERSION:
        _reject(
            RejectionReason.NEWER_FORMAT,
            f"format {m.format_version}, this code reads up to {FORMAT_VERSION}",
        )
    last_id = _sortable_id_or_none(snapshot.last_sortable_unique_id)
    if not isinstance(snapshot.version, int) or snapshot.version < 1 or last_id is False:
        _reject(RejectionReason.CORRUPT, f"invalid version {snapshot.version!r} or last id")
    if zlib.crc32(snapshot.payload) != m.checksum:
        _reject(RejectionReason.CORRUPT, "payload checksum mismatch")
    if signing is not None and (rejection := signing.verify(snapshot)) is not None:
        raise SnapshotRejectedError(rejection)
    try:
        data = (
            _inflate(snapshot.payload, max_bytes)
            if m.encoding is SnapshotEncoding.ZLIB
            else snapshot.payload
        )
        if len(data) > max_bytes:
            _reject(RejectionReason.TOO_LARGE, f"{len(data)} bytes, the limit is {max_bytes}")
        payload = serializer.load_payload(m.payload_type, data)
    except UnknownTypeError as error:
        _reject(RejectionReason.UNKNOWN_PAYLOAD_TYPE, str(error))
    except (zlib.error, SerializationError) as error:
        _reject(RejectionReason.CORRUPT, str(error))
    return Aggregate(
        payload,
        snapshot.partition_keys,
        snapshot.version,
        last_id,
        projector.name,
        projector.version,
    )


def check_snapshot(
    snapshot: AggregateSnapshot,
    projector: AggregateProjector,
    serializer: Serializer,
    *,
    signing: SnapshotSigning | None = None,
    max_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES,
) -> SnapshotRejection | None:
    """Why `snapshot` cannot be used by `projector`, or None when it can."""
    try:
        restore_snapshot(snapshot, projector, serializer, signing=signing, max_bytes=max_bytes)
    except SnapshotRejectedError as error:
        return error.rejection
    return None


def _inflate(data: bytes, max_bytes: int) -> bytes:
    """`data` decompressed, refused as soon as it would exceed `max_bytes`.

    `max_length` stops zlib once it has produced one byte more than allowed, so a bomb
    costs at most about twice the limit in memory (zlib's output blocks, then the
    joined bytes); the rest of the input stays unread in `unconsumed_tail`.
    """
    inflater = zlib.decompressobj()
    inflated = inflater.decompress(data, max_bytes + 1)
    if len(inflated) > max_bytes:
        _reject(RejectionReason.TOO_LARGE, f"inflates beyond the limit of {max_bytes} bytes")
    if not inflater.eof:
        raise zlib.error("incomplete or truncated compressed payload")
    return inflated


def _reject(reason: RejectionReason, detail: str) -> NoReturn:
    raise SnapshotRejectedError(SnapshotRejection(reason, detail))


def _sortable_id_or_none(value: str | None) -> SortableUniqueId | Literal[False] | None:
    """The id `value` holds, None for none, False if it is not a sortable id."""
    if value is None:
        return None
    try:
        return SortableUniqueId(value)
    except SekibanError:
        return False
