"""`python -m benchmarks --quick --json` runs end to end and prints one JSON object.

Speed lives in benchmarks/, not here: this only checks that the command works and that
its figures are there and make sense, never how large they are.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("eventsourcing", reason="needs the bench extra")

ROOT = Path(__file__).resolve().parents[2]
KEYS = (
    "snapshot_load_speedup_10k",
    "snapshot_load_speedup_10k_at_last_event",
    "replay_vs_eventsourcing",
    "append_vs_eventsourcing",
    "snapshot_load_vs_eventsourcing",
)


def test_quick_bench_prints_one_json_object_with_positive_figures(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    figures = json.loads(lines[0])
    assert isinstance(figures, dict)
    for key in KEYS:
        value = figures.get(key)
        assert isinstance(value, int | float) and value > 0, (key, value)
    # Against the peer and the raw-driver limit, per figure and store, at a stated
    # durability: present and positive (how large is the benchmarks' business).
    for name in ("like_for_like", "of_limit", "peer_ceiling"):
        for figure in ("append_1", "append_10", "replay"):
            value = figures[name][figure]["sqlite"]
            assert isinstance(value, int | float) and value > 0, (name, figure, value)
    assert figures["like_for_like"]["snapshot_load"]["sqlite"] > 0
    assert figures["of_limit"]["append_1"]["sqlite_full"] > 0
    assert "synchronous=NORMAL" in figures["durability"]["sqlite"]
