"""Test utilities for sekiban domains: given/when/then and snapshot assertions."""

from sekiban.testing.reactions import FakeClock, ReactionScenario, RecordingExecutor
from sekiban.testing.scenario import Scenario, WhenResult
from sekiban.testing.snapshots import (
    assert_loaded_from_snapshot,
    assert_replayed_in_full,
    assert_snapshot_compatible,
    assert_snapshot_incompatible,
    assert_snapshot_taken,
    given_snapshot,
)

__all__ = [
    "FakeClock",
    "ReactionScenario",
    "RecordingExecutor",
    "Scenario",
    "WhenResult",
    "assert_loaded_from_snapshot",
    "assert_replayed_in_full",
    "assert_snapshot_compatible",
    "assert_snapshot_incompatible",
    "assert_snapshot_taken",
    "given_snapshot",
]
