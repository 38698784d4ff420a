"""sekiban.fastapi: the generated routes, their OpenAPI, statuses and idempotency."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from examples.bank import (
    AccountList,
    AccountProjector,
    ActiveAccount,
    DepositMoney,
    OpenAccount,
    bank_domain,
)
from examples.fastapi_bank import create_app
from sekiban import (
    CommandLimits,
    ConcurrencyError,
    ConfigurationError,
    ConsistencyTimeoutError,
    DaprUnavailableError,
    PartitionKeys,
    Query,
    RemoteCommandError,
    RetryPolicy,
    SekibanExecutor,
    StoreConnectionError,
    StoredEvent,
    StoreError,
)
from sekiban.fastapi import problem_response, sekiban_lifespan, sekiban_router
from sekiban.stores.memory import InMemoryEventStore
from sekiban.stores.sqlite import SqliteEventStore

COMMANDS = ["open-account", "deposit-money", "withdraw-money", "close-account"]
PROBLEM = "application/problem+json"


@asynccontextmanager
async def serve_executor(executor: SekibanExecutor) -> AsyncIterator[SekibanExecutor]:
    yield executor


def serve(executor: SekibanExecutor) -> TestClient:
    return TestClient(create_app(lambda: serve_executor(executor)))


@pytest.fixture
def sqlite_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "bank.db"
    monkeypatch.setenv("SEKIBAN_SQLITE_PATH", str(path))
    return path


@pytest.fixture
def client(sqlite_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app()) as client:
        yield client


def open_account(client: TestClient, owner: str = "Ann", deposit: int = 0) -> str:
    opened = client.post("/commands/open-account", json={"owner": owner})
    assert opened.status_code == 200, opened.text
    account_id: str = opened.json()["partition_keys"]["aggregate_id"]
    if deposit:
        body = {"account_id": account_id, "amount": deposit}
        assert client.post("/commands/deposit-money", json=body).status_code == 200
    return account_id


def assert_problem(response: Any, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:sekiban:problem:{kind}"
    assert body["status"] == status
    assert body["title"] and body["detail"]
    return body


def test_openapi_lists_every_command_and_query_with_request_and_response_schemas(
    client: TestClient,
) -> None:
    spec = client.get("/openapi.json").json()
    schemas, paths = spec["components"]["schemas"], spec["paths"]
    assert spec["openapi"].startswith("3.")
    for name, model in zip(
        COMMANDS, ["OpenAccount", "DepositMoney", "WithdrawMoney", "CloseAccount"], strict=True
    ):
        post = paths[f"/commands/{name}"]["post"]
        request = post["requestBody"]["content"]["application/json"]["schema"]
        assert request == {"$ref": f"#/components/schemas/{model}"}
        assert "account_id" in schemas[model]["properties"]
        ok = post["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/CommandResult"}
        for status in ("409", "413", "422", "503"):
            problem = post["responses"][status]["content"][PROBLEM]["schema"]
            assert problem["required"] == ["type", "title", "status", "detail"]
        [header] = post["parameters"]
        assert (header["name"], header["in"]) == ("Idempotency-Key", "header")
    get = paths["/queries/active-accounts-query"]["get"]
    params = {p["name"]: p["in"] for p in get["parameters"]}
    assert params == {
        "min_balance": "query",
        "page_size": "query",
        "page_number": "query",
        "Sekiban-After": "header",
    }
    assert "504" in get["responses"]
    result = get["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    listed = schemas[result.rpartition("/")[2]]
    assert set(listed["properties"]) == {"items", "total_count", "page_number", "page_size"}
    assert listed["properties"]["items"]["items"] == {
        "$ref": "#/components/schemas/AggregateResult"
    }
    event = schemas["EventResult"]["properties"]
    assert {"type", "version", "payload"} <= set(event)
    # Every reference resolves: the document is self-contained.
    text = str(spec)
    for ref in {part.split("'")[0] for part in text.split("#/components/schemas/")[1:]}:
        assert ref in schemas, ref


def test_a_command_round_trip_returns_keys_version_and_events(client: TestClient) -> None:
    account_id = open_account(client)
    answer = client.post("/commands/deposit-money", json={"account_id": account_id, "amount": 30})
    assert answer.status_code == 200
    body = answer.json()
    assert body["partition_keys"] == {
        "aggregate_id": account_id,
        "group": "account",
        "root_partition_key": "default",
    }
    assert body["version"] == 2
    [event] = body["events"]
    assert (event["type"], event["version"], event["payload"]) == (
        "MoneyDeposited",
        2,
        {"amount": 30},
    )
    account = client.get(f"/accounts/{account_id}").json()
    assert (account["version"], account["payload_type"]) == (2, "ActiveAccount")
    assert account["payload"]["balance"] == 30


def test_a_query_answers_from_query_parameters(client: TestClient) -> None:
    rich = open_account(client, "Rich", 500)
    open_account(client, "Poor", 5)
    answer = client.get("/queries/active-accounts-query", params={"min_balance": 100})
    assert answer.status_code == 200
    body = answer.json()
    assert body["total_count"] == 1
    [item] = body["items"]
    # The payload keeps its subclass's fields (balance), not just AggregatePayload's.
    assert item["partition_keys"]["aggregate_id"] == rich
    assert item["payload"] == {"owner": "Rich", "balance": 500, "transactions": 1}
    bad = client.get("/queries/active-accounts-query", params={"page_size": 0})
    assert_problem(bad, 422, "validation")


def test_a_query_after_a_command_reads_its_writes(client: TestClient) -> None:
    answer = client.post("/commands/open-account", json={"owner": "Ty"})
    token = answer.headers["Sekiban-Consistency-Token"]
    assert token == answer.json()["consistency_token"]
    assert token.endswith("@1")
    listed = client.get("/queries/active-accounts-query", headers={"Sekiban-After": token})
    assert listed.status_code == 200
    ids = [item["partition_keys"]["aggregate_id"] for item in listed.json()["items"]]
    assert token.split("@")[2] in ids
    bad = client.get("/queries/active-accounts-query", headers={"Sekiban-After": "x@y"})
    assert_problem(bad, 422, "validation")


def test_a_projection_that_does_not_catch_up_in_time_is_504_with_retry_after() -> None:
    response = problem_response(ConsistencyTimeoutError("not yet"))
    assert response is not None and response.status_code == 504
    assert response.headers["Retry-After"]


def test_an_invalid_body_is_422(client: TestClient) -> None:
    body = assert_problem(
        client.post("/commands/deposit-money", json={"account_id": "x", "amount": -1}),
        422,
        "validation",
    )
    assert {tuple(e["loc"]) for e in body["errors"]} == {
        ("body", "account_id"),
        ("body", "amount"),
    }
    assert_problem(client.post("/commands/open-account", content=b"{not json"), 422, "validation")


def test_an_overdraft_refused_by_the_handler_is_409(client: TestClient) -> None:
    account_id = open_account(client, deposit=10)
    answer = client.post("/commands/withdraw-money", json={"account_id": account_id, "amount": 11})
    body = assert_problem(answer, 409, "refused")
    assert body["error"] == "InsufficientFundsError"
    assert body["detail"] == "balance 10 is less than 11"


def test_a_command_on_an_aggregate_in_the_wrong_state_is_409(client: TestClient) -> None:
    answer = client.post(
        "/commands/deposit-money", json={"account_id": str(uuid.uuid4()), "amount": 1}
    )
    assert assert_problem(answer, 409, "aggregate-state")["error"] == "AggregateStateError"


def test_a_payload_over_the_command_limits_is_413(sqlite_path: Path) -> None:
    store = InMemoryEventStore()
    executor = SekibanExecutor(bank_domain(), store, limits=CommandLimits(max_payload_bytes=20))
    with serve(executor) as client:
        answer = client.post("/commands/open-account", json={"owner": "x" * 30})
        assert assert_problem(answer, 413, "too-large")["error"] == "PayloadTooLargeError"


class RacingStore(InMemoryEventStore):
    """Before each append, another writer appends to the same stream first, once."""

    def __init__(self) -> None:
        super().__init__()
        self.rival: SekibanExecutor | None = None

    async def append(
        self, events: Sequence[StoredEvent], expected_version: int, *, command_id: str | None = None
    ) -> None:
        rival, self.rival = self.rival, None
        if rival is not None:
            keys = events[0].partition_keys
            await rival.command(DepositMoney(account_id=keys.aggregate_id, amount=1))
        await super().append(events, expected_version, command_id=command_id)


def test_a_lost_race_is_409_with_retry_after() -> None:
    store = RacingStore()
    executor = SekibanExecutor(bank_domain(), store, conflict_retry=RetryPolicy.never())
    with serve(executor) as client:
        account_id = open_account(client)
        store.rival = SekibanExecutor(bank_domain(), store)
        answer = client.post(
            "/commands/deposit-money", json={"account_id": account_id, "amount": 5}
        )
        assert assert_problem(answer, 409, "concurrency")["error"] == "ConcurrencyError"
        assert answer.headers["Retry-After"] == "1"


def test_a_closed_store_is_503_with_the_command_id_to_resend(client: TestClient) -> None:
    account_id = open_account(client)
    executor = client.app.state.sekiban_executor  # type: ignore[attr-defined]
    client.portal.call(executor.event_store.close)  # type: ignore[union-attr]
    answer = client.post(
        "/commands/deposit-money",
        json={"account_id": account_id, "amount": 5},
        headers={"Idempotency-Key": "deposit-1"},
    )
    body = assert_problem(answer, 503, "unavailable")
    assert body["error"] == "StoreConnectionError"
    assert body["command_id"] == answer.headers["Idempotency-Key"] == "deposit-1"
    assert answer.headers["Retry-After"] == "5"


def test_a_resend_with_the_same_idempotency_key_returns_the_first_response_and_appends_once(
    client: TestClient,
) -> None:
    account_id = open_account(client)
    body = {"account_id": account_id, "amount": 25}
    key = {"Idempotency-Key": "deposit-25-" + account_id}
    first = client.post("/commands/deposit-money", json=body, headers=key)
    again = client.post("/commands/deposit-money", json=body, headers=key)
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json()
    assert first.json()["command_id"] == key["Idempotency-Key"]
    account = client.get(f"/accounts/{account_id}").json()
    assert (account["version"], account["payload"]["balance"]) == (2, 25)
    other = client.post("/commands/deposit-money", json=body)
    assert other.json()["version"] == 3  # without a key, each call is a new command


@pytest.mark.parametrize("key", ["k" * 257, "tab\there", ""])
def test_a_bad_idempotency_key_is_422(client: TestClient, key: str) -> None:
    account_id = open_account(client)
    answer = client.post(
        "/commands/deposit-money",
        json={"account_id": account_id, "amount": 1},
        headers={"Idempotency-Key": key},
    )
    assert assert_problem(answer, 422, "validation")["errors"][0]["loc"] == [
        "header",
        "Idempotency-Key",
    ]


def test_the_longest_idempotency_key_is_accepted(client: TestClient) -> None:
    account_id = open_account(client)
    answer = client.post(
        "/commands/deposit-money",
        json={"account_id": account_id, "amount": 1},
        headers={"Idempotency-Key": "k" * 256},
    )
    assert answer.status_code == 200


def test_routes_without_the_lifespan_say_how_to_provide_the_executor() -> None:
    app = FastAPI()
    app.include_router(sekiban_router(bank_domain()))
    with TestClient(app) as client, pytest.raises(ConfigurationError, match="sekiban_lifespan"):
        client.post("/commands/open-account", json={"owner": "Ann"})


def test_the_lifespan_closes_what_it_opened() -> None:
    events: list[str] = []

    @asynccontextmanager
    async def open_executor() -> AsyncIterator[SekibanExecutor]:
        events.append("open")
        yield SekibanExecutor(bank_domain())
        events.append("close")

    app = FastAPI(lifespan=sekiban_lifespan(open_executor))
    with TestClient(app):
        assert events == ["open"]
    assert events == ["open", "close"]
    assert not hasattr(app.state, "sekiban_executor")


KEYS = PartitionKeys.generate(AccountProjector.name)


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (StoreError("reply lost", outcome_unknown=True), 503, "outcome-unknown"),
        (DaprUnavailableError("no sidecar"), 503, "outcome-unknown"),
        (StoreError("disk full"), 500, "store-error"),
        (RemoteCommandError("ConcurrencyError", "raced"), 409, "concurrency"),
        (RemoteCommandError("AggregateStateError", "closed"), 409, "aggregate-state"),
        (RemoteCommandError("PayloadTooLargeError", "big"), 413, "too-large"),
        (RemoteCommandError("CommandValidationError", "bad"), 422, "validation"),
        (RemoteCommandError("StoreConnectionError", "down"), 503, "outcome-unknown"),
        (RemoteCommandError("InsufficientFundsError", "poor"), 409, "refused"),
        (ConcurrencyError(KEYS, 1, 2), 409, "concurrency"),
    ],
)
def test_errors_of_a_command_map_to_statuses(error: Exception, status: int, kind: str) -> None:
    response = problem_response(error, command_id="c-1")
    assert response is not None
    assert response.status_code == status
    body = json.loads(bytes(response.body))
    assert (body["type"], body["status"], body["command_id"]) == (
        f"urn:sekiban:problem:{kind}",
        status,
        "c-1",
    )
    if status == 503:
        assert response.headers["Idempotency-Key"] == "c-1"
        assert "c-1" in body["detail"]


def test_an_unreachable_sidecar_during_a_query_is_503_without_a_command_id() -> None:
    response = problem_response(DaprUnavailableError("no sidecar"))
    assert response is not None and response.status_code == 503
    assert "Idempotency-Key" not in response.headers


@pytest.mark.parametrize("error", [KeyError("bug"), RuntimeError("bug"), TypeError("bug")])
def test_a_bug_is_not_a_client_error(error: Exception) -> None:
    assert problem_response(error, command_id="c-1") is None


def test_the_example_opens_its_sqlite_store_with_the_app_and_closes_it_after(
    sqlite_path: Path,
) -> None:
    with TestClient(create_app()) as client:
        open_account(client)
        store = client.app.state.sekiban_executor.event_store  # type: ignore[attr-defined]
        assert isinstance(store, SqliteEventStore)
    assert sqlite_path.exists()
    with pytest.raises(StoreConnectionError, match="closed"):
        asyncio.run(SekibanExecutor(bank_domain(), store).command(OpenAccount(owner="Bo")))


class Owner:
    """A result class pydantic has no schema for."""

    def __init__(self, name: str) -> None:
        self.name = name


class OwnersQuery(Query[list[Owner]]):
    """Owners of the accounts named: a list field, so the query is a POST body."""

    multi_projector = AccountList
    account_ids: list[uuid.UUID]

    def handle(self, state: Any) -> list[Owner]:
        return [
            Owner(a.payload.owner)
            for keys, a in state.items()
            if keys.aggregate_id in self.account_ids and isinstance(a.payload, ActiveAccount)
        ]


class BalanceQuery(Query[dict[str, int]]):
    multi_projector = AccountList

    def handle(self, state: Any) -> dict[str, int]:
        return {str(k.aggregate_id): a.payload.balance for k, a in state.items()}


def test_a_query_with_a_list_field_is_a_post_and_an_unknown_result_is_any_json() -> None:
    domain = bank_domain().register(OwnersQuery, BalanceQuery)
    app = FastAPI(lifespan=sekiban_lifespan(lambda: serve_executor(SekibanExecutor(domain))))
    app.include_router(sekiban_router(domain))
    with TestClient(app) as client:
        paths = client.get("/openapi.json").json()["paths"]
        owners = paths["/queries/owners-query"]["post"]
        assert owners["requestBody"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/OwnersQuery"
        }
        any_json = owners["responses"]["200"]["content"]["application/json"]["schema"]
        assert set(any_json) == {"title"}  # no type: any JSON
        balances = paths["/queries/balance-query"]["get"]["responses"]["200"]["content"]
        assert balances["application/json"]["schema"]["additionalProperties"] == {"type": "integer"}
        account_id = open_account(client, "Di", 3)
        answer = client.post("/queries/owners-query", json={"account_ids": [account_id]})
        assert answer.json() == [{"name": "Di"}]
        assert client.get("/queries/balance-query").json() == {account_id: 3}
