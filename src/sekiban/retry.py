"""RetryPolicy: how often to try again, and how long to wait before each try.

One value for every retry in sekiban: a command that lost a race with another writer
(`SekibanExecutor`, the Dapr aggregate actor) and an actor call that failed in transit
(`DaprSekibanExecutor`). Pure: the random source is injected, and nothing sleeps here.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sekiban.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Up to `attempts` tries (1: never retry), with exponential backoff between them.

    Before try n (n >= 2) the policy waits up to `base_delay * backoff_factor**(n - 2)`,
    capped at `max_delay`. With `jitter` (full jitter) the wait is drawn uniformly from
    zero to that cap, so writers that collided do not collide again in step; `random`
    (a function returning floats in [0, 1), e.g. `random.Random(seed).random`) makes the
    draws reproducible. Invalid values raise `ConfigurationError`.
    """

    attempts: int = 1
    base_delay: timedelta = timedelta(milliseconds=10)
    backoff_factor: float = 2.0
    max_delay: timedelta = timedelta(seconds=1)
    jitter: bool = True
    random: Callable[[], float] = field(default=_random.random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or not isinstance(self.attempts, int):
            raise ConfigurationError(f"attempts must be an int >= 1, got {self.attempts!r}")
        if self.attempts < 1:
            raise ConfigurationError(f"attempts must be >= 1, got {self.attempts}")
        for name in ("base_delay", "max_delay"):
            value = getattr(self, name)
            if not isinstance(value, timedelta) or value < timedelta(0):
                raise ConfigurationError(f"{name} must be a timedelta >= 0, got {value!r}")
        if self.backoff_factor < 1:
            raise ConfigurationError(f"backoff_factor must be >= 1, got {self.backoff_factor}")

    @classmethod
    def never(cls) -> RetryPolicy:
        """One attempt: the first failure is raised."""
        return cls(attempts=1)

    def delay_before(self, attempt: int) -> timedelta:
        """How long to wait before try `attempt` (1-based); zero before the first."""
        if attempt <= 1:
            return timedelta(0)
        cap = min(self.max_delay, self.base_delay * self.backoff_factor ** (attempt - 2))
        return cap * self.random() if self.jitter else cap

    def retries_left(self, attempt: int) -> bool:
        """Whether another try may follow try `attempt`."""
        return attempt < self.attempts


# An aggregate that lost a race catches up (one delta read) and decides again; the
# jittered pause spreads writers that keep colliding. Measured with
# `python -m benchmarks.contention` (docs/reliability.md): with 32 writers on one
# aggregate the former 11 attempts / 2 ms / 100 ms failed 20 % (SQLite) and 38 %
# (PostgreSQL) of commands; 50 attempts / 10 ms / 1 s failed none.
CONFLICT_RETRY = RetryPolicy(
    attempts=50, base_delay=timedelta(milliseconds=10), max_delay=timedelta(seconds=1)
)
# A sidecar that restarts or an actor that moves takes seconds, not milliseconds.
TRANSIENT_RETRY = RetryPolicy(
    attempts=6, base_delay=timedelta(milliseconds=200), max_delay=timedelta(seconds=5)
)
