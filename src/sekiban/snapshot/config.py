"""Snapshot configuration: which strategy, its thresholds, compression, per projector."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, ClassVar

from sekiban.errors import ConfigurationError
from sekiban.snapshot.strategies import (
    AnyOfSnapshotStrategy,
    CountBasedSnapshotStrategy,
    HybridSnapshotStrategy,
    LoadCostSnapshotStrategy,
    NoSnapshotStrategy,
    SnapshotStrategy,
    TimeBasedSnapshotStrategy,
)


@dataclass(frozen=True)
class SnapshotConfiguration:
    """When to snapshot and how to store snapshots.

    `strategy` is a name known to `SnapshotStrategyFactory` ("count", "time", "hybrid",
    "none", or one registered there). `load_events_threshold` / `load_time_ms_threshold`
    add a load-cost trigger to any strategy. Payloads larger than `compress_above_bytes`
    are zlib-compressed (None: never). `overrides` maps projector names to their own
    configuration. Invalid values raise `ConfigurationError`.
    """

    strategy: str = "count"
    count_threshold: int = 50
    time_interval_ms: int = 60_000
    load_events_threshold: int | None = None
    load_time_ms_threshold: float | None = None
    compress_above_bytes: int | None = 16_384
    compression_level: int = 6
    overrides: Mapping[str, SnapshotConfiguration] = field(default_factory=dict)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        "frequent": {"strategy": "count", "count_threshold": 10},
        "relaxed": {"strategy": "hybrid", "count_threshold": 500, "time_interval_ms": 300_000},
        "load-cost": {"strategy": "none", "load_events_threshold": 200},
        "disabled": {"strategy": "none"},
    }

    def __post_init__(self) -> None:
        SnapshotStrategyFactory.require_known(self.strategy)
        _at_least("count_threshold", self.count_threshold, 1)
        _at_least("time_interval_ms", self.time_interval_ms, 1)
        _at_least("compression_level", self.compression_level, 0)
        if self.compression_level > 9:
            raise ConfigurationError(f"compression_level must be 0-9, got {self.compression_level}")
        for name in ("load_events_threshold", "load_time_ms_threshold", "compress_above_bytes"):
            value = getattr(self, name)
            if value is not None:
                _at_least(name, value, 0)
        for projector, override in self.overrides.items():
            if not isinstance(override, SnapshotConfiguration):
                raise ConfigurationError(
                    f"override for {projector!r} must be a SnapshotConfiguration"
                )

    @classmethod
    def preset(cls, name: str, **changes: Any) -> SnapshotConfiguration:
        """A named preset ("default", "frequent", "relaxed", "load-cost", "disabled")."""
        if name not in cls.PRESETS:
            raise ConfigurationError(
                f"unknown snapshot preset {name!r}; choose one of {sorted(cls.PRESETS)}"
            )
        return cls(**{**cls.PRESETS[name], **changes})

    def for_projector(self, projector_name: str) -> SnapshotConfiguration:
        """The configuration that applies to one projector."""
        return self.overrides.get(projector_name, self)

    def with_overrides(self, **overrides: SnapshotConfiguration) -> SnapshotConfiguration:
        return replace(self, overrides={**self.overrides, **overrides})


def _at_least(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigurationError(f"{name} must be a number >= {minimum}, got {value!r}")


StrategyBuilder = Callable[[SnapshotConfiguration], SnapshotStrategy]


class SnapshotStrategyFactory:
    """Builds the strategy a configuration names; custom names can be registered."""

    _builders: ClassVar[dict[str, StrategyBuilder]] = {
        "count": lambda c: CountBasedSnapshotStrategy(c.count_threshold),
        "time": lambda c: TimeBasedSnapshotStrategy(timedelta(milliseconds=c.time_interval_ms)),
        "hybrid": lambda c: HybridSnapshotStrategy(
            c.count_threshold, timedelta(milliseconds=c.time_interval_ms)
        ),
        "none": lambda c: NoSnapshotStrategy(),
    }

    @classmethod
    def register(cls, name: str, builder: StrategyBuilder) -> None:
        """Make `SnapshotConfiguration(strategy=name)` build a custom strategy."""
        cls._builders[name] = builder

    @classmethod
    def require_known(cls, name: str) -> None:
        if name not in cls._builders:
            raise ConfigurationError(
                f"unknown snapshot strategy {name!r}; choose one of {sorted(cls._builders)} "
                "or register it with SnapshotStrategyFactory.register"
            )

    @classmethod
    def create(cls, config: SnapshotConfiguration) -> SnapshotStrategy:
        cls.require_known(config.strategy)
        strategy = cls._builders[config.strategy](config)
        if config.load_events_threshold is None and config.load_time_ms_threshold is None:
            return strategy
        load_cost = LoadCostSnapshotStrategy(
            config.load_events_threshold, config.load_time_ms_threshold
        )
        return AnyOfSnapshotStrategy((strategy, load_cost))
