from datetime import UTC, datetime, timedelta

import pytest

from sekiban import ConfigurationError
from sekiban.snapshot import (
    CountBasedSnapshotStrategy,
    HybridSnapshotStrategy,
    LoadCostSnapshotStrategy,
    NoSnapshotStrategy,
    SnapshotContext,
    SnapshotStrategy,
    TimeBasedSnapshotStrategy,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def ctx(
    since: int, last_ago: timedelta | None = None, replayed: int = 0, load_ms: float = 0
) -> SnapshotContext:
    return SnapshotContext(
        aggregate_version=100,
        events_since_snapshot=since,
        last_snapshot_at=None if last_ago is None else NOW - last_ago,
        now=NOW,
        replayed_events=replayed,
        load_duration=timedelta(milliseconds=load_ms),
    )


def test_count_based_fires_at_the_threshold() -> None:
    strategy = CountBasedSnapshotStrategy(5)
    assert [strategy.should_snapshot(ctx(n)) for n in (0, 4, 5, 6)] == [False, False, True, True]


def test_time_based_needs_new_events_and_the_interval_elapsed() -> None:
    strategy = TimeBasedSnapshotStrategy(timedelta(minutes=1))
    assert not strategy.should_snapshot(ctx(3, timedelta(seconds=59)))
    assert strategy.should_snapshot(ctx(3, timedelta(seconds=60)))
    assert not strategy.should_snapshot(ctx(0, timedelta(hours=1)))
    assert strategy.should_snapshot(ctx(1, None))  # never snapshotted: overdue


def test_hybrid_fires_when_either_fires() -> None:
    strategy = HybridSnapshotStrategy(10, timedelta(minutes=1))
    assert strategy.should_snapshot(ctx(10, timedelta(seconds=1)))
    assert strategy.should_snapshot(ctx(1, timedelta(minutes=2)))
    assert not strategy.should_snapshot(ctx(9, timedelta(seconds=30)))


def test_no_snapshot_never_fires() -> None:
    assert not NoSnapshotStrategy().should_snapshot(ctx(10**6, timedelta(days=365)))


def test_load_cost_fires_on_expensive_loads_only() -> None:
    strategy = LoadCostSnapshotStrategy(
        max_replayed_events=100, max_load_time=timedelta(milliseconds=50)
    )
    assert strategy.should_snapshot(ctx(1, replayed=101))
    assert strategy.should_snapshot(ctx(1, replayed=3, load_ms=51))
    assert not strategy.should_snapshot(ctx(1, replayed=100, load_ms=50))
    assert not strategy.should_snapshot(ctx(0, replayed=1000))


def test_custom_strategies_implement_the_protocol() -> None:
    class EveryEven:
        def should_snapshot(self, context: SnapshotContext) -> bool:
            return context.aggregate_version % 2 == 0

    assert isinstance(EveryEven(), SnapshotStrategy)
    assert EveryEven().should_snapshot(ctx(1))


@pytest.mark.parametrize(
    "build",
    [
        lambda: CountBasedSnapshotStrategy(0),
        lambda: CountBasedSnapshotStrategy(-1),
        lambda: TimeBasedSnapshotStrategy(timedelta(0)),
        lambda: LoadCostSnapshotStrategy(max_replayed_events=-1),
    ],
)
def test_invalid_thresholds_are_rejected(build: object) -> None:
    with pytest.raises(ConfigurationError):
        build()  # type: ignore[operator]
