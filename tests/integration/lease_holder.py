"""`python -m tests.integration.lease_holder URL NAME`: take the lease NAME on the store
at URL, print "held" (or "refused"), and sleep until killed."""

from __future__ import annotations

import asyncio
import sys

from sekiban.stores import open_store
from sekiban.stores.leases import LeaseProvider


async def main(url: str, name: str) -> None:
    async with await open_store(url) as stores:
        assert isinstance(stores.events, LeaseProvider)
        lease = await stores.events.try_lease(name)
        print("held" if lease is not None else "refused", flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
