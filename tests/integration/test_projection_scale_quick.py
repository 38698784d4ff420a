"""`python -m benchmarks.projection_scale --quick --json` runs end to end.

Speed lives in benchmarks/, not here: this checks that every phase ran and reported its
figures, never how large they are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_projection_scale_reports_every_phase_and_goal() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.projection_scale", "--quick", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(done.stdout.strip().splitlines()[-1])
    sqlite = document["stores"]["sqlite"]
    assert sqlite["small_state"]["applied"] == 20_000
    listed = sqlite["list"]
    assert listed["build"]["out_of_line"] is False
    assert listed["persist_out_of_line"]["out_of_line"] is True
    assert listed["restore"]["seconds"] > 0 and listed["build"]["state_rss"] > 0
    assert sorted(sqlite["restart"], key=int) == ["1000", "5000", "20000"]
    assert all(run["events_after_checkpoint"] == 30 for run in sqlite["restart"].values())
    goals = document["goals"]["sqlite"]
    assert {"catch_up_small_state_peak_mb", "restart_largest_over_smallest"} <= set(goals)
    assert all(isinstance(goal["met"], bool) for goal in goals.values())
