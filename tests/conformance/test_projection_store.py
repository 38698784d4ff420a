"""What every projection store guarantees. Runs once per backend in `backends.py`."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from examples.bank import ActiveAccountsQuery, DepositMoney, OpenAccount, bank_domain
from sekiban import ConfigurationError, SekibanExecutor, SnapshotRejectedError
from sekiban.projections import ProjectionOptions, ProjectionRecord
from sekiban.snapshot.types import RejectionReason
from tests.conformance.backends import BACKENDS, Stores

TAKEN_AT = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
EVERY_BYTE = bytes(range(256)) * 4


def record(
    position: int = 10,
    payload: bytes | None = EVERY_BYTE,
    *,
    name: str = "accounts",
    **changes: Any,
) -> ProjectionRecord:
    """A record as `Projections` writes one (its digest describes its bytes)."""
    made = ProjectionRecord(
        name=name,
        projector_version="1",
        schema_fingerprint="v1:abc",
        position=position,
        events_applied=position - 1,
        taken_at=TAKEN_AT,
        encoding="zlib+jsonl",
        size=len(payload or b""),
        sha256=hashlib.sha256(payload or b"").hexdigest(),
        payload=payload,
        signature="k1:c2lnbmF0dXJl",
    )
    return dataclasses.replace(made, **changes)


async def test_an_inline_record_round_trips_with_every_field_and_byte(stores: Stores) -> None:
    projections = stores.projections
    saved = record(payload=EVERY_BYTE + b"\x00")
    assert await projections.save(saved)
    assert await projections.get("accounts") == saved
    unsigned = record(11, b"", name="empty", signature=None, schema_fingerprint="")
    assert await projections.save(unsigned)
    assert await projections.get("empty") == unsigned


async def test_a_record_kept_out_of_line_round_trips(stores: Stores) -> None:
    projections = stores.projections
    digest = hashlib.sha256(b"state").hexdigest()
    saved = record(payload=None, blob_key=f"accounts/{digest}", size=123_456_789, sha256=digest)
    assert await projections.save(saved)
    assert await projections.get("accounts") == saved


async def test_a_missing_record_is_none(stores: Stores) -> None:
    assert await stores.projections.get("nothing-here") is None


async def test_a_lower_position_never_replaces_a_higher_one(stores: Stores) -> None:
    projections = stores.projections
    assert await projections.save(record(10))
    assert not await projections.save(record(9, b"older"))
    stored = await projections.get("accounts")
    assert stored is not None and (stored.position, stored.payload) == (10, EVERY_BYTE)


async def test_an_equal_or_higher_position_replaces(stores: Stores) -> None:
    projections = stores.projections
    await projections.save(record(10))
    assert await projections.save(record(10, b"same position, later state"))
    stored = await projections.get("accounts")
    assert stored is not None and stored.payload == b"same position, later state"
    assert await projections.save(record(2**40, b"far ahead"))
    stored = await projections.get("accounts")
    assert stored is not None and stored.position == 2**40


POSITION_LIMITS = {"sqlite": 2**63, "postgres": 2**63, "cosmos": 10**40}  # memory: none


@pytest.mark.parametrize("backend", sorted(POSITION_LIMITS))
async def test_a_record_the_store_could_not_read_back_is_refused_before_writing(
    backend: str, tmp_path: Path
) -> None:
    too_far = POSITION_LIMITS[backend]
    async with BACKENDS[backend](tmp_path) as stores:
        projections = stores.projections
        with pytest.raises(ConfigurationError, match="does not fit"):
            await projections.save(record(too_far, events_applied=7))
        assert await projections.get("accounts") is None
        for unreadable in (
            record(payload=None),  # neither bytes nor a blob key
            record(blob_key="accounts/elsewhere"),  # both
            record(sha256="not a digest"),
            record(events_applied=-1),
        ):
            with pytest.raises(ConfigurationError, match="cannot be stored"):
                await projections.save(unreadable)
        assert await projections.get("accounts") is None
        farthest = record(too_far - 1, events_applied=7)
        assert await projections.save(farthest)
        assert await projections.get("accounts") == farthest


@pytest.mark.parametrize(
    "change", [{"projector_version": "2"}, {"schema_fingerprint": "v2:def"}], ids=str
)
async def test_another_projector_version_or_schema_replaces_at_any_position(
    stores: Stores, change: dict[str, str]
) -> None:
    projections = stores.projections
    await projections.save(record(10))
    rebuilt = record(1, b"rebuilt", **change)
    assert await projections.save(rebuilt)
    assert await projections.get("accounts") == rebuilt


async def test_racing_saves_never_leave_a_lower_position_stored(stores: Stores) -> None:
    projections = stores.projections
    positions = list(range(1, 41))
    random.Random(18).shuffle(positions)

    async def saver(mine: list[int]) -> None:
        for position in mine:
            await projections.save(record(position, f"state at {position}".encode()))

    await asyncio.gather(*(saver(positions[i::4]) for i in range(4)))
    stored = await projections.get("accounts")
    assert stored is not None and stored.position == 40
    assert stored.payload == b"state at 40"


async def test_delete_forgets_only_that_record(stores: Stores) -> None:
    projections = stores.projections
    await projections.save(record(name="a"))
    await projections.save(record(name="b"))
    await projections.delete("a")
    await projections.delete("never-saved")
    assert await projections.get("a") is None
    assert await projections.names() == ["b"]
    assert await projections.save(record(1, name="a")), "a deleted record is not a newer one"


async def test_names_are_every_stored_projection_sorted(stores: Stores) -> None:
    projections = stores.projections
    assert await projections.names() == []
    for name in ("zeta", "Alpha", "alpha", "mid/with:odd chars"):
        await projections.save(record(name=name))
    assert await projections.names() == ["Alpha", "alpha", "mid/with:odd chars", "zeta"]


async def test_a_payload_beyond_a_cosmos_item_round_trips(stores: Stores) -> None:
    """3 MB: above Cosmos DB's 2 MB item limit (stored there in chunks)."""
    projections = stores.projections
    big = random.Random(22).randbytes(3 * 1024 * 1024 + 17)
    assert await projections.save(record(5, big))
    assert await projections.get("accounts") == record(5, big)
    # Replaced by a small state, then by a large one again: each reads back whole.
    assert await projections.save(record(6, b"small"))
    assert await projections.get("accounts") == record(6, b"small")
    bigger = big[::-1] + big[:1000]
    assert await projections.save(record(7, bigger))
    assert await projections.get("accounts") == record(7, bigger)


