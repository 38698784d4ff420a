"""Snapshot strategies: when an aggregate should be snapshotted. Pure, clock injected."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from sekiban.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class SnapshotContext:
    """What a strategy may consider after a command (or a load).

    `events_since_snapshot` counts events after the newest usable snapshot (all of them
    when there is none); `last_snapshot_at` is when that snapshot was taken.
    `replayed_events` and `load_duration` describe the load that built the aggregate.
    """

    aggregate_version: int
    events_since_snapshot: int
    last_snapshot_at: datetime | None
    now: datetime
    replayed_events: int = 0
    load_duration: timedelta = timedelta(0)


@runtime_checkable
class SnapshotStrategy(Protocol):
    """Decides whether to snapshot. Implement this for a custom strategy."""

    def should_snapshot(self, context: SnapshotContext) -> bool: ...


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigurationError(f"{name} must be positive, got {value!r}")


@dataclass(frozen=True, slots=True)
class CountBasedSnapshotStrategy:
    """Snapshot once `threshold` events have accumulated since the last snapshot."""

    threshold: int

    def __post_init__(self) -> None:
        _positive("threshold", self.threshold)

    def should_snapshot(self, context: SnapshotContext) -> bool:
        return context.events_since_snapshot >= self.threshold


@dataclass(frozen=True, slots=True)
class TimeBasedSnapshotStrategy:
    """Snapshot when there are new events and `interval` has passed since the last one.

    An aggregate never snapshotted counts as overdue.
    """

    interval: timedelta

    def __post_init__(self) -> None:
        _positive("interval", self.interval.total_seconds())

    def should_snapshot(self, context: SnapshotContext) -> bool:
        if context.events_since_snapshot <= 0:
            return False
        last = context.last_snapshot_at
        return last is None or context.now - last >= self.interval


@dataclass(frozen=True, slots=True)
class LoadCostSnapshotStrategy:
    """Snapshot when building the aggregate was expensive (after Axon's load-time trigger).

    Fires when the load replayed more than `max_replayed_events` events or took longer
    than `max_load_time`; either limit may be None.
    """

    max_replayed_events: int | None = None
    max_load_time: timedelta | None = None

    def __post_init__(self) -> None:
        events, time = self.max_replayed_events, self.max_load_time
        if events is not None and (not isinstance(events, int) or events < 0):
            raise ConfigurationError(f"max_replayed_events must be >= 0, got {events!r}")
        if time is not None and (not isinstance(time, timedelta) or time < timedelta(0)):
            raise ConfigurationError(f"max_load_time must be a timedelta >= 0, got {time!r}")

    def should_snapshot(self, context: SnapshotContext) -> bool:
        if context.events_since_snapshot <= 0:
            return False
        too_many = (
            self.max_replayed_events is not None
            and context.replayed_events > self.max_replayed_events
        )
        too_slow = self.max_load_time is not None and context.load_duration > self.max_load_time
        return too_many or too_slow


@dataclass(frozen=True, slots=True)
class AnyOfSnapshotStrategy:
    """Snapshot when any of several strategies would."""

    strategies: tuple[SnapshotStrategy, ...]

    def should_snapshot(self, context: SnapshotContext) -> bool:
        return any(s.should_snapshot(context) for s in self.strategies)


class HybridSnapshotStrategy(AnyOfSnapshotStrategy):
    """Snapshot when either `count` events accumulated or `interval` has passed."""

    def __init__(self, count: int, interval: timedelta) -> None:
        super().__init__((CountBasedSnapshotStrategy(count), TimeBasedSnapshotStrategy(interval)))


class NoSnapshotStrategy:
    """Never snapshot: pure event sourcing."""

    def should_snapshot(self, context: SnapshotContext) -> bool:
        return False
