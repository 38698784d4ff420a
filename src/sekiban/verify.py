"""Verifying a store: every event decodes through the current domain, every stream's
versions run 1, 2, 3 ..., every aggregate replays, and every snapshot is one a load
would use and equals the aggregate that full replay gives at its version.

`verify_store` reads the store once, in global order and in batches, keeping per
stream only its last version, its folded aggregate and (until the replay reaches it)
its stored snapshot. It writes nothing. The `sekiban events verify` command runs it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.domain_types import DomainTypes
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.core.serialization import Serializer, StoredEvent
from sekiban.errors import (
    SerializationError,
    SnapshotRejectedError,
    UnknownTypeError,
    UpcastError,
)
from sekiban.snapshot.signing import SnapshotSigning
from sekiban.snapshot.types import RejectionReason, SnapshotRejection, restore_snapshot
from sekiban.stores.protocols import DEFAULT_BATCH_SIZE, EventStore, SnapshotStore

STALE_REASONS = frozenset(
    {
        RejectionReason.PROJECTOR_VERSION,
        RejectionReason.SCHEMA_CHANGED,
        RejectionReason.NEWER_FORMAT,
    }
)
"""Snapshot rejections that are expected after a code change (the snapshot is rebuilt
on the next load): counted as stale, not reported as problems."""


class ProblemKind(StrEnum):
    """What is wrong with a stored event, stream or snapshot."""

    UNDECODABLE = "undecodable"
    """An unknown event type, or a payload the current type does not accept."""
    UPCAST_FAILED = "upcast-failed"
    """An upcaster raised (or returned something other than a dict) on the event."""
    VERSION_GAP = "version-gap"
    """The stream's versions skip or repeat one."""
    REPLAY_FAILED = "replay-failed"
    """The projector raised while folding the event."""
    BAD_SNAPSHOT = "bad-snapshot"
    """A snapshot a load would discard, for a reason other than a code change."""
    SNAPSHOT_DIFFERS = "snapshot-differs"
    """A usable snapshot whose aggregate is not the one full replay gives."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing found wrong, with the stream (and event, if any) it is about."""

    kind: ProblemKind
    partition_keys: str
    detail: str
    version: int | None = None
    event_type: str | None = None
    position: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "partition_keys": self.partition_keys,
            "version": self.version,
            "event_type": self.event_type,
            "position": self.position,
            "detail": self.detail,
        }

    def __str__(self) -> str:
        where = (
            self.partition_keys
            if self.version is None
            else f"{self.partition_keys} v{self.version}"
        )
        return f"{self.kind.value}: {where}: {self.detail}"