# -- rows damaged behind the store's back ------------------------------------------------

Plant = Callable[[Stores, str], Awaitable[None]]


async def _plant_sqlite(stores: Stores, damage: str) -> None:
    statements = {
        "bad-position": "UPDATE projections SET position = 'ten'",
        "bad-digest": "UPDATE projections SET sha256 = 'not a digest'",
        "bad-field": "UPDATE projections SET taken_at = 'yesterday'",
        "no-bytes": "UPDATE projections SET payload = NULL",
    }
    await stores.events._db.run(  # type: ignore[attr-defined]
        lambda connection: connection.execute(statements[damage])
    )


async def _plant_postgres(stores: Stores, damage: str) -> None:
    table = stores.projections.table  # type: ignore[attr-defined]
    statements = {
        "bad-position": f"UPDATE {table} SET position = -10",
        "bad-digest": f"UPDATE {table} SET sha256 = 'not a digest'",
        "bad-field": f"UPDATE {table} SET events_applied = -1",
        "no-bytes": f"UPDATE {table} SET payload = NULL",
    }
    await stores.events._pool.execute(statements[damage])  # type: ignore[attr-defined]


async def _plant_cosmos(stores: Stores, damage: str) -> None:
    container = stores.events.containers.projections  # type: ignore[attr-defined]
    changes = {
        "bad-position": {"position": "ten"},
        "bad-digest": {"sha256": "not a digest"},
        "bad-field": {"taken_at": "yesterday"},
        "no-bytes": {"payload": None},
    }
    async for head in container.query_items("SELECT * FROM c WHERE c.kind = 'head'"):
        await container.replace_item(head["id"], {**head, **changes[damage]})


PLANTERS: dict[str, Plant] = {
    "sqlite": _plant_sqlite,
    "postgres": _plant_postgres,
    "cosmos": _plant_cosmos,
}


@pytest.mark.parametrize("damage", ["bad-position", "bad-digest", "bad-field", "no-bytes"])
@pytest.mark.parametrize("backend", sorted(PLANTERS))  # memory keeps objects, not rows
async def test_an_unreadable_row_is_rejected_as_corrupt_then_replaced(
    backend: str, damage: str, tmp_path: Path
) -> None:
    async with BACKENDS[backend](tmp_path) as stores:
        projections = stores.projections
        await projections.save(record(10))
        await PLANTERS[backend](stores, damage)
        with pytest.raises(SnapshotRejectedError) as rejected:
            await projections.get("accounts")
        assert rejected.value.rejection.reason is RejectionReason.CORRUPT
        assert "accounts" in str(rejected.value)
        # The rebuilt projection's state takes its place.
        assert await projections.save(record(10, b"rebuilt"))
        assert await projections.get("accounts") == record(10, b"rebuilt")


# -- Cosmos DB: states above the item limit ---------------------------------------------

BIG = random.Random(2).randbytes(3 * 1024 * 1024)


@pytest.fixture
async def cosmos(tmp_path: Path) -> AsyncIterator[Stores]:
    async with BACKENDS["cosmos"](tmp_path) as stores:
        yield stores


async def documents(stores: Stores) -> list[dict[str, Any]]:
    container = stores.events.containers.projections  # type: ignore[attr-defined]
    return [d async for d in container.query_items("SELECT * FROM c")]


