"""A process that saves a multi-projection's state and SIGKILLs itself part way.

`tests/integration/test_projection_persist_crash.py` starts it as

    python -m tests.integration.projection_crash_driver STORE_URL BLOB_DIR POINT

It restores the bank's account list from the store (out of line, from BLOB_DIR), catches
it up, and saves it again, out of line; the real stores and `DirectoryBlobStore` do the
work, and the wrappers below only kill the process at POINT:

- `blob-write`: while the blob is being written (its first chunk handed over, the file
  not yet complete or renamed);
- `before-row`: the blob written, before the projection store's row names it;
- `after-row`: the row written, before the blob the old row named is deleted.

It prints `KILL <point>` just before killing itself, and `SURVIVED` if it never did.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from examples.bank import AccountList, bank_domain
from sekiban.projections import DirectoryBlobStore, ProjectionOptions, ProjectionRecord, Projections
from sekiban.projections.store import ProjectionStore
from sekiban.stores import open_store

POINTS = ("blob-write", "before-row", "after-row")
OPTIONS = ProjectionOptions(persist_every=10**9, out_of_line_above=0)


def kill(point: str) -> None:
    print(f"KILL {point}", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


class KillingBlobs(DirectoryBlobStore):
    def __init__(self, path: Path, point: str) -> None:
        super().__init__(path)
        self.point = point

    async def put(self, key: str, chunks: Iterable[bytes]) -> None:
        if self.point == "blob-write":
            chunks = self._first_then_kill(chunks)
        await super().put(key, chunks)

    def _first_then_kill(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            yield chunk
            kill(self.point)  # on the writer's thread, the temporary file open


class KillingStore:
    """The projection store, killing the process just before or after a save."""

    def __init__(self, store: ProjectionStore, point: str) -> None:
        self.store, self.point = store, point

    async def get(self, name: str) -> ProjectionRecord | None:
        return await self.store.get(name)

    async def save(self, record: ProjectionRecord) -> bool:
        if self.point == "before-row":
            kill(self.point)
        saved = await self.store.save(record)
        if self.point == "after-row":
            kill(self.point)
        return saved


async def main(url: str, blobs: Path, point: str) -> None:
    async with await open_store(url) as stores:
        projections = Projections(
            bank_domain(),
            stores.events,
            KillingStore(stores.projections, point),  # type: ignore[arg-type]
            blob_store=KillingBlobs(blobs, point),
            options=OPTIONS,
        )
        await projections.catch_up(AccountList)
        if projections.counters.restored != 1:
            raise SystemExit(f"the previous state was not restored: {projections.counters}")
        await projections.persist(AccountList)
    print("SURVIVED", flush=True)


if __name__ == "__main__":
    _, url, blobs, point = sys.argv
    if point not in POINTS:
        raise SystemExit(f"POINT must be one of {POINTS}")
    asyncio.run(main(url, Path(blobs), point))