@dataclass(slots=True)
class VerifyReport:
    """What `verify_store` found. `ok` is True when there are no problems.

    `problems` keeps the first `max_problems` found; `counts` counts them all.
    `unprojected_groups` are the stream groups no registered projector is named after:
    their events were decoded and their versions checked, but nothing was replayed.
    """

    events: int = 0
    streams: int = 0
    replayed_streams: int = 0
    snapshots: int = 0
    stale_snapshots: int = 0
    unprojected_groups: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    counts: Counter[ProblemKind] = field(default_factory=Counter)
    max_problems: int = 1000

    @property
    def ok(self) -> bool:
        return not self.counts

    def add(self, problem: Problem) -> None:
        self.counts[problem.kind] += 1
        if len(self.problems) < self.max_problems:
            self.problems.append(problem)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (what `sekiban events verify --json` prints)."""
        return {
            "ok": self.ok,
            "events": self.events,
            "streams": self.streams,
            "replayed_streams": self.replayed_streams,
            "snapshots": self.snapshots,
            "stale_snapshots": self.stale_snapshots,
            "unprojected_groups": sorted(self.unprojected_groups),
            "counts": {kind.value: n for kind, n in sorted(self.counts.items())},
            "problems": [p.to_dict() for p in self.problems],
            "problems_omitted": sum(self.counts.values()) - len(self.problems),
        }


@dataclass(slots=True)
class _Stream:
    projector: AggregateProjector | None
    version: int = 0
    aggregate: Aggregate[AggregatePayload] | None = None
    """The replay so far; None without a projector or once the replay hit a problem."""
    snapshot: Aggregate[AggregatePayload] | None = None
    """The stored snapshot, restored, until the replay reaches its version."""


class _Verifier:
    def __init__(
        self,
        event_store: EventStore,
        domain: DomainTypes,
        snapshot_store: SnapshotStore | None,
        signing: SnapshotSigning | None,
        batch_size: int,
        report: VerifyReport,
    ) -> None:
        self.event_store = event_store
        self.domain = domain
        self.serializer = Serializer(domain)
        self.snapshot_store = snapshot_store
        self.signing = signing
        self.batch_size = batch_size
        self.report = report
        self.streams: dict[PartitionKeys, _Stream] = {}
        self.projectors: dict[str, AggregateProjector | None] = {}

    async def scan(
        self, batches: AsyncIterator[list[StoredEvent]], progress: Callable[[int], None] | None
    ) -> None:
        for_stream = self.streams.get
        async for batch in batches:
            for stored in batch:
                stream = for_stream(stored.partition_keys)
                if stream is None:
                    stream = await self._open_stream(stored.partition_keys)
                self._check(stored, stream)
            self.report.events += len(batch)
            if progress is not None:
                progress(self.report.events)

    async def finish(self) -> None:
        """Compare the snapshots the scan did not reach: the stream may have grown since
        it was read (then read on), else the snapshot is ahead of it."""
        for keys, stream in self.streams.items():
            if stream.snapshot is None:
                continue
            async for batch in self.event_store.read_stream(keys, stream.version, self.batch_size):
                for stored in batch:
                    self._check(stored, stream)
                if stream.snapshot is None:
                    break
            if stream.snapshot is not None:
                detail = (
                    f"snapshot at version {stream.snapshot.version} but the stream ends at "
                    f"{stream.version}"
                )
                self._bad_snapshot(keys, SnapshotRejection(RejectionReason.AHEAD_OF_STREAM, detail))
        self.report.streams = len(self.streams)
        self.report.replayed_streams = sum(s.aggregate is not None for s in self.streams.values())

    async def _open_stream(self, keys: PartitionKeys) -> _Stream:
        projector = self._projector(keys.group)
        stream = self.streams[keys] = _Stream(projector)
        if projector is None:
            return stream
        stream.aggregate = projector.empty_aggregate(keys)
        if self.snapshot_store is None:
            return stream
        try:
            snapshot = await self.snapshot_store.get(keys, projector.name)
            if snapshot is not None:
                self.report.snapshots += 1
                stream.snapshot = restore_snapshot(
                    snapshot, projector, self.serializer, signing=self.signing
                )
        except SnapshotRejectedError as error:
            self._bad_snapshot(keys, error.rejection)
        return stream

    def _projector(self, group: str) -> AggregateProjector | None:
        if group not in self.projectors:
            try:
                self.projectors[group] = self.domain.projector(group)
            except UnknownTypeError:
                self.projectors[group] = None
                self.report.unprojected_groups.add(group)
        return self.projectors[group]

    def _check(self, stored: StoredEvent, stream: _Stream) -> None:
        if stored.version != stream.version + 1:
            self._problem(
                ProblemKind.VERSION_GAP,
                stored,
                f"version {stream.version} is followed by version {stored.version}",
            )
            stream.aggregate = stream.snapshot = None
        stream.version = stored.version
        try:
            event = self.serializer.to_event(stored)
        except UpcastError as error:
            self._problem(ProblemKind.UPCAST_FAILED, stored, str(error))
            stream.aggregate = stream.snapshot = None
            return
        except (SerializationError, UnknownTypeError) as error:
            self._problem(ProblemKind.UNDECODABLE, stored, str(error))
            stream.aggregate = stream.snapshot = None
            return
        if stream.aggregate is None or stream.projector is None:
            return
        try:
            stream.aggregate = stream.projector.fold(stream.aggregate, (event,))
        except Exception as error:  # the user's projector: report it, go on with the scan
            self._problem(ProblemKind.REPLAY_FAILED, stored, f"{type(error).__name__}: {error}")
            stream.aggregate = stream.snapshot = None
            return
        if stream.snapshot is not None and stream.snapshot.version == stored.version:
            self._compare(stream.aggregate, stream.snapshot)
            stream.snapshot = None

    def _compare(
        self, replayed: Aggregate[AggregatePayload], snapshot: Aggregate[AggregatePayload]
    ) -> None:
        keys = replayed.partition_keys
        if snapshot.last_sortable_unique_id != replayed.last_sortable_unique_id:
            detail = f"event {snapshot.version} of the stream is not the snapshot's"
            self._bad_snapshot(keys, SnapshotRejection(RejectionReason.STREAM_MISMATCH, detail))
        elif snapshot.payload != replayed.payload:
            self.report.add(
                Problem(
                    ProblemKind.SNAPSHOT_DIFFERS,
                    str(keys),
                    f"the snapshot's {type(snapshot.payload).__name__} is not the one full "
                    "replay gives at its version",
                    snapshot.version,
                )
            )

    def _bad_snapshot(self, keys: PartitionKeys, rejection: SnapshotRejection) -> None:
        if rejection.reason in STALE_REASONS:
            self.report.stale_snapshots += 1
        else:
            self.report.add(Problem(ProblemKind.BAD_SNAPSHOT, str(keys), str(rejection)))

    def _problem(self, kind: ProblemKind, stored: StoredEvent, detail: str) -> None:
        self.report.add(
            Problem(
                kind,
                str(stored.partition_keys),
                detail,
                stored.version,
                stored.event_type,
                stored.position,
            )
        )


async def verify_store(
    event_store: EventStore,
    domain: DomainTypes,
    *,
    snapshot_store: SnapshotStore | None = None,
    stream: PartitionKeys | None = None,
    signing: SnapshotSigning | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_problems: int = 1000,
    progress: Callable[[int], None] | None = None,
) -> VerifyReport:
    """Check every stream of `event_store` (or only `stream`) against `domain`.

    Each event is decoded through the domain (upcasters included); each stream's
    versions must run 1, 2, 3 ...; streams whose group is a registered projector's name
    are replayed through it, and their snapshot in `snapshot_store`, if any, must be
    usable (checked with `signing` if given) and equal to the replayed aggregate at its
    version. Problems are collected, not raised; the store's own errors (it cannot be
    reached) and `ConfigurationError` (an incomplete upcaster chain) are raised.
    `progress` is called after each batch with the number of events read so far.
    """
    report = VerifyReport(max_problems=max_problems)
    verifier = _Verifier(event_store, domain, snapshot_store, signing, batch_size, report)
    batches = (
        event_store.read_all(0, batch_size)
        if stream is None
        else event_store.read_stream(stream, 0, batch_size)
    )
    await verifier.scan(batches, progress)
    await verifier.finish()
    return report
