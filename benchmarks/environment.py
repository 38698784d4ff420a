"""The machine and the code under test, recorded beside every benchmark result."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("sekiban", "eventsourcing", "pydantic", "asyncpg", "psycopg", "azure-cosmos")


def environment(command: str) -> dict[str, Any]:
    """Machine, versions and the exact `command`, taken when a run starts.

    `uncommitted` lists changes to the code under test (git status of src/ and
    examples/): the figures measure those, not the commit named in `git`.
    """
    return {
        "command": command,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": _git("rev-parse", "--short", "HEAD"),
        "uncommitted": _git("status", "--porcelain", "--", "src", "examples").splitlines(),
        "nproc": os.cpu_count(),
        "cpu": _cpu(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "load_average": {"before": load_average()},
        "packages": {name: _version(name) for name in PACKAGES},
    }


def environment_markdown(env: dict[str, Any], engines: list[str] | None = None) -> list[str]:
    """The environment as Markdown lines; the settings of `engines` only, if given."""
    uncommitted = env.get("uncommitted") or []
    lines = [
        f"`{env['command']}` at {env['date']} (git `{env['git']}`"
        + (f", uncommitted: {'; '.join(uncommitted)}" if uncommitted else "")
        + ").",
        "",
        f"- machine: {env['nproc']} CPUs, {env['cpu']}, {env['platform']}; load average "
        f"{env['load_average']['before']} before, {env['load_average'].get('after', '?')} after",
        f"- Python {env['python']}, SQLite {env['sqlite']}, "
        + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
    ]
    for name, settings in env.get("engines", {}).items():
        if engines is not None and name not in engines:
            continue
        shown = "; ".join(f"{k}: {v}" for k, v in settings.items())
        lines.append(f"- {name}: {shown or 'defaults'}")
    return lines


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _cpu() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next(
        (line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
        platform.processor(),
    )


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    except OSError:
        return ""
    return done.stdout.strip()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
