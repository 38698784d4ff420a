"""The clock: the core never reads time itself, it is handed a `Clock`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The default clock: the current time, timezone-aware in UTC."""
    return datetime.now(UTC)
