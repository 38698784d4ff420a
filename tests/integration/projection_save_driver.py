"""Saves ever newer projection records of about 3 MB into the store a URL names until
it is killed, printing `SAVING n` and `SAVED n` around each save.

    python -m tests.integration.projection_save_driver STORE_URL FIRST_POSITION

`tests/integration/test_projection_store_crash.py` SIGKILLs it at random moments. The
bytes of position n are `payload_at(n)`, so the test can check any record it finds.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sys
from datetime import UTC, datetime

from sekiban.projections import ProjectionRecord
from sekiban.stores import open_store

NAME = "crash-test"
SIZE = 3 * 1024 * 1024  # over Cosmos DB's 2 MB item limit: stored in chunks there


def payload_at(position: int) -> bytes:
    return random.Random(position).randbytes(SIZE + position)


def record_at(position: int) -> ProjectionRecord:
    payload = payload_at(position)
    return ProjectionRecord(
        name=NAME,
        projector_version="1",
        schema_fingerprint="",
        position=position,
        events_applied=position,
        taken_at=datetime.now(UTC),
        encoding="jsonl",
        size=len(payload),
        sha256=hashlib.sha256(payload).hexdigest(),
        payload=payload,
    )


async def main(url: str, first: int) -> None:
    async with await open_store(url) as stores:
        projections = stores.projections
        for position in range(first, first + 10_000):
            record = record_at(position)
            print("SAVING", position, flush=True)
            await projections.save(record)
            print("SAVED", position, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
