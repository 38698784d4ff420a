"""A reaction host SIGKILLed between applying a command and saving its checkpoint:
after a restart the event is handed over again, and no command is applied twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from examples.bank import AccountProjector, OpenAccount, bank_domain
from sekiban import SekibanExecutor
from sekiban.reactions import REACTION_TYPES
from sekiban.stores.sqlite import SqliteEventStore
from tests.reaction_child import FileProjectionStore

ROOT = Path(__file__).resolve().parents[2]


def run_child(database: Path, checkpoints: Path, kill_after: int) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    child = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.reaction_child",
            str(database),
            str(checkpoints),
            str(kill_after),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    return child.returncode


async def test_sigkill_between_command_and_checkpoint_applies_no_command_twice(
    tmp_path: Path,
) -> None:
    database, checkpoints = tmp_path / "events.db", tmp_path / "checkpoints"
    store = await SqliteEventStore.open(database)
    executor = SekibanExecutor(bank_domain().register(*REACTION_TYPES), store)
    accounts = [
        (await executor.command(OpenAccount(owner=f"owner{i}"))).partition_keys for i in range(5)
    ]
    # Killed right after its 2nd command, twice (the restarted host first re-sends the
    # command of the event it died on: a duplicate, answered without appending), so the
    # checkpoint of the event just reacted to is never saved; the third run finishes.
    assert run_child(database, checkpoints, 2) == -signal.SIGKILL
    assert run_child(database, checkpoints, 2) == -signal.SIGKILL
    assert run_child(database, checkpoints, 0) == 0
    for keys in accounts:
        account = await executor.load_aggregate(AccountProjector, keys)
        assert (account.version, account.payload.balance) == (2, 10)  # type: ignore[attr-defined]
    record = await FileProjectionStore(checkpoints).get("reaction:welcome-bonus")
    assert record is not None and record.position == 10
    await store.close()
