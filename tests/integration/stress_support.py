"""Many clients, many commands: the harness shared by the stress tests."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from examples.bank import DepositMoney, OpenAccount
from sekiban import CommandResponse, ConcurrencyError, PartitionKeys
from sekiban.errors import RemoteCommandError

CLIENTS = 8
COMMANDS_PER_CLIENT = 500


@dataclass
class StressCounts:
    target: str
    aggregates: int
    clients: int
    attempts: int = 0
    succeeded: int = 0
    conflicts: int = 0

    def record(self) -> None:
        """Append the counts to $SEKIBAN_RELIABILITY_REPORT, for docs/reliability.md."""
        path = os.environ.get("SEKIBAN_RELIABILITY_REPORT")
        if path:
            with open(path, "a") as out:
                out.write(json.dumps(asdict(self)) + "\n")


Run = Callable[[DepositMoney], Awaitable[CommandResponse]]
Open = Callable[[OpenAccount], Awaitable[CommandResponse]]


async def stress(
    target: str, run: Run, open_account: Open, aggregates: int
) -> tuple[StressCounts, dict[uuid.UUID, int]]:
    """CLIENTS tasks each send COMMANDS_PER_CLIENT deposits of 1, spread over
    `aggregates` accounts; a ConcurrencyError counts as a reported conflict."""
    accounts: list[PartitionKeys] = [
        (await open_account(OpenAccount(owner=f"stress-{i}"))).partition_keys
        for i in range(aggregates)
    ]
    counts = StressCounts(target, aggregates, CLIENTS)
    succeeded = {keys.aggregate_id: 0 for keys in accounts}

    async def client(offset: int) -> None:
        for i in range(COMMANDS_PER_CLIENT):
            keys = accounts[(offset + i) % aggregates]
            counts.attempts += 1
            try:
                await run(DepositMoney(account_id=keys.aggregate_id, amount=1))
            except ConcurrencyError:
                counts.conflicts += 1
                continue
            except RemoteCommandError as error:
                if error.error_type != "ConcurrencyError":
                    raise
                counts.conflicts += 1
                continue
            counts.succeeded += 1
            succeeded[keys.aggregate_id] += 1

    await asyncio.gather(*(client(c) for c in range(CLIENTS)))
    counts.record()
    return counts, succeeded
