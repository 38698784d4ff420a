"""Snapshot configuration: which strategy, its thresholds, compression, per projector."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from types import MappingProxyType
from typing import Any, ClassVar

from sekiban.errors import ConfigurationError
from sekiban.snapshot.signing import SnapshotSigning
from sekiban.snapshot.strategies import (
    AnyOfSnapshotStrategy,
    CountBasedSnapshotStrategy,
    HybridSnapshotStrategy,
    LoadCostSnapshotStrategy,
    NoSnapshotStrategy,
    SnapshotStrategy,
    TimeBasedSnapshotStrategy,
)
from sekiban.snapshot.types import DEFAULT_MAX_SNAPSHOT_BYTES

DEFAULT_TIME_INTERVAL = timedelta(minutes=1)


@dataclass(frozen=True)
class SnapshotConfiguration:
    """When to snapshot and how to store snapshots.

    `strategy` is a built-in name ("count", "time", "hybrid", "none"), a name in
    `strategies` (custom names mapped to builders: `config -> SnapshotStrategy`), or a
    `SnapshotStrategy` instance. Custom strategies are part of the configuration value,
    never registered process-wide, so differently configured executors do not meet.
    `time_interval` is how often the "time" and "hybrid" strategies snapshot (default
    one minute); `time_interval_ms` is the same in milliseconds, accepted for the plan's
    readers and folded into `time_interval` (it reads None afterwards).
    `load_events_threshold` / `load_time_threshold` (a `timedelta`) add a load-cost
    trigger to any strategy. Payloads larger than `compress_above_bytes` are zlib-compressed (None:
    never). `overrides` maps projector names to their own configuration (an override
    naming a custom strategy carries its own `strategies`).

    `signing` (a `SnapshotSigning`) signs every snapshot taken and refuses, on load,
    any snapshot without a valid signature by an accepted key; without it signatures
    are neither written nor checked. A stored payload that inflates beyond
    `max_snapshot_bytes` is refused, checked while inflating. Both apply to every
    projector: an override may not set different ones. Invalid values raise
    `ConfigurationError`.
    """

    strategy: str | SnapshotStrategy = "count"
    count_threshold: int = 50
    time_interval: timedelta = DEFAULT_TIME_INTERVAL
    time_interval_ms: int | None = None
    load_events_threshold: int | None = None
    load_time_threshold: timedelta | None = None
    compress_above_bytes: int | None = 16_384
    compression_level: int = 6
    signing: SnapshotSigning | None = None
    max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES
    overrides: Mapping[str, SnapshotConfiguration] = field(default_factory=dict)
    strategies: Mapping[str, StrategyBuilder] = field(default_factory=dict)

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "default": {},
        "frequent": {"strategy": "count", "count_threshold": 10},
        "relaxed": {
            "strategy": "hybrid",
            "count_threshold": 500,
            "time_interval": timedelta(minutes=5),
        },
        "load-cost": {"strategy": "none", "load_events_threshold": 200},
        "disabled": {"strategy": "none"},
    }

    def __post_init__(self) -> None:
        SnapshotStrategyFactory.require_known(self)
        _at_least("count_threshold", self.count_threshold, 1)
        object.__setattr__(self, "time_interval", _time_interval(self))
        object.__setattr__(self, "time_interval_ms", None)
        _at_least("compression_level", self.compression_level, 0)
        _at_least("max_snapshot_bytes", self.max_snapshot_bytes, 1)
        if self.signing is not None and not isinstance(self.signing, SnapshotSigning):
            # The type only: a string here is likely the secret itself.
            raise ConfigurationError(
                f"signing must be a SnapshotSigning, got a {type(self.signing).__name__}"
            )
        if self.compression_level > 9:
            raise ConfigurationError(f"compression_level must be 0-9, got {self.compression_level}")
        threshold = self.load_time_threshold
        if threshold is not None and (
            not isinstance(threshold, timedelta) or threshold < timedelta(0)
        ):
            raise ConfigurationError(
                f"load_time_threshold must be a timedelta >= 0, got {threshold!r}"
            )
        for name in ("load_events_threshold", "compress_above_bytes"):
            value = getattr(self, name)
            if value is not None:
                _at_least(name, value, 0)
        for projector, override in self.overrides.items():
            if not isinstance(override, SnapshotConfiguration):
                raise ConfigurationError(
                    f"override for {projector!r} must be a SnapshotConfiguration"
                )
            # One reader checks every projector's snapshots: an override's own keys or
            # limit would be silently ignored, so they are refused.
            if override.signing not in (None, self.signing) or override.max_snapshot_bytes not in (
                DEFAULT_MAX_SNAPSHOT_BYTES,
                self.max_snapshot_bytes,
            ):
                raise ConfigurationError(
                    f"override for {projector!r} sets its own signing or max_snapshot_bytes; "
                    "set them on the top-level SnapshotConfiguration"
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


def _time_interval(config: SnapshotConfiguration) -> timedelta:
    interval, ms = config.time_interval, config.time_interval_ms
    if ms is not None:
        _at_least("time_interval_ms", ms, 1)
        if interval not in (DEFAULT_TIME_INTERVAL, timedelta(milliseconds=ms)):
            raise ConfigurationError(
                f"give time_interval or time_interval_ms, not both ({interval} vs {ms} ms)"
            )
        return timedelta(milliseconds=ms)
    if not isinstance(interval, timedelta) or interval <= timedelta(0):
        raise ConfigurationError(f"time_interval must be a positive timedelta, got {interval!r}")
    return interval


def _at_least(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigurationError(f"{name} must be a number >= {minimum}, got {value!r}")


StrategyBuilder = Callable[[SnapshotConfiguration], SnapshotStrategy]

BUILT_IN_STRATEGIES: Mapping[str, StrategyBuilder] = MappingProxyType(
    {
        "count": lambda c: CountBasedSnapshotStrategy(c.count_threshold),
        "time": lambda c: TimeBasedSnapshotStrategy(c.time_interval),
        "hybrid": lambda c: HybridSnapshotStrategy(c.count_threshold, c.time_interval),
        "none": lambda c: NoSnapshotStrategy(),
    }
)


class SnapshotStrategyFactory:
    """Builds the strategy a configuration names, from the built-in names and the
    configuration's own `strategies`; it holds no state of its own."""

    @staticmethod
    def builders(config: SnapshotConfiguration) -> Mapping[str, StrategyBuilder]:
        """The strategy names `config` may use: built-in ones, then its own."""
        return {**BUILT_IN_STRATEGIES, **config.strategies}

    @classmethod
    def require_known(cls, config: SnapshotConfiguration) -> None:
        """Raise `ConfigurationError` unless `config.strategy` can be built."""
        strategy = config.strategy
        if isinstance(strategy, str):
            names = cls.builders(config)
            if strategy not in names:
                raise ConfigurationError(
                    f"unknown snapshot strategy {strategy!r}; choose one of {sorted(names)}, "
                    "name a custom one in SnapshotConfiguration(strategies=...), or pass a "
                    "SnapshotStrategy instance"
                )
        elif not isinstance(strategy, SnapshotStrategy):
            raise ConfigurationError(
                f"strategy must be a strategy name or a SnapshotStrategy, got {strategy!r}"
            )

    @classmethod
    def create(cls, config: SnapshotConfiguration) -> SnapshotStrategy:
        """The strategy `config` describes, with its load-cost trigger if it has one."""
        cls.require_known(config)
        strategy = config.strategy
        if isinstance(strategy, str):
            strategy = cls.builders(config)[strategy](config)
        if config.load_events_threshold is None and config.load_time_threshold is None:
            return strategy
        load_cost = LoadCostSnapshotStrategy(
            config.load_events_threshold, config.load_time_threshold
        )
        return AnyOfSnapshotStrategy((strategy, load_cost))
