"""Snapshot management: snapshot types, strategies, configuration and signing.

The replay optimizer (snapshot + delta) lives in `sekiban.loading`, one layer up, since
it reads stores; its names are also reachable here, resolved on first use so that
importing a snapshot type never imports the loading layer.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

from sekiban.snapshot.config import SnapshotConfiguration, SnapshotStrategyFactory
from sekiban.snapshot.signing import SnapshotSigning
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
    SnapshotRejection,
    SnapshotVersion,
    check_snapshot,
    restore_snapshot,
    take_snapshot,
)

if TYPE_CHECKING:
    from sekiban.loading import EventReplayOptimizer, LoadResult, LoadStatistics, SnapshotCounters

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
    "SnapshotRejection",
    "SnapshotSigning",
    "SnapshotStrategy",
    "SnapshotStrategyFactory",
    "SnapshotVersion",
    "TimeBasedSnapshotStrategy",
    "check_snapshot",
    "restore_snapshot",
    "take_snapshot",
]

_LOADING = ("EventReplayOptimizer", "LoadResult", "LoadStatistics", "SnapshotCounters")


def __getattr__(name: str) -> Any:
    if name in _LOADING:
        return getattr(import_module("sekiban.loading"), name)
    raise AttributeError(f"module 'sekiban.snapshot' has no attribute {name!r}")
