"""Bytes damaged on disk behind the SQLite store's back are reported, never guessed."""

import sqlite3
from pathlib import Path

import pytest

from examples.bank import AccountProjector, DepositMoney, OpenAccount, bank_domain
from sekiban import EventStreamCorruptError, SekibanExecutor, SerializationError
from sekiban.stores.sqlite import SqliteEventStore


async def test_malformed_json_and_missing_rows_on_disk_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    store = await SqliteEventStore.open(path)
    executor = SekibanExecutor(bank_domain(), store)
    keys = (await executor.command(OpenAccount(owner="ann"))).partition_keys
    for _ in range(3):
        await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
    await store.close()

    with sqlite3.connect(path) as db:
        (event_id,) = db.execute("SELECT id FROM events WHERE version = 2").fetchone()
        # Each command is one commit row; element 3 of an event is its payload.
        db.execute(
            "UPDATE commits SET events = json_replace(events, '$[0][3]', '{\"amount\": 1') "
            "WHERE first_version = 2"
        )
    store = await SqliteEventStore.open(path)
    with pytest.raises(SerializationError, match=event_id):
        await SekibanExecutor(bank_domain(), store).load_aggregate(AccountProjector, keys)
    await store.close()

    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM commits WHERE first_version = 2")
    store = await SqliteEventStore.open(path)
    with pytest.raises(EventStreamCorruptError, match="1 to 3"):
        await SekibanExecutor(bank_domain(), store).load_aggregate(AccountProjector, keys)
    await store.close()
