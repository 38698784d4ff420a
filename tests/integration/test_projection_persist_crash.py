"""A process SIGKILLed while saving a projection's state leaves the state saved before
it usable: the next process restores that one (or the new one, once its row was
written) and answers as a full replay does.

`projection_crash_driver.py` restores the account list, catches it up and saves it out
of line, killing itself while the blob is written, between the blob and the row, or
after the row; these tests then open the store (SQLite, PostgreSQL, Cosmos DB) as a new
process would.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from examples.bank import AccountList, ActiveAccountsQuery, DepositMoney, OpenAccount, bank_domain
from sekiban import SekibanExecutor
from sekiban.projections import DirectoryBlobStore, ProjectionOptions
from sekiban.stores import Stores, open_store
from tests.conformance.backends import cosmos_url, postgres_url
from tests.integration.projection_crash_driver import OPTIONS, POINTS

ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def store_url(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
        return
    url = postgres_url() if kind == "postgres" else cosmos_url()
    try:
        yield url
    finally:
        async with await open_store(url) as stores:
            drop = getattr(stores.events, "drop_schema", None) or stores.events.drop  # type: ignore[attr-defined]
            await drop()


def executor(stores: Stores, blobs: Path, *, persist_every: int) -> SekibanExecutor:
    return SekibanExecutor(
        bank_domain(),
        stores.events,
        projection_store=stores.projections,
        projection_blob_store=DirectoryBlobStore(blobs),
        projection_options=ProjectionOptions(
            persist_every=persist_every, out_of_line_above=OPTIONS.out_of_line_above
        ),
    )


async def open_accounts(executor: SekibanExecutor, count: int) -> None:
    for n in range(count):
        opened = await executor.command(OpenAccount(owner=f"owner {n}"))
        await executor.command(
            DepositMoney(account_id=opened.partition_keys.aggregate_id, amount=5)
        )


@pytest.mark.parametrize("point", POINTS)
@pytest.mark.parametrize("kind", ["sqlite", "postgres", "cosmos"])
async def test_a_kill_while_persisting_leaves_the_previous_state_usable(
    tmp_path: Path, kind: str, point: str
) -> None:
    blobs = tmp_path / "blobs"
    async with store_url(kind, tmp_path) as url:
        async with await open_store(url) as stores:
            first = executor(stores, blobs, persist_every=1)
            await open_accounts(first, 20)
            await first.query(ActiveAccountsQuery())  # saved: the previous state
            previous = await stores.projections.get(AccountList.name)
            assert previous is not None and previous.blob_key is not None
            await open_accounts(SekibanExecutor(bank_domain(), stores.events), 10)

        driver = [sys.executable, "-m", "tests.integration.projection_crash_driver"]
        done = subprocess.run(
            [*driver, url, str(blobs), point],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == -9 and f"KILL {point}" in done.stdout, done.stderr[-3000:]

        async with await open_store(url) as stores:
            stored = await stores.projections.get(AccountList.name)
            assert stored is not None
            if point == "after-row":
                assert stored.position > previous.position  # the new state made it
            else:
                assert stored == previous
            assert (blobs / stored.blob_key).is_file()  # type: ignore[operator]
            after = executor(stores, blobs, persist_every=10**9)
            answer = await after.query(ActiveAccountsQuery())
            counters = after.projections.counters
            assert (counters.restored, counters.rejected) == (1, 0)
            replayed = await SekibanExecutor(bank_domain(), stores.events).query(
                ActiveAccountsQuery()
            )
            assert answer == replayed and len(answer.items) == 30
