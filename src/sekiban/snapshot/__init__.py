"""Snapshot management: types, strategies, the replay optimizer and configuration."""

from sekiban.snapshot.config import SnapshotConfiguration, SnapshotStrategyFactory
from sekiban.snapshot.replay import (
    EventReplayOptimizer,
    LoadResult,
    LoadStatistics,
    SnapshotCounters,
)
from sekiban.snapshot.strategies import (
    AnyOfSnapshotStrategy,
    CountBasedSnapshotStrategy,
    HybridSnapshotStrategy,
    LoadCostSnapshotStrategy,
    NoSnapshotStrategy,
    SnapshotContext,
    SnapshotStrategy,
    TimeBasedSnapshotStrategy,
)
from sekiban.snapshot.types import (
    AggregateSnapshot,
    RejectionReason,
    SnapshotEncoding,
    SnapshotMetadata,
    SnapshotRejectedError,
    SnapshotRejection,
    SnapshotVersion,
    check_snapshot,
    restore_snapshot,
    take_snapshot,
)

__all__ = [
    "AggregateSnapshot",
    "AnyOfSnapshotStrategy",
    "CountBasedSnapshotStrategy",
    "EventReplayOptimizer",
    "HybridSnapshotStrategy",
    "LoadCostSnapshotStrategy",
    "LoadResult",
    "LoadStatistics",
    "NoSnapshotStrategy",
    "RejectionReason",
    "SnapshotConfiguration",
    "SnapshotContext",
    "SnapshotCounters",
    "SnapshotEncoding",
    "SnapshotMetadata",
    "SnapshotRejectedError",
    "SnapshotRejection",
    "SnapshotStrategy",
    "SnapshotStrategyFactory",
    "SnapshotVersion",
    "TimeBasedSnapshotStrategy",
    "check_snapshot",
    "restore_snapshot",
    "take_snapshot",
]
