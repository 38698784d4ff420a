"""`Projections`: a process's multi-projections, restored from a projection store, caught
up from the event store, persisted as they advance, rebuilt when asked."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

from sekiban import telemetry
from sekiban.core.clock import Clock, utc_now
from sekiban.core.command import CommandResponse
from sekiban.core.domain_types import DomainTypes
from sekiban.core.gc_pause import gc_paused
from sekiban.core.query import MultiProjector, Query
from sekiban.core.serialization import Serializer
from sekiban.errors import SekibanError, SnapshotRejectedError
from sekiban.projections.blobs import BlobStore
from sekiban.projections.consistency import ConsistencyToken, wait_until
from sekiban.projections.encoding import (
    CHUNK_BYTES,
    DEFAULT_MAX_STATE_BYTES,
    DEFAULT_OUT_OF_LINE_BYTES,
    DEFAULT_SPILL_BYTES,
    decode_lines,
    encode_state,
)
from sekiban.projections.projection import Projection
from sekiban.projections.store import ProjectionRecord, ProjectionStore
from sekiban.snapshot.signing import SnapshotSigning
from sekiban.snapshot.types import RejectionReason, SnapshotRejection
from sekiban.stores.protocols import EventStore

R = TypeVar("R")
ProjectorKey = type[MultiProjector[Any]] | MultiProjector[Any] | str
logger = logging.getLogger("sekiban.projections")

DEFAULT_CONSISTENCY_TIMEOUT = timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class ProjectionOptions:
    """How projection states are persisted.

    `persist_every`: events applied between two saves of a state (a restart re-reads at
    most this many). `compression_level`: zlib level, None for none. `spill_above`: bytes
    of an encoded state kept in memory while it is written; the rest goes to a temporary
    file. `out_of_line_above`: the largest encoded state kept in the projection store's
    row; a larger one goes to the blob store in chunks, and without a blob store it is
    not saved (logged and counted in `save_failures`). `max_state_bytes`: the largest
    state (inflated) written or restored. `signing`: sign records, and refuse unsigned
    or wrongly signed ones.

    Memory while saving or restoring: the state itself, one line of its JSON, zlib's
    buffers, and at most `spill_above` encoded bytes; a state kept in the row is also
    held whole, once, as the row's value (at most `out_of_line_above` bytes, below
    `spill_above` by default, so with the defaults nothing encoded beyond `spill_above`
    is ever held).
    """

    persist_every: int = 10_000
    compression_level: int | None = 6
    spill_above: int = DEFAULT_SPILL_BYTES
    out_of_line_above: int = DEFAULT_OUT_OF_LINE_BYTES
    max_state_bytes: int = DEFAULT_MAX_STATE_BYTES
    signing: SnapshotSigning | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class _Saved:
    """Where a projection stood when this process last saved or restored it
    (`stored`), or opened it new."""

    position: int
    events_applied: int
    stored: bool

    @classmethod
    def of(cls, projection: Projection[Any], stored: bool) -> _Saved:
        return cls(projection.position, projection.events_applied, stored)


@dataclass(slots=True)
class ProjectionCounters:
    """What happened to persisted states in this process."""

    restored: int = 0
    rejected: int = 0
    saved: int = 0
    save_failures: int = 0


class Projections:
    """Answers queries from multi-projections, each caught up on every query.

    With a `projection_store`, a projection starts from its persisted state (when that
    was written by the same projector version under the same event schemas and passes
    its integrity checks; otherwise it is rebuilt from position 0) and is saved again
    every `options.persist_every` events, so a restart reads only the events after the
    last save. Without one, projections live in this process only.
    """

    def __init__(
        self,
        domain: DomainTypes,
        event_store: EventStore,
        projection_store: ProjectionStore | None = None,
        *,
        blob_store: BlobStore | None = None,
        options: ProjectionOptions | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.domain = domain
        self.event_store = event_store
        self.projection_store = projection_store
        self.blob_store = blob_store
        self.options = options or ProjectionOptions()
        self.counters = ProjectionCounters()
        self._serializer = Serializer(domain)
        self._clock = clock
        self._live: dict[str, Projection[Any]] = {}
        self._saved: dict[str, _Saved] = {}
        self._opening = asyncio.Lock()

    def projector(self, key: ProjectorKey) -> MultiProjector[Any]:
        """The registered multi-projector `key` names (a class, an instance or a name)."""
        if isinstance(key, MultiProjector):
            return key
        return self.domain.multi_projector(key)

    async def query(
        self,
        query: Query[R],
        *,
        after: CommandResponse | ConsistencyToken | str | None = None,
        timeout: timedelta = DEFAULT_CONSISTENCY_TIMEOUT,
    ) -> R:
        """Answer `query` from its projection, caught up to the latest event.

        With `after` (a command's response or its `consistency_token`), wait until the
        projection has applied that command's events, up to `timeout`
        (`ConsistencyTimeoutError` after it). A projector error raises `ProjectionError`.
        """
        projector = self.projector(type(query).multi_projector)
        attributes = {
            "sekiban.query.type": type(query).__name__,
            "sekiban.projector.name": projector.name,
            "sekiban.projector.version": projector.version,
        }
        with telemetry.span("sekiban.query", attributes):
            target = None
            if after is not None:
                target = await ConsistencyToken.of(after).position(self.event_store)
            return await wait_until(
                lambda: self._answer(projector, query, target), projector.name, target, timeout
            )

    async def _answer(
        self, projector: MultiProjector[Any], query: Query[R], target: int | None
    ) -> tuple[bool, R | None]:
        projection = await self.catch_up(projector)
        async with projection.lock:
            if target is not None and projection.position < target:
                return False, None
            return True, query.handle(projection.state)

    async def catch_up(
        self, key: ProjectorKey, *, stop: Callable[[], bool] | None = None
    ) -> Projection[Any]:
        """The projection of `key`, caught up to the latest event, and saved each time
        `persist_every` events were applied since its last save (so a long catch-up
        keeps its progress). `stop` is asked after each batch of events: when it says
        so, the catch-up ends there.

        After a projector error the state that failed is discarded; the projection
        starts again from its persisted state, and with a projection store it is saved
        again just before the failed event, so each retry costs only that event.
        """
        projector = self.projector(key)
        projection = await self._usable(projector)
        saving = True  # until a save fails: then this call catches up without saving

        def pause() -> bool:
            return (saving and self._persist_due(projection)) or (stop is not None and stop())

        while True:
            async with projection.lock:
                attributes = {
                    "sekiban.projector.name": projector.name,
                    "sekiban.projection.position": projection.position,
                }
                with telemetry.span("sekiban.projection.catch_up", attributes) as span:
                    applied = await projection.catch_up(self.event_store, stop=pause)
                    span.set_attribute("sekiban.events.applied", applied)
                telemetry.projection_caught_up(projector.name, applied)
            due = saving and self._persist_due(projection)
            if due:
                await self.persist(projector)
                # Still due: the save failed (logged and counted). Trying again after
                # every batch would spin; the next call tries again.
                saving = not self._persist_due(projection)
            if not due or (stop is not None and stop()):
                return projection

    async def projection(self, key: ProjectorKey) -> Projection[Any]:
        """The projection of `key` as this process holds it (restored from the store,
        or new), without catching up."""
        return await self._projection(self.projector(key))

    def position(self, key: ProjectorKey) -> int:
        """The position of the projection of `key` in this process (0 when not open)."""
        projection = self._live.get(self.projector(key).name)
        return 0 if projection is None else projection.position

    def checkpoint(self, key: ProjectorKey) -> int | None:
        """The position of the state of `key` this process last saved or restored
        (None when it has done neither)."""
        saved = self._saved.get(self.projector(key).name)
        return saved.position if saved is not None and saved.stored else None

    async def persist(self, key: ProjectorKey) -> bool:
        """Save the projection's state now; True when it is the stored one.

        A failure is logged and counted, never raised: the projection keeps working in
        memory and the next save tries again.
        """
        if self.projection_store is None:
            return False
        projector = self.projector(key)
        projection = await self._projection(projector)
        async with projection.lock:
            if projection.broken is not None:
                return False
            try:
                saved = await self._save(projection)
            except (SekibanError, OSError) as error:
                self.counters.save_failures += 1
                logger.warning("projection %s was not saved: %s", projector.name, error)
                return False
            self._saved[projector.name] = _Saved.of(projection, True)
            return saved

    def forget(self, key: ProjectorKey) -> None:
        """Drop the projection from this process without saving it: its next use
        restores it from the projection store (for a runner that lost its lease: the
        process holding it now saves newer states)."""
        name = self.projector(key).name
        self._live.pop(name, None)
        self._saved.pop(name, None)

    def unsaved(self, key: ProjectorKey) -> bool:
        """Whether the projection of `key` moved since this process last saved or
        restored it."""
        name = self.projector(key).name
        projection, saved = self._live.get(name), self._saved.get(name)
        return projection is not None and (saved is None or saved.position != projection.position)

    def _persist_due(self, projection: Projection[Any]) -> bool:
        saved = self._saved.get(projection.name)
        applied = projection.events_applied - (saved.events_applied if saved else 0)
        return self.projection_store is not None and applied >= self.options.persist_every

    async def _usable(self, projector: MultiProjector[Any]) -> Projection[Any]:
        projection = await self._projection(projector)
        async with projection.lock:
            failed = projection.broken
            if failed is not None and self._live.get(projector.name) is projection:
                # Its state may hold the failed call's changes: start again from the store.
                del self._live[projector.name]
        if failed is None:
            return projection
        projection = await self._projection(projector)
        if self.projection_store is not None and failed.position > projection.position:
            async with projection.lock:
                await projection.catch_up(self.event_store, before=failed.position)
            if self.unsaved(projector):
                await self.persist(projector)
        return projection

    async def rebuild(
        self, key: ProjectorKey, *, progress: Callable[[int], None] | None = None
    ) -> Projection[Any]:
        """Build the projection again from position 0 while the current one (in this
        process, or the stored one for other processes) keeps answering queries, then
        switch to the new one and save it.

        `progress` is called with the position reached after each batch.
        """
        projector = self.projector(key)
        fresh = self._new(projector)
        await fresh.catch_up(self.event_store, progress=progress)
        # The stored state is not restored here only to be replaced.
        current = self._live.get(projector.name) or fresh
        async with current.lock:
            await fresh.catch_up(self.event_store, progress=progress)  # what came meanwhile
            self._live[projector.name] = fresh
        await self.persist(projector)
        return fresh

    async def close(self) -> None:
        """Save every projection that applied events since its last save."""
        for name in list(self._live):
            if self.unsaved(name):
                await self.persist(name)

    # -- loading and saving -------------------------------------------------------

    async def _projection(self, projector: MultiProjector[Any]) -> Projection[Any]:
        projection = self._live.get(projector.name)
        if projection is not None:
            return projection
        async with self._opening:
            projection = self._live.get(projector.name)
            if projection is None:
                restored = await self._restore(projector)
                projection = restored or self._new(projector)
                self._live[projector.name] = projection
                self._saved[projector.name] = _Saved.of(projection, restored is not None)
            return projection

    def _new(self, projector: MultiProjector[Any]) -> Projection[Any]:
        return Projection(projector, self._serializer, projector.initial_state())

    async def _restore(self, projector: MultiProjector[Any]) -> Projection[Any] | None:
        if self.projection_store is None:
            return None
        try:
            record = await self.projection_store.get(projector.name)
            if record is None:
                return None
            self._check(record, projector)
            state = await self._read_state(record, projector)
        except SnapshotRejectedError as error:
            self.counters.rejected += 1
            logger.warning(
                "persisted state of projection %s not used (%s): rebuilding from the events",
                projector.name,
                error.rejection,
            )
            return None
        self.counters.restored += 1
        return Projection(
            projector, self._serializer, state, record.position, record.events_applied
        )

    def _check(self, record: ProjectionRecord, projector: MultiProjector[Any]) -> None:
        if record.projector_version != projector.version:
            _reject(
                RejectionReason.PROJECTOR_VERSION,
                f"written by version {record.projector_version!r}, projector is "
                f"{projector.version!r}",
            )
        fingerprint = self.domain.schema_fingerprint()
        if record.schema_fingerprint != fingerprint:
            _reject(
                RejectionReason.SCHEMA_CHANGED,
                f"written under event schemas {record.schema_fingerprint or 'unversioned'!r}, "
                f"the domain's are {fingerprint or 'unversioned'!r}",
            )
        signing = self.options.signing
        if signing is not None:
            rejection = signing.check(record.signature, record.canonical_form())
            if rejection is not None:
                raise SnapshotRejectedError(rejection)

    async def _read_state(self, record: ProjectionRecord, projector: MultiProjector[Any]) -> Any:
        codec = projector.state_codec(self._serializer)
        limit = self.options.max_state_bytes
        if record.blob_key is None:
            chunks: Iterator[bytes] = iter((record.payload or b"",))
            return await asyncio.to_thread(_load, codec, chunks, record, limit)
        if self.blob_store is None:
            _reject(RejectionReason.MISSING, f"out of line at {record.blob_key!r}, no blob store")
        file = await self.blob_store.open(record.blob_key)
        if file is None:
            _reject(RejectionReason.MISSING, f"blob {record.blob_key!r} is missing")
        with file:
            blob_chunks = iter(lambda: file.read(CHUNK_BYTES), b"")
            return await asyncio.to_thread(_load, codec, blob_chunks, record, limit)

    async def _save(self, projection: Projection[Any]) -> bool:
        assert self.projection_store is not None
        projector, options = projection.projector, self.options
        previous_blob = None
        if self.blob_store is not None:
            # Only the key is kept: the record may hold a whole inline state.
            with suppress(SnapshotRejectedError):
                previous = await self.projection_store.get(projector.name)
                previous_blob = previous.blob_key if previous else None
        codec = projector.state_codec(self._serializer)
        encoded = await asyncio.to_thread(
            encode_state,
            codec.dump(projection.state),
            compression_level=options.compression_level,
            spill_above=options.spill_above,
            max_bytes=options.max_state_bytes,
        )
        with encoded:
            blob_key = payload = None
            if encoded.size <= options.out_of_line_above:
                payload = encoded.read()
            elif self.blob_store is None:
                # Read whole into the row, a state of any size would be held in memory
                # at once (the failure this streaming exists to prevent).
                _reject(
                    RejectionReason.TOO_LARGE,
                    f"encoded state of {encoded.size} bytes is above out_of_line_above "
                    f"({options.out_of_line_above}) and there is no blob store to hold it",
                )
            else:
                blob_key = f"{projector.name}/{encoded.sha256}"
                await self.blob_store.put(blob_key, encoded.chunks())
            record = ProjectionRecord(
                name=projector.name,
                projector_version=projector.version,
                schema_fingerprint=self.domain.schema_fingerprint(),
                position=projection.position,
                events_applied=projection.events_applied,
                taken_at=self._clock(),
                encoding=encoded.encoding,
                size=encoded.size,
                sha256=encoded.sha256,
                payload=payload,
                blob_key=blob_key,
            )
        if options.signing is not None:
            record = _signed(record, options.signing)
        saved = await self.projection_store.save(record)
        self.counters.saved += saved
        if saved and self.blob_store is not None and previous_blob and previous_blob != blob_key:
            # Only after the row names the new state may the blob the old row named go.
            # (A refused save keeps its blob: a newer row may name the same bytes.)
            await self.blob_store.delete(previous_blob)
        return saved


def _load(codec: Any, chunks: Iterator[bytes], record: ProjectionRecord, limit: int) -> Any:
    lines = decode_lines(chunks, record.encoding, record.sha256, max_bytes=limit)
    try:
        with gc_paused():
            return codec.load(lines)
    except SnapshotRejectedError:
        raise
    except (ValueError, TypeError, KeyError, SekibanError) as error:
        _reject(RejectionReason.CORRUPT, f"state does not decode: {error}")


def _signed(record: ProjectionRecord, signing: SnapshotSigning) -> ProjectionRecord:
    return replace(record, signature=signing.signature_of(record.canonical_form()))


def _reject(reason: RejectionReason, detail: str) -> NoReturn:
    raise SnapshotRejectedError(SnapshotRejection(reason, detail))
