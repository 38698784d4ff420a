"""The projector actor on the real Dapr runtime: two app instances sharing PostgreSQL
actor state, queries answered by the actor, and its host killed under it."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from examples.bank import AccountList, ActiveAccountsQuery, DepositMoney, OpenAccount, bank_domain
from sekiban import (
    CommandResponse,
    PartitionKeys,
    Query,
    QueryAnswerTooLargeError,
    RetryPolicy,
    SekibanExecutor,
)
from sekiban.dapr.executor import DaprSekibanExecutor
from sekiban.dapr.projection_state import DEFAULT_MAX_ACTOR_STATE_BYTES, record_from_document
from sekiban.dapr.projector_actor import DEFAULT_MAX_ANSWER_BYTES, DaprProjectorActor
from sekiban.projections import ProjectionRecord
from sekiban.stores import EventStore
from sekiban.testing.sidecar import Node
from tests.integration.dapr_support import BankCluster, active_actor_count, bank_cluster
from tests.integration.projector_host import PaddedAnswerQuery, domain
from tests.integration.test_postgres_global_order import hold_appends_to, wait_until_blocked
from tests.support import stored_events

pytestmark = pytest.mark.dapr

HOST = "tests.integration.projector_host:app"
ACTOR_TYPE = DaprProjectorActor.__name__
# Killing a node leaves calls to its actors failing until placement moves them.
PATIENT = RetryPolicy(attempts=15, base_delay=timedelta(milliseconds=200))


async def stored_record(bank: BankCluster, name: str) -> ProjectionRecord | None:
    """The projection record daprd keeps for the projector actor `name` of app "bank"."""
    connection = await asyncpg.connect(bank.dsn)
    try:
        value = await connection.fetchval(
            f"SELECT value::text FROM {bank.state_table} WHERE key = $1",
            f"bank||{ACTOR_TYPE}||{name}||projection",
        )
    finally:
        await connection.close()
    return record_from_document(name, value) if value else None


async def active_projectors(node: Node) -> int:
    return await active_actor_count(node.http_endpoint, ACTOR_TYPE)


async def full_replay(store: EventStore, query: Query[object], after: CommandResponse) -> object:
    """The answer of a fresh local executor: a replay from position 0."""
    return await SekibanExecutor(bank_domain(), store).query(query, after=after)


async def deposit(
    executor: DaprSekibanExecutor, keys: PartitionKeys, amount: int
) -> CommandResponse:
    return await executor.command(DepositMoney(account_id=keys.aggregate_id, amount=amount))


@pytest.mark.parametrize("state_bytes", [None, 600], ids=["inline", "in-chunks"])
async def test_queries_are_answered_by_the_projector_actor_and_survive_losing_its_host(
    tmp_path: Path, state_bytes: int | None
) -> None:
    # Saved every 10 events, never by the timer within the test; with 600-byte values
    # the state is kept in chunks.
    env = {"SEKIBAN_PROJECTION_PERSIST_EVERY": "10", "SEKIBAN_PROJECTION_FLUSH_SECONDS": "3600"}
    if state_bytes is not None:
        env["SEKIBAN_PROJECTION_STATE_BYTES"] = str(state_bytes)
    async with bank_cluster(tmp_path, extra_env=env, app_target=HOST) as bank:
        nodes = [bank.cluster.start_node("bank"), bank.cluster.start_node("bank")]
        executors = {
            node.http_endpoint: DaprSekibanExecutor(
                bank_domain(),
                bank.store,
                dapr_http_endpoint=node.http_endpoint,
                transient_retry=PATIENT,
            )
            for node in nodes
        }
        executor = executors[nodes[0].http_endpoint]
        accounts = []
        for i in range(8):
            opened = await executor.command(OpenAccount(owner=f"2024-01-0{i + 1}"))
            accounts.append(opened.partition_keys)
            await deposit(executor, opened.partition_keys, 1)
            last = await deposit(executor, opened.partition_keys, 2)

        # 24 events: the first query applies them all and saves them (persist_every=10).
        # PostgreSQL shows an event in the global order once no earlier append is in
        # flight: `after=` waits for it.
        answer = await executor.query(ActiveAccountsQuery(), after=last)
        assert answer == await full_replay(bank.store, ActiveAccountsQuery(), last)
        assert answer.total_count == 8
        record = await stored_record(bank, AccountList.name)
        assert record is not None and record.events_applied == 24
        assert (record.blob_key is None) == (state_bytes is None)

        # Read-your-writes through the actor, from the other instance's sidecar too.
        response = await executors[nodes[1].http_endpoint].command(
            DepositMoney(account_id=accounts[0].aggregate_id, amount=100)
        )
        rich = await executor.query(ActiveAccountsQuery(min_balance=100), after=response)
        assert [a.partition_keys for a in rich.items] == [accounts[0]]

        # Events applied since the checkpoint and not saved: lost with the host.
        for keys in accounts[1:4]:
            last = await deposit(executor, keys, 5)
        await executor.query(ActiveAccountsQuery(), after=last)
        before = await executor.projector_status(AccountList)
        assert (before.events_applied, before.checkpoint) == (28, record.position)
        checkpoint = await stored_record(bank, AccountList.name)
        assert checkpoint is not None and checkpoint.events_applied == 24
        assert checkpoint.position < before.position

        counts = [await active_projectors(node) for node in nodes]
        assert sorted(counts) == [0, 1]
        host, survivor = (nodes[0], nodes[1]) if counts[0] else (nodes[1], nodes[0])
        host.kill()  # SIGKILL: no deactivation, no save

        executor = executors[survivor.http_endpoint]
        last = await deposit(executor, accounts[5], 7)
        answer = await executor.query(ActiveAccountsQuery(), after=last)

        assert answer == await full_replay(bank.store, ActiveAccountsQuery(), last)
        status = await executor.projector_status(AccountList)
        # Restored from the persisted checkpoint (a rebuild from 0 would have saved at
        # 10 events), then the 5 events after it caught up, not saved yet.
        assert status.checkpoint == checkpoint.position
        assert (status.events_applied, status.lag_events, status.last_error) == (29, 0, None)
        assert await active_projectors(survivor) == 1


async def test_a_query_waiting_for_after_lets_the_projections_other_queries_through(
    tmp_path: Path,
) -> None:
    """daprd runs one call of the projector actor at a time: the query waiting for a
    command the projection cannot reach yet must not keep the others out."""
    async with bank_cluster(tmp_path, app_target=HOST) as bank:
        node = bank.cluster.start_node("bank")
        executor = DaprSekibanExecutor(bank_domain(), dapr_http_endpoint=node.http_endpoint)
        await executor.command(OpenAccount(owner="ann"))
        assert (await executor.query(ActiveAccountsQuery())).total_count == 1

        # An append held open inside its transaction: PostgreSQL shows no event after it
        # in the global order until it ends, so the projection cannot reach `later`.
        schema = bank.state_table.split(".")[0]
        admin = await asyncpg.connect(bank.dsn)
        try:
            slow = PartitionKeys.generate("account")
            gate = await hold_appends_to(schema, admin, slow)
            opened = stored_events(
                slow, 1, 1, payload='{"owner":"held"}', event_type="AccountOpened"
            )
            held = asyncio.create_task(bank.store.append(opened, 0))
            await wait_until_blocked(admin, gate)
            later = await executor.command(OpenAccount(owner="bob"))

            waiting = asyncio.create_task(
                executor.query(ActiveAccountsQuery(), after=later, timeout=timedelta(seconds=60))
            )
            await asyncio.sleep(0.5)  # the waiting query reaches the actor first
            plain = asyncio.create_task(executor.query(ActiveAccountsQuery()))
            done, _ = await asyncio.wait({waiting, plain}, return_when=asyncio.FIRST_COMPLETED)
            assert done == {plain}
            assert plain.result().total_count == 1
        finally:
            await admin.execute("SELECT pg_advisory_unlock($1)", gate)
            await admin.close()
        await held
        assert (await waiting).total_count == 3  # ann, the held append's account, bob


async def test_a_quiet_projector_actor_saves_its_state_on_its_timer(tmp_path: Path) -> None:
    """persist_every is 10 000: the timer saves the one event applied. (Deactivation
    cannot: daprd 1.18 refuses the state writes of an actor it is deactivating.)"""
    env = {"SEKIBAN_PROJECTION_FLUSH_SECONDS": "1"}
    async with bank_cluster(tmp_path, extra_env=env, app_target=HOST) as bank:
        node = bank.cluster.start_node("bank")
        executor = DaprSekibanExecutor(bank_domain(), dapr_http_endpoint=node.http_endpoint)
        opened = await executor.command(OpenAccount(owner="ann"))
        await executor.query(ActiveAccountsQuery(), after=opened)
        deadline = asyncio.get_running_loop().time() + 30
        record = await stored_record(bank, AccountList.name)
        while record is None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
            record = await stored_record(bank, AccountList.name)
        assert record is not None and record.events_applied == 1
        status = await executor.projector_status(AccountList)
        assert status.checkpoint == record.position


async def test_daprd_takes_an_actor_state_record_of_the_default_limit_and_refuses_4mib(
    tmp_path: Path,
) -> None:
    """The default `DEFAULT_MAX_ACTOR_STATE_BYTES` fits daprd's default --max-body-size
    (4 MiB) for the one request the SDK saves actor state with; a bigger one does not."""
    async with bank_cluster(tmp_path, app_target=HOST) as bank:
        node = bank.cluster.start_node("bank")
        executor = DaprSekibanExecutor(
            bank_domain(), bank.store, dapr_http_endpoint=node.http_endpoint
        )
        await executor.query(ActiveAccountsQuery())  # activates the actor on this node
        url = f"{node.http_endpoint}/v1.0/actors/{ACTOR_TYPE}/{AccountList.name}/state"

        async def save(size: int) -> int:
            # A JSON string of `size` bytes in all, as a record's base64 payload would be.
            value = json.dumps(base64.b64encode(b"x" * ((size - 2) * 3 // 4)).decode())
            body = json.dumps([{"operation": "upsert", "request": {"key": "probe", "value": None}}])
            body = body.replace("null", value)
            async with (
                aiohttp.ClientSession() as client,
                client.put(
                    url, data=body.encode(), headers={"Content-Type": "application/json"}
                ) as r,
            ):
                return r.status

        assert await save(DEFAULT_MAX_ACTOR_STATE_BYTES) in (200, 201, 204)
        assert await save(4 * 1024 * 1024 + 1024) >= 400


async def test_an_answer_of_the_default_limit_passes_between_sidecars_and_a_larger_is_refused(
    tmp_path: Path,
) -> None:
    """daprd passes an actor's reply from one sidecar to another only up to 4 MiB (and
    from its own app without a limit): the actor's `DEFAULT_MAX_ANSWER_BYTES` fits, and
    a larger answer is refused the same way from either sidecar."""
    async with bank_cluster(tmp_path, app_target=HOST) as bank:
        nodes = [bank.cluster.start_node("bank"), bank.cluster.start_node("bank")]
        for node in nodes:  # one of them forwards to the other's actor
            executor = DaprSekibanExecutor(
                domain(), bank.store, dapr_http_endpoint=node.http_endpoint
            )
            # A JSON string: the answer's bytes are its size plus two quotes.
            fits = PaddedAnswerQuery(size=DEFAULT_MAX_ANSWER_BYTES - 2)
            assert len(await executor.query(fits)) == fits.size
            with pytest.raises(QueryAnswerTooLargeError, match="PaddedAnswerQuery"):
                await executor.query(PaddedAnswerQuery(size=DEFAULT_MAX_ANSWER_BYTES))
        assert sorted([await active_projectors(node) for node in nodes]) == [0, 1]
