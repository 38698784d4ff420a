"""The user-facing test utilities: they pass on the truth and fail on anything else."""

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from examples.bank import (
    AccountOpened,
    AccountProjector,
    ActiveAccount,
    ActiveAccountsQuery,
    DepositMoney,
    InsufficientFundsError,
    MoneyDeposited,
    MoneyWithdrawn,
    OpenAccount,
    WithdrawMoney,
    bank_domain,
)
from sekiban import AggregateStateError, PartitionKeys
from sekiban.errors import SidecarError
from sekiban.snapshot import RejectionReason, SnapshotConfiguration
from sekiban.stores.sqlite import SqliteEventStore
from sekiban.testing import (
    Scenario,
    assert_loaded_from_snapshot,
    assert_replayed_in_full,
    assert_snapshot_compatible,
    assert_snapshot_incompatible,
    assert_snapshot_taken,
    given_snapshot,
)
from sekiban.testing.sidecar import (
    DaprCluster,
    free_port,
    postgres_actor_state_component,
    wait_until_ready,
)


def keys() -> PartitionKeys:
    return PartitionKeys.generate(AccountProjector.name)


async def test_given_events_when_command_then_events_and_state() -> None:
    scenario = Scenario(bank_domain())
    account = keys()
    await scenario.given_events(account, AccountOpened(owner="ann"), MoneyDeposited(amount=10))
    result = await scenario.when(WithdrawMoney(account_id=account.aggregate_id, amount=4))
    result.then_events(MoneyWithdrawn(amount=4))
    await scenario.then_aggregate(
        AccountProjector, account, ActiveAccount(owner="ann", balance=6, transactions=2), version=3
    )


async def test_then_error_checks_type_and_message() -> None:
    scenario = Scenario(bank_domain())
    account = keys()
    await scenario.given_events(account, AccountOpened(owner="ann"))
    result = await scenario.when(WithdrawMoney(account_id=account.aggregate_id, amount=4))
    result.then_error(InsufficientFundsError, match="less than 4")
    with pytest.raises(AssertionError, match="expected AggregateStateError"):
        result.then_error(AggregateStateError)
    with pytest.raises(AssertionError, match="the command failed"):
        result.then_events(MoneyWithdrawn(amount=4))


async def test_wrong_expectations_fail() -> None:
    scenario = Scenario(bank_domain())
    [opened] = await scenario.given(OpenAccount(owner="ann"))
    result = await scenario.when(
        DepositMoney(account_id=opened.partition_keys.aggregate_id, amount=1)
    )
    with pytest.raises(AssertionError, match="expected events"):
        result.then_events(MoneyDeposited(amount=2))
    with pytest.raises(AssertionError, match="succeeded"):
        result.then_error(ValueError)
    with pytest.raises(AssertionError, match="expected version 9"):
        await scenario.then_aggregate(AccountProjector, opened.partition_keys, version=9)


async def test_then_query_over_any_store(tmp_path: Path) -> None:
    store = await SqliteEventStore.open(tmp_path / "t.db")
    scenario = Scenario(bank_domain(), store)
    await scenario.given(OpenAccount(owner="ann"), OpenAccount(owner="bob"))
    result = await scenario.executor.query(ActiveAccountsQuery())
    await scenario.then_query(ActiveAccountsQuery(), result)
    assert result.total_count == 2
    with pytest.raises(AssertionError, match="answered"):
        await scenario.then_query(ActiveAccountsQuery(), None)
    await store.close()


async def test_snapshot_helpers_describe_loads_and_saves() -> None:
    scenario = Scenario(bank_domain(), snapshot_config=SnapshotConfiguration(count_threshold=5))
    account = keys()
    await scenario.given_events(
        account, AccountOpened(owner="ann"), *[MoneyDeposited(amount=1)] * 11
    )
    snapshot = await given_snapshot(scenario, AccountProjector, account, 8)
    loaded = await scenario.executor.load(AccountProjector, account)
    assert_loaded_from_snapshot(loaded, version=8, replayed=4)
    with pytest.raises(AssertionError, match="replayed 4 events, not 3"):
        assert_loaded_from_snapshot(loaded, version=8, replayed=3)
    assert_snapshot_compatible(scenario, snapshot, AccountProjector)

    class Bumped(AccountProjector):
        name = "account"
        version = "2"

    assert_snapshot_incompatible(scenario, snapshot, Bumped(), RejectionReason.PROJECTOR_VERSION)
    await scenario.given(DepositMoney(account_id=account.aggregate_id, amount=1))
    await assert_snapshot_taken(scenario, AccountProjector, account, 13)


async def test_full_replay_assertion_names_the_reason() -> None:
    scenario = Scenario(bank_domain())
    account = keys()
    await scenario.given_events(account, AccountOpened(owner="ann"))
    loaded = await scenario.executor.load(AccountProjector, account)
    assert assert_replayed_in_full(loaded) is None
    with pytest.raises(AssertionError, match="did not use a snapshot"):
        assert_loaded_from_snapshot(loaded, version=1, replayed=0)
    with pytest.raises(AssertionError, match="no snapshot"):
        await assert_snapshot_taken(
            scenario, AccountProjector, PartitionKeys.existing(uuid.uuid4(), "account"), 1
        )


def test_the_component_file_with_the_database_password_is_private(tmp_path: Path) -> None:
    """Also when a file from an earlier run, or another tool, was world-readable."""
    components = tmp_path / "components"
    components.mkdir()
    stale = components / "actorstate.yaml"
    stale.write_text("old")
    stale.chmod(0o644)
    component = postgres_actor_state_component("s", "postgresql://u:hunter2@h/db", "t")
    cluster = DaprCluster(tmp_path, "examples.dapr_host:app", component, binaries=tmp_path)
    written = cluster.components / "actorstate.yaml"
    assert written.read_text() == component
    assert written.stat().st_mode & 0o777 == 0o600


def test_a_process_that_never_gets_ready_is_reported_with_the_end_of_its_log(
    tmp_path: Path,
) -> None:
    # Test runs delete their temporary directories: the error itself must say why.
    log = tmp_path / "app.log"
    code = "import sys, time; print('binding failed: address already in use', flush=True)"
    with log.open("wb") as out:
        exits = subprocess.Popen([sys.executable, "-c", code + "; sys.exit(3)"], stdout=out)
        with pytest.raises(SidecarError, match="exited with 3") as exited:
            wait_until_ready(f"http://127.0.0.1:{free_port()}/healthz", exits, log, 30)
    assert "address already in use" in str(exited.value)

    with log.open("wb") as out:
        hangs = subprocess.Popen([sys.executable, "-c", code + "; time.sleep(30)"], stdout=out)
        try:
            for _ in range(3000):  # until it has written its line (no time asserted)
                if b"address" in log.read_bytes():
                    break
                time.sleep(0.01)
            with pytest.raises(SidecarError, match="did not become ready") as timed_out:
                wait_until_ready(f"http://127.0.0.1:{free_port()}/healthz", hangs, log, 0.5)
        finally:
            hangs.kill()
            hangs.wait()
    assert "address already in use" in str(timed_out.value)