async def test_cosmos_keeps_a_large_state_in_chunks_beside_its_head(cosmos: Stores) -> None:
    await cosmos.projections.save(record(5, BIG))
    found = await documents(cosmos)
    heads = [d for d in found if d["kind"] == "head"]
    chunks = sorted(d["id"] for d in found if d["kind"] == "chunk")
    assert len(heads) == 1 and heads[0]["payload"] is None and heads[0]["chunks"] == 3
    assert chunks == [f"accounts.{hashlib.sha256(BIG).hexdigest()}.{i}" for i in range(3)]
    assert all(d["pk"] == "accounts" for d in found)
    assert max(len(json.dumps(d)) for d in found) < 2 * 1024 * 1024


async def test_cosmos_a_missing_or_damaged_chunk_is_detected(cosmos: Stores) -> None:
    await cosmos.projections.save(record(5, BIG))
    container = cosmos.events.containers.projections  # type: ignore[attr-defined]
    chunk = next(d for d in await documents(cosmos) if d["id"].endswith(".1"))
    await container.replace_item(chunk["id"], {**chunk, "data": "not base64!"})
    with pytest.raises(SnapshotRejectedError) as rejected:
        await cosmos.projections.get("accounts")
    assert rejected.value.rejection.reason is RejectionReason.CORRUPT
    await container.delete_item(chunk["id"], partition_key="accounts")
    with pytest.raises(SnapshotRejectedError) as rejected:
        await cosmos.projections.get("accounts")
    assert rejected.value.rejection.reason is RejectionReason.MISSING
    assert "chunk 1 of 3" in str(rejected.value)


async def test_cosmos_a_read_overtaken_by_a_save_reads_the_new_state(
    cosmos: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader, writer = cosmos.projections, cosmos.projections
    await writer.save(record(5, BIG))
    newer = record(6, BIG[::-1])
    read_chunks = type(reader)._read_chunks
    overtaken = []

    async def save_in_between(self: Any, *args: Any) -> bytes:
        if not overtaken:  # between the first head read and its chunks
            overtaken.append(await writer.save(newer))  # deletes the chunks of 5
        return await read_chunks(self, *args)

    monkeypatch.setattr(type(reader), "_read_chunks", save_in_between)
    assert await reader.get("accounts") == newer
    assert overtaken == [True]


async def test_cosmos_old_chunks_go_once_the_head_names_new_bytes(cosmos: Stores) -> None:
    projections = cosmos.projections
    await projections.save(record(5, BIG))
    newer = BIG[1:] + b"!"
    await projections.save(record(6, newer))
    digests = {d["id"].split(".")[1] for d in await documents(cosmos) if d["kind"] == "chunk"}
    assert digests == {hashlib.sha256(newer).hexdigest()}
    await projections.save(record(7, b"small again"))
    assert [d["kind"] for d in await documents(cosmos)] == ["head"]
    await projections.delete("accounts")
    assert await documents(cosmos) == []


async def test_cosmos_a_save_that_dies_before_its_head_leaves_the_previous_state(
    cosmos: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    projections = cosmos.projections
    await projections.save(record(5, BIG))
    container = cosmos.events.containers.projections  # type: ignore[attr-defined]

    async def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("process killed before the head was written")

    monkeypatch.setattr(container, "replace_item", crash)
    with pytest.raises(RuntimeError):
        await projections.save(record(6, BIG[::-1]))
    monkeypatch.undo()
    assert await projections.get("accounts") == record(5, BIG)
    # The dead save's chunks are unreferenced; deleting the projection removes them.
    assert len(await documents(cosmos)) == 1 + 3 + 3
    await projections.delete("accounts")
    assert await documents(cosmos) == []


# -- end to end ------------------------------------------------------------------------


async def test_a_restarted_executor_resumes_from_the_persisted_state(stores: Stores) -> None:
    options = ProjectionOptions(persist_every=1)
    first = SekibanExecutor(
        bank_domain(),
        stores.events,
        projection_store=stores.projections,
        projection_options=options,
    )
    for owner in ("ann", "bob"):
        opened = await first.command(OpenAccount(owner=owner))
        deposit = DepositMoney(account_id=opened.partition_keys.aggregate_id, amount=5)
        last = await first.command(deposit)
    # `after=`: a PostgreSQL read_all may hold back events while other sessions'
    # transactions run (the machine is shared); read-your-writes waits for them.
    await first.query(ActiveAccountsQuery(), after=last)
    assert first.projections.counters.saved >= 1
    last = await first.command(OpenAccount(owner="cid"))  # after the save: read on restart
    await first.close()

    second = SekibanExecutor(
        bank_domain(),
        stores.events,
        projection_store=stores.projections,
        projection_options=options,
    )
    answer = await second.query(ActiveAccountsQuery(), after=last)
    assert second.projections.counters.restored == 1
    assert second.projections.counters.rejected == 0
    replay = SekibanExecutor(bank_domain(), stores.events)
    assert answer == await replay.query(ActiveAccountsQuery(), after=last)
    assert len(answer.items) == 3
