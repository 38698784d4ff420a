"""RetryPolicy: growing, capped, jittered delays; reproducible with a seeded random."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from sekiban import ConfigurationError
from sekiban.retry import RetryPolicy

MS = timedelta(milliseconds=1)


def test_delays_grow_by_the_backoff_factor_until_the_cap() -> None:
    policy = RetryPolicy(
        attempts=8, base_delay=10 * MS, backoff_factor=3, max_delay=200 * MS, jitter=False
    )
    delays = [policy.delay_before(n) for n in range(1, 7)]
    assert delays == [timedelta(0), 10 * MS, 30 * MS, 90 * MS, 200 * MS, 200 * MS]


def test_full_jitter_stays_between_zero_and_the_capped_delay() -> None:
    policy = RetryPolicy(attempts=20, base_delay=10 * MS, max_delay=100 * MS)
    for attempt in range(2, 20):
        cap = min(100 * MS, 10 * MS * 2 ** (attempt - 2))
        for _ in range(50):
            assert timedelta(0) <= policy.delay_before(attempt) <= cap


def test_a_seeded_random_source_makes_the_delays_reproducible() -> None:
    def delays(seed: int) -> list[timedelta]:
        policy = RetryPolicy(attempts=6, random=random.Random(seed).random)
        return [policy.delay_before(n) for n in range(2, 7)]

    assert delays(42) == delays(42)
    assert delays(42) != delays(43)


def test_the_first_attempt_never_waits_and_attempts_bound_the_retries() -> None:
    policy = RetryPolicy(attempts=3)
    assert policy.delay_before(1) == timedelta(0)
    assert [policy.retries_left(n) for n in (1, 2, 3)] == [True, True, False]
    assert not RetryPolicy.never().retries_left(1)


@pytest.mark.parametrize(
    "changes",
    [
        {"attempts": 0},
        {"attempts": True},
        {"base_delay": -MS},
        {"max_delay": 1.5},
        {"backoff_factor": 0.5},
    ],
    ids=repr,
)
def test_invalid_policies_are_configuration_errors(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**changes)  # type: ignore[arg-type]
