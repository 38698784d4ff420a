"""`StreamKeys`: the partition keys of the streams a long read meets, made once per
stream while it is recent and never kept for every stream of a store."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import ClassVar

from sekiban.core.partition_keys import PartitionKeys


class StreamKeys:
    """`PartitionKeys` by a store's stream columns, for one read.

    Reads decode thousands of events of the same few streams, so each keeps the keys it
    made; a `read_all` over a million streams would keep a million of them, so the
    cache is emptied whenever it holds `limit` (its memory stays flat, and recent
    streams are cached again at once).
    """

    limit: ClassVar[int] = 4096

    def __init__(self, make: Callable[..., PartitionKeys]) -> None:
        self._make = make
        self._cache: dict[Hashable, PartitionKeys] = {}

    def get(self, *columns: Hashable) -> PartitionKeys:
        keys = self._cache.get(columns)
        if keys is None:
            if len(self._cache) >= self.limit:
                self._cache.clear()
            keys = self._cache[columns] = self._make(*columns)
        return keys
