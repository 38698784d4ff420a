"""`sekiban reactions run` as a process, under faults (SQLite and PostgreSQL):

- SIGKILLed during outbox delivery (a handler that kills its process after delivering,
  before the outcome is recorded): after restarts every side effect is delivered at
  least once and recorded as delivered once, none lost, no command applied twice;
- its PostgreSQL connections terminated while it runs (pg_terminate_backend): it
  reconnects and resumes, nothing applied twice, nothing missed;
- a handler that raises: retried with backoff, then parked with the events of its
  account held behind it, while the other accounts flow; `sekiban reactions
  retry-parked` then hands them over, in order;
- and, on PostgreSQL, a runner that would poll once an hour is woken by NOTIFY.

No timed assertions: waits are generous deadlines for what must eventually hold.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from examples.bank import AccountProjector, DepositMoney, OpenAccount
from sekiban import PartitionKeys, SekibanExecutor
from sekiban.reactions import reactions_status
from sekiban.reactions.runner import HANDLER_RETRY
from sekiban.stores import open_store, with_query
from tests.conformance.backends import require_env
from tests.reaction_faults import domain
from tests.support import repository_env

ROOT = Path(__file__).resolve().parents[2]
WAIT = 300.0


@pytest.fixture(params=["sqlite", "postgres"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A store URL on fresh storage (dropped afterwards)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'events.db'}"
        return
    url = with_query(require_env("SEKIBAN_POSTGRES_DSN"), schema=f"t_{uuid.uuid4().hex[:12]}")
    yield url
    async with await open_store(url) as stores:
        await stores.events.drop_schema()  # type: ignore[attr-defined]


def start_runner(
    url: str,
    reactions: str,
    directory: Path,
    *,
    kill_at: int | None = None,
    poll: tuple[str, str] = ("0.05", "0.5"),
) -> subprocess.Popen[bytes]:
    """`sekiban reactions run` in a process of its own; output in `directory`."""
    env = repository_env(SEKIBAN_TEST_DIR=str(directory))
    env.pop("SEKIBAN_TEST_KILL_AT", None)
    if kill_at is not None:
        env["SEKIBAN_TEST_KILL_AT"] = str(kill_at)
    command = [sys.executable, "-m", "sekiban.cli", "reactions", "run", "--store", url]
    command += ["--domain", "tests.reaction_faults:domain"]
    command += ["--reactions", f"tests.reaction_faults:{reactions}"]
    command += ["--poll", poll[0], "--max-backoff", poll[1]]
    n = len(list(directory.glob("runner-*.log")))
    log = (directory / f"runner-{n}.log").open("wb")  # a file: a full pipe would block it
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def sekiban(*arguments: str) -> subprocess.CompletedProcess[str]:
    env = repository_env()
    return subprocess.run(
        [sys.executable, "-m", "sekiban.cli", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=WAIT,
    )


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=WAIT)


async def eventually(
    check: Callable[[], Awaitable[bool]], process: subprocess.Popen[bytes] | None = None
) -> None:
    """Wait (up to WAIT) until `check()`; the runner `process` must keep running."""
    async with asyncio.timeout(WAIT):
        while not await check():
            assert process is None or process.poll() is None, "the runner exited"
            await asyncio.sleep(0.1)


async def open_accounts(url: str, owners: list[str]) -> list[Any]:
    async with await open_store(url) as stores:
        executor = SekibanExecutor(domain(), stores.events)
        return [await executor.command(OpenAccount(owner=owner)) for owner in owners]


async def balances(url: str, accounts: list[PartitionKeys]) -> list[tuple[int, int]]:
    """(version, balance) of each account."""
    async with await open_store(url) as stores:
        executor = SekibanExecutor(domain(), stores.events)
        loaded = [await executor.load_aggregate(AccountProjector, keys) for keys in accounts]
        return [(a.version, a.payload.balance) for a in loaded]  # type: ignore[attr-defined]


async def outbox_events(url: str) -> dict[str, list[str]]:
    """The effect ids of every SideEffectRequested and SideEffectDelivered event."""
    found: dict[str, list[str]] = {"SideEffectRequested": [], "SideEffectDelivered": []}
    async with await open_store(url) as stores:
        to_event = SekibanExecutor(domain(), stores.events).repository.serializer.to_event
        async for batch in stores.events.read_all(0):
            for stored in batch:
                if stored.event_type in found:
                    payload = to_event(stored).payload
                    found[stored.event_type].append(payload.effect_id)  # type: ignore[attr-defined]
    return found


async def test_sigkill_during_outbox_delivery_loses_no_side_effect_and_records_each_once(
    store_url: str, tmp_path: Path
) -> None:
    owners = [f"owner{n}" for n in range(12)]
    accounts = [r.partition_keys for r in await open_accounts(store_url, owners)]
    deliveries = tmp_path / "deliveries.log"

    # Killed right after its 4th delivery, then right after the 9th line (the restarted
    # process delivers the 4th effect again first: its outcome was never recorded).
    for kill_at in (4, 9):
        killed = start_runner(store_url, "mail_reactions", tmp_path, kill_at=kill_at)
        assert killed.wait(timeout=WAIT) == -signal.SIGKILL
        assert len(deliveries.read_text().split()) == kill_at

    last = start_runner(store_url, "mail_reactions", tmp_path)

    async def all_delivered() -> bool:
        async with await open_store(store_url) as stores:
            status = await reactions_status(stores.events)
        return status.outbox["delivered"] == len(owners) and not status.undelivered

    await eventually(all_delivered, last)
    assert stop(last) == 0

    outbox = await outbox_events(store_url)
    requested = outbox["SideEffectRequested"]
    assert len(requested) == len(set(requested)) == len(owners)  # each recorded once
    assert sorted(outbox["SideEffectDelivered"]) == sorted(requested)  # delivered once each
    assert set(deliveries.read_text().split()) == set(requested)  # none lost
    assert await balances(store_url, accounts) == [(2, 10)] * len(owners)  # bonus once each


async def test_a_failing_handler_is_retried_then_parked_while_the_rest_flows(
    store_url: str, tmp_path: Path
) -> None:
    good1, bad, good2 = await open_accounts(store_url, ["good1", "bad", "good2"])
    async with await open_store(store_url) as stores:
        executor = SekibanExecutor(domain(), stores.events)
        deposit = await executor.command(
            DepositMoney(account_id=bad.partition_keys.aggregate_id, amount=5)
        )
    [good3] = await open_accounts(store_url, ["good3"])
    (tmp_path / "bad-accounts").write_text(str(bad.partition_keys.aggregate_id))
    (tmp_path / "broken").touch()
    opened_bad, deposited = str(bad.events[0].id), str(deposit.events[0].id)
    goods = [r.partition_keys for r in (good1, good2, good3)]

    runner = start_runner(store_url, "picky_reactions", tmp_path)

    async def parked_and_flowing() -> bool:
        async with await open_store(store_url) as stores:
            status = await reactions_status(stores.events, stores.projections)
        parked = [p for c in status.checkpoints if c.name == "picky" for p in c.parked]
        return len(parked) == 2 and await balances(store_url, goods) == [(2, 10)] * 3

    await eventually(parked_and_flowing, runner)
    async with await open_store(store_url) as stores:
        [checkpoint] = (await reactions_status(stores.events, stores.projections)).checkpoints
    head, held = checkpoint.parked
    assert (head["event_id"], head["attempts"]) == (opened_bad, HANDLER_RETRY.attempts)
    assert "RuntimeError: cannot handle account" in head["error"]
    assert (held["event_id"], held["held_behind"]) == (deposited, opened_bad)
    attempts = handed_over(tmp_path)
    # Tried `attempts` times before it was parked (again as often if a store fault
    # made the runner read that event again).
    assert attempts.count(opened_bad) % HANDLER_RETRY.attempts == 0
    assert deposited not in attempts  # held: never handed over while its head is parked
    before = len(attempts)

    (tmp_path / "broken").unlink()
    asked = sekiban("reactions", "retry-parked", "picky", "--all", "--store", store_url)
    assert asked.returncode == 0, asked.stdout + asked.stderr

    async def released() -> bool:
        [(version, balance)] = await balances(store_url, [bad.partition_keys])
        return (version, balance) == (3, 15)

    await eventually(released, runner)
    assert stop(runner) == 0
    released_order = [a for a in handed_over(tmp_path)[before:] if a in (opened_bad, deposited)]
    assert list(dict.fromkeys(released_order)) == [opened_bad, deposited]  # in order
    async with await open_store(store_url) as stores:
        [checkpoint] = (await reactions_status(stores.events, stores.projections)).checkpoints
    assert checkpoint.parked == []


def handed_over(directory: Path) -> list[str]:
    """The event ids `Picky` was handed, one per attempt, in order."""
    return [line.split()[0] for line in (directory / "attempts.log").read_text().splitlines()]


@pytest.mark.postgres
async def test_terminated_connections_are_reopened_and_nothing_is_applied_twice(
    dsn: str, admin: asyncpg.Connection, schema: str, tmp_path: Path
) -> None:
    url = with_query(dsn, schema=schema)
    runner_name = f"{schema}-runner"  # tells the runner's connections from the test's
    accounts = [r.partition_keys for r in await open_accounts(url, ["a0", "a1", "a2"])]
    runner = start_runner(
        with_query(url, application_name=runner_name), "bonus_reactions", tmp_path
    )
    try:

        async def paid() -> bool:
            return await balances(url, accounts) == [(2, 10)] * len(accounts)

        await eventually(paid, runner)
        for round_ in range(3):
            await eventually(lambda: listening(admin, runner_name), runner)  # reconnected
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1",
                runner_name,
            )
            assert killed >= 1  # at least its LISTEN connection
            more = await open_accounts(url, [f"b{round_}-{n}" for n in range(3)])
            accounts += [r.partition_keys for r in more]
            await asyncio.sleep(0.2)  # let it hit the dead connections

        await eventually(paid, runner)
        assert stop(runner) == 0
    finally:
        if runner.poll() is None:
            runner.kill()
        async with await open_store(url) as stores:
            await stores.events.drop_schema()  # type: ignore[attr-defined]


async def listening(admin: asyncpg.Connection, application_name: str) -> bool:
    """Whether a connection named `application_name` has LISTENed (its latest query)."""
    found = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
        "AND query LIKE 'LISTEN%'",
        application_name,
    )
    return bool(found)


@pytest.mark.postgres
async def test_on_postgresql_the_runner_is_woken_by_notify(
    dsn: str, admin: asyncpg.Connection, schema: str, tmp_path: Path
) -> None:
    url = with_query(dsn, schema=schema)
    runner_name = f"{schema}-runner"
    first = [r.partition_keys for r in await open_accounts(url, ["first"])]
    runner_url = with_query(url, application_name=runner_name)
    runner = start_runner(runner_url, "bonus_reactions", tmp_path, poll=("3600", "3600"))
    try:

        async def paid(accounts: list[PartitionKeys]) -> bool:
            return await balances(url, accounts) == [(2, 10)] * len(accounts)

        await eventually(lambda: paid(first), runner)  # its first round, at start
        await eventually(lambda: listening(admin, runner_name), runner)
        await asyncio.sleep(2)  # idle by now: it would poll again in an hour
        later = [r.partition_keys for r in await open_accounts(url, ["later"])]
        await eventually(lambda: paid(later), runner)  # only a NOTIFY can wake it
        assert stop(runner) == 0
    finally:
        if runner.poll() is None:
            runner.kill()
        async with await open_store(url) as stores:
            await stores.events.drop_schema()  # type: ignore[attr-defined]
