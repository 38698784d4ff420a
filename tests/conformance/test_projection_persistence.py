"""A projection's state saved and restored through `Projections` on every projection
store: in the row or out of line, written from memory or from a spilled file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from examples.bank import AccountList, ActiveAccountsQuery, DepositMoney, OpenAccount, bank_domain
from sekiban import SekibanExecutor
from sekiban.projections import DirectoryBlobStore, ProjectionOptions, manager
from sekiban.projections.encoding import EncodedState, encode_state
from tests.conformance.backends import Stores

SMALL = 256
"""Bytes: the 60 accounts below encode to a few kilobytes, far above this."""
CASES = {
    "row": {},
    "row-spilled": {"spill_above": SMALL},
    "blob": {"out_of_line_above": SMALL},
    "blob-spilled": {"spill_above": SMALL, "out_of_line_above": SMALL},
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_a_state_round_trips_below_and_above_the_thresholds(
    stores: Stores, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    options = ProjectionOptions(persist_every=1, **CASES[case])
    encoded: list[EncodedState] = []

    def spy(*args: Any, **kwargs: Any) -> EncodedState:
        encoded.append(encode_state(*args, **kwargs))
        return encoded[-1]

    monkeypatch.setattr(manager, "encode_state", spy)

    def executor() -> SekibanExecutor:
        return SekibanExecutor(
            bank_domain(),
            stores.events,
            projection_store=stores.projections,
            projection_blob_store=DirectoryBlobStore(tmp_path),
            projection_options=options,
        )

    first = executor()
    for n in range(60):
        opened = await first.command(OpenAccount(owner=f"owner {n}"))
        await first.command(
            DepositMoney(account_id=opened.partition_keys.aggregate_id, amount=n + 1)
        )
    expected = await first.query(ActiveAccountsQuery())
    assert len(expected.items) == 60

    record = await stores.projections.get(AccountList.name)
    assert record is not None and record.events_applied == 120
    assert record.size > SMALL
    assert (record.blob_key is not None) == case.startswith("blob")
    assert (record.payload is None) == case.startswith("blob")
    spilled = encoded[-1].file._rolled  # type: ignore[attr-defined]
    assert spilled == case.endswith("spilled")

    second = executor()
    assert await second.query(ActiveAccountsQuery()) == expected
    assert (second.projections.counters.restored, second.projections.counters.rejected) == (1, 0)
    assert await SekibanExecutor(bank_domain(), stores.events).query(ActiveAccountsQuery()) == (
        expected
    )
