"""The bank domain as an HTTP service, events in SQLite.

    uvicorn examples.fastapi_bank:app --port 8000     # then open /docs

SEKIBAN_SQLITE_PATH names the database file (default "sekiban-fastapi.db");
SEKIBAN_MAX_PAYLOAD_BYTES lowers the largest event payload a command may write.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI

from sekiban import CommandLimits, Executor, PartitionKeys, SekibanExecutor
from sekiban.examples.bank import AccountProjector, bank_domain
from sekiban.fastapi import AggregateResult, sekiban_executor, sekiban_lifespan, sekiban_router
from sekiban.stores.sqlite import SqliteEventStore

domain = bank_domain()


def command_limits() -> CommandLimits:
    size = os.environ.get("SEKIBAN_MAX_PAYLOAD_BYTES")
    return CommandLimits(max_payload_bytes=int(size)) if size else CommandLimits()


@asynccontextmanager
async def open_executor() -> AsyncIterator[SekibanExecutor]:
    """Open the SQLite store for the app's lifetime; close it at shutdown."""
    store = await SqliteEventStore.open(os.environ.get("SEKIBAN_SQLITE_PATH", "sekiban-fastapi.db"))
    try:
        yield SekibanExecutor(
            domain, store, snapshot_store=store.snapshot_store(), limits=command_limits()
        )
    finally:
        await store.close()


def create_app(
    open_executor: Callable[[], AbstractAsyncContextManager[Executor]] = open_executor,
) -> FastAPI:
    """The service: the generated command and query routes, plus one written by hand."""
    app = FastAPI(title="sekiban bank", lifespan=sekiban_lifespan(open_executor))
    app.include_router(sekiban_router(domain))

    @app.get("/accounts/{account_id}")
    async def account(
        account_id: uuid.UUID, executor: Annotated[Executor, Depends(sekiban_executor)]
    ) -> AggregateResult:
        keys = PartitionKeys.existing(account_id, AccountProjector.name)
        return AggregateResult.of(await executor.load_aggregate(AccountProjector, keys), domain)

    return app


app = create_app()
