"""Snapshot helpers: put a snapshot in place, and assert how loads and saves went."""

from __future__ import annotations

from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.clock import utc_now
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.errors import SnapshotRejectedError
from sekiban.loading import LoadResult
from sekiban.snapshot.types import (
    AggregateSnapshot,
    RejectionReason,
    SnapshotRejection,
    check_snapshot,
    restore_snapshot,
    take_snapshot,
)
from sekiban.testing.scenario import Scenario


async def given_snapshot(
    scenario: Scenario,
    projector: type[AggregateProjector],
    partition_keys: PartitionKeys,
    version: int,
) -> AggregateSnapshot:
    """Save a snapshot of the aggregate as it was at `version` (built from its events)."""
    instance = scenario.domain.projector(projector)
    events = (await scenario.stream(partition_keys))[:version]
    if len(events) < version:
        raise AssertionError(f"the stream has {len(events)} events; cannot snapshot at {version}")
    aggregate = instance.fold(instance.empty_aggregate(partition_keys), events)
    snapshot = take_snapshot(
        aggregate,
        scenario.executor.repository.serializer,
        taken_at=utc_now(),
        events_since_previous=version,
    )
    await scenario.snapshot_store.save(snapshot)
    return snapshot


def assert_loaded_from_snapshot(result: LoadResult, version: int, replayed: int) -> None:
    """Assert the load used the snapshot at `version` and replayed `replayed` events."""
    stats = result.statistics
    assert stats.from_snapshot, f"the load did not use a snapshot ({stats.rejection})"
    assert stats.snapshot_version == version, (
        f"the load used the snapshot at {stats.snapshot_version}, not {version}"
    )
    assert stats.events_replayed == replayed, (
        f"the load replayed {stats.events_replayed} events, not {replayed}"
    )


def assert_replayed_in_full(
    result: LoadResult, reason: RejectionReason | None = None
) -> SnapshotRejection | None:
    """Assert the load replayed every event; with `reason`, that a snapshot was discarded
    for that reason."""
    stats = result.statistics
    assert not stats.from_snapshot, f"the load used the snapshot at {stats.snapshot_version}"
    if reason is not None:
        assert stats.rejection is not None and stats.rejection.reason is reason, (
            f"expected the snapshot to be discarded as {reason.value}, got {stats.rejection}"
        )
    return stats.rejection


async def assert_snapshot_taken(
    scenario: Scenario,
    projector: type[AggregateProjector],
    partition_keys: PartitionKeys,
    version: int,
) -> AggregateSnapshot:
    """Assert the stored snapshot of the aggregate is at `version`."""
    snapshot = await scenario.snapshot_store.get(partition_keys, projector.name)
    assert snapshot is not None, f"no snapshot of {partition_keys} for {projector.name}"
    assert snapshot.version == version, f"the snapshot is at {snapshot.version}, not {version}"
    return snapshot


ProjectorRef = AggregateProjector | type[AggregateProjector]


def _instance(scenario: Scenario, projector: ProjectorRef) -> AggregateProjector:
    return scenario.domain.projector(projector) if isinstance(projector, type) else projector


def assert_snapshot_compatible(
    scenario: Scenario, snapshot: AggregateSnapshot, projector: ProjectorRef
) -> Aggregate[AggregatePayload]:
    """Assert `projector` can use `snapshot`; returns the aggregate it holds."""
    serializer = scenario.executor.repository.serializer
    try:
        return restore_snapshot(snapshot, _instance(scenario, projector), serializer)
    except SnapshotRejectedError as error:
        raise AssertionError(f"the snapshot is incompatible: {error.rejection}") from None


def assert_snapshot_incompatible(
    scenario: Scenario,
    snapshot: AggregateSnapshot,
    projector: ProjectorRef,
    reason: RejectionReason,
) -> SnapshotRejection:
    """Assert `projector` rejects `snapshot` for `reason`. Pass an instance of a
    subclass with a bumped `version` to check what a version bump does."""
    serializer = scenario.executor.repository.serializer
    rejection = check_snapshot(snapshot, _instance(scenario, projector), serializer)
    assert rejection is not None, "the snapshot is compatible"
    assert rejection.reason is reason, f"rejected as {rejection.reason.value}, not {reason.value}"
    return rejection
