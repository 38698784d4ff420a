"""A reaction host that SIGKILLs itself at a chosen point, for tests/unit/test_reactions_crash.py.

`python -m tests.reaction_child DB CHECKPOINTS KILL_AFTER`: runs the welcome-bonus
reaction over the SQLite store DB, keeping checkpoints as JSON files under CHECKPOINTS,
and kills itself (SIGKILL: no cleanup, no flush) right after its KILL_AFTER-th command
was applied, before that event's checkpoint is saved. KILL_AFTER 0: never.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from examples.bank import AccountOpened, DepositMoney, bank_domain
from sekiban import Command, CommandResponse, Event, EventMetadata, EventPayload, SekibanExecutor
from sekiban.projections import ProjectionRecord
from sekiban.reactions import REACTION_TYPES, Reaction, ReactionRunner
from sekiban.stores.sqlite import SqliteEventStore


class WelcomeBonus(Reaction):
    event_types = (AccountOpened,)

    def react(self, event: Event[EventPayload]) -> DepositMoney:
        return DepositMoney(account_id=event.partition_keys.aggregate_id, amount=10)


class FileProjectionStore:
    """Checkpoints as JSON files, replaced atomically (os.replace) like a database row."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(exist_ok=True)

    async def get(self, name: str) -> ProjectionRecord | None:
        path = self.directory / f"{name}.json"
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        data["taken_at"] = datetime.fromisoformat(data["taken_at"])
        data["payload"] = data["payload"].encode()
        return ProjectionRecord(**data)

    async def save(self, record: ProjectionRecord) -> bool:
        stored = await self.get(record.name)
        if not record.replaces(stored):
            return False
        data = {f: getattr(record, f) for f in ProjectionRecord.__dataclass_fields__}
        data["taken_at"] = record.taken_at.isoformat()
        data["payload"] = (record.payload or b"").decode()
        temporary = self.directory / f"{record.name}.tmp"
        temporary.write_text(json.dumps(data))
        os.replace(temporary, self.directory / f"{record.name}.json")
        return True

    async def delete(self, name: str) -> None:
        (self.directory / f"{name}.json").unlink(missing_ok=True)

    async def names(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.json"))

    async def close(self) -> None:
        return None


class KillingExecutor(SekibanExecutor):
    kill_after = 0
    applied = 0

    async def command(
        self,
        command: Command,
        metadata: EventMetadata | None = None,
        *,
        command_id: str | None = None,
    ) -> CommandResponse:
        response = await super().command(command, metadata, command_id=command_id)
        self.applied += 1
        if self.applied == self.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return response


async def main(database: str, checkpoints: str, kill_after: int) -> None:
    store = await SqliteEventStore.open(database)
    executor = KillingExecutor(bank_domain().register(*REACTION_TYPES), store)
    executor.kill_after = kill_after
    runner = ReactionRunner(
        executor, WelcomeBonus(), store=FileProjectionStore(Path(checkpoints)), checkpoint_every=1
    )
    await runner.run_until_idle()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
