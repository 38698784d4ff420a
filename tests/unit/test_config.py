from datetime import UTC, datetime, timedelta

import pytest

from sekiban import ConfigurationError
from sekiban.snapshot import (
    AnyOfSnapshotStrategy,
    CountBasedSnapshotStrategy,
    HybridSnapshotStrategy,
    LoadCostSnapshotStrategy,
    NoSnapshotStrategy,
    SnapshotConfiguration,
    SnapshotContext,
    SnapshotStrategyFactory,
    TimeBasedSnapshotStrategy,
)


def test_defaults_snapshot_every_fifty_events_with_compression() -> None:
    config = SnapshotConfiguration()
    strategy = SnapshotStrategyFactory.create(config)
    assert strategy == CountBasedSnapshotStrategy(50)
    assert config.compress_above_bytes == 16_384


def test_plan_example_builds_a_hybrid_strategy() -> None:
    config = SnapshotConfiguration(strategy="hybrid", count_threshold=50, time_interval_ms=60_000)
    strategy = SnapshotStrategyFactory.create(config)
    assert isinstance(strategy, HybridSnapshotStrategy)
    assert strategy.strategies == (
        CountBasedSnapshotStrategy(50),
        TimeBasedSnapshotStrategy(timedelta(minutes=1)),
    )


def test_each_named_strategy_is_built() -> None:
    assert isinstance(
        SnapshotStrategyFactory.create(SnapshotConfiguration(strategy="none")), NoSnapshotStrategy
    )
    assert SnapshotStrategyFactory.create(
        SnapshotConfiguration(strategy="time", time_interval_ms=500)
    ) == TimeBasedSnapshotStrategy(timedelta(milliseconds=500))


def test_load_cost_settings_add_a_trigger_to_the_strategy() -> None:
    strategy = SnapshotStrategyFactory.create(SnapshotConfiguration.preset("load-cost"))
    assert isinstance(strategy, AnyOfSnapshotStrategy)
    assert isinstance(strategy.strategies[0], NoSnapshotStrategy)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"strategy": "sometimes"},
        {"count_threshold": -5},
        {"count_threshold": 0},
        {"time_interval_ms": 0},
        {"compress_above_bytes": -1},
        {"compression_level": 10},
        {"load_events_threshold": -1},
        {"count_threshold": True},
    ],
)
def test_invalid_configuration_is_rejected_with_a_clear_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match=next(iter(kwargs))):
        SnapshotConfiguration(**kwargs)  # type: ignore[arg-type]


def test_presets_are_named_and_unknown_presets_rejected() -> None:
    assert SnapshotConfiguration.preset("frequent").count_threshold == 10
    assert SnapshotConfiguration.preset("relaxed", count_threshold=7).count_threshold == 7
    with pytest.raises(ConfigurationError, match="frequent"):
        SnapshotConfiguration.preset("nope")


def test_overrides_apply_per_projector() -> None:
    config = SnapshotConfiguration().with_overrides(cart=SnapshotConfiguration(strategy="none"))
    assert config.for_projector("cart").strategy == "none"
    assert config.for_projector("account") is config


class Always:
    def should_snapshot(self, context: SnapshotContext) -> bool:
        return True


def test_a_custom_strategy_is_named_in_the_configuration_itself() -> None:
    config = SnapshotConfiguration(strategy="always", strategies={"always": lambda c: Always()})
    assert isinstance(SnapshotStrategyFactory.create(config), Always)


def test_a_custom_strategy_instance_is_used_as_given() -> None:
    always = Always()
    assert SnapshotStrategyFactory.create(SnapshotConfiguration(strategy=always)) is always


def test_a_custom_name_in_one_configuration_is_unknown_to_another() -> None:
    SnapshotConfiguration(strategy="always", strategies={"always": lambda c: Always()})
    with pytest.raises(ConfigurationError, match="unknown snapshot strategy 'always'"):
        SnapshotConfiguration(strategy="always")
    assert not hasattr(SnapshotStrategyFactory, "register")


def test_a_strategy_that_is_neither_a_name_nor_a_strategy_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="strategy must be"):
        SnapshotConfiguration(strategy=42)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [50, 0.05, "50ms", timedelta(seconds=-1)])
def test_the_load_time_threshold_is_a_timedelta(value: object) -> None:
    with pytest.raises(ConfigurationError, match="load_time_threshold"):
        SnapshotConfiguration(load_time_threshold=value)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="max_load_time"):
        LoadCostSnapshotStrategy(max_load_time=value)  # type: ignore[arg-type]


def test_a_load_time_threshold_adds_the_load_cost_trigger() -> None:
    config = SnapshotConfiguration(load_time_threshold=timedelta(milliseconds=20))
    strategy = SnapshotStrategyFactory.create(config)
    slow = SnapshotContext(1, 1, None, datetime.now(UTC), 1, timedelta(milliseconds=21))
    fast = SnapshotContext(1, 1, None, datetime.now(UTC), 1, timedelta(milliseconds=19))
    assert strategy.should_snapshot(slow) and not strategy.should_snapshot(fast)
