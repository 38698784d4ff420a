"""Sortable unique ids: strings that sort in the order they were created."""

from __future__ import annotations

import random
import re
import threading
import time
from datetime import UTC, datetime, timedelta

from sekiban.errors import InvalidSortableUniqueIdError

# The same shape as Sekiban's C# ids: 19 digits of .NET ticks (100 ns since 0001-01-01)
# then 11 random digits, so ids from either implementation sort together.
_TICK_DIGITS = 19
_RANDOM_DIGITS = 11
_SUFFIX_BITS = 36  # 2**36 < 10**11: a random suffix that always fits its digits
_SUFFIX_SPAN = 10**_RANDOM_DIGITS
_ID_FORMAT = f"%0{_TICK_DIGITS + _RANDOM_DIGITS}d"  # ticks, then the suffix, zero-padded
_PATTERN = re.compile(rf"\d{{{_TICK_DIGITS + _RANDOM_DIGITS}}}")
_EPOCH_TICKS = 621_355_968_000_000_000  # ticks at 1970-01-01
_DOTNET_EPOCH = datetime(1, 1, 1, tzinfo=UTC)

_lock = threading.Lock()
_last_ticks = 0


def _next_ticks(now_ns: int, count: int = 1) -> int:
    """The first of `count` consecutive ticks for `now_ns`, bumped past the last one
    issued so ids strictly increase."""
    global _last_ticks
    ticks = _EPOCH_TICKS + now_ns // 100
    with _lock:
        if ticks <= _last_ticks:
            ticks = _last_ticks + 1
        _last_ticks = ticks + count - 1
    return ticks


class SortableUniqueId(str):
    """A 30-digit id whose string order is creation order.

    Ids made in one process strictly increase even when many share a clock tick; ids
    from different processes are ordered by time, then by their random suffix.
    """

    __slots__ = ()

    def __new__(cls, value: str) -> SortableUniqueId:
        if not isinstance(value, str) or not _PATTERN.fullmatch(value):
            raise InvalidSortableUniqueIdError(
                f"a sortable unique id is {_TICK_DIGITS + _RANDOM_DIGITS} digits, got {value!r}"
            )
        return super().__new__(cls, value)

    @classmethod
    def generate(cls, now_ns: int | None = None) -> SortableUniqueId:
        """A new id for the current time (or `now_ns`, nanoseconds since the Unix epoch)."""
        return cls.generate_many(1, now_ns)[0]

    @classmethod
    def generate_many(cls, count: int, now_ns: int | None = None) -> list[SortableUniqueId]:
        """`count` new ids in increasing order, for the events of one command: one clock
        read for all of them."""
        first = _next_ticks(time.time_ns() if now_ns is None else now_ns, count)
        # Not a secret, only a tie-breaker between processes: the seeded generator (reseeded
        # in forked children) costs a fraction of an OS random read per id.
        bits = random.getrandbits
        return [
            str.__new__(cls, _ID_FORMAT % (ticks * _SUFFIX_SPAN + bits(_SUFFIX_BITS)))
            for ticks in range(first, first + count)
        ]

    @classmethod
    def parse(cls, value: str) -> SortableUniqueId:
        """Validate `value` and return it as an id."""
        return cls(value)

    @classmethod
    def min_for(cls, moment: datetime) -> SortableUniqueId:
        """The smallest id that any event created at `moment` or later can have."""
        ticks = (moment - _DOTNET_EPOCH) // timedelta(microseconds=1) * 10
        return str.__new__(cls, f"{ticks:0{_TICK_DIGITS}d}{0:0{_RANDOM_DIGITS}d}")

    @property
    def timestamp(self) -> datetime:
        """When the id was made (UTC, microsecond precision)."""
        ticks = int(self[:_TICK_DIGITS])
        return _DOTNET_EPOCH + timedelta(microseconds=ticks // 10)
