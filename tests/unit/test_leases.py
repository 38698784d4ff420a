"""File leases: a file that cannot be opened is a store error, not an OSError."""

from __future__ import annotations

from pathlib import Path

import pytest

from sekiban import StoreError
from sekiban.stores.leases import FileLeases


async def test_a_lease_file_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    leases = FileLeases(tmp_path / "missing-directory" / "events.db")
    with pytest.raises(StoreError, match="lease file"):
        await leases.try_lease("projection:x")


async def test_a_file_lease_is_exclusive_until_released(tmp_path: Path) -> None:
    leases = FileLeases(tmp_path / "events.db")
    lease = await leases.try_lease("projection:x")
    assert lease is not None and await lease.held()
    assert await FileLeases(tmp_path / "events.db").try_lease("projection:x") is None
    await lease.release()
    assert not await lease.held()
    again = await leases.try_lease("projection:x")
    assert again is not None
    await again.release()
