"""A small user project written against sekiban's public API, for the type checkers.

`mypy --strict` and `pyright` (strict; [tool.pyright] in pyproject.toml) check this file
in `make lint`, as a user's editor would: every public name it touches must be typed
well enough that neither reports an error. It also runs (`python sample_app.py`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator, Iterable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, FastAPI
from pydantic import Field

from sekiban import (
    Aggregate,
    AggregateListProjector,
    AggregatePayload,
    AggregateProjector,
    AggregateStateError,
    Command,
    CommandContext,
    CommandResponse,
    ConcurrencyError,
    DomainTypes,
    EmptyAggregatePayload,
    Event,
    EventPayload,
    Executor,
    ListQuery,
    ListQueryResult,
    PartitionKeys,
    RetryPolicy,
    SekibanExecutor,
)
from sekiban.fastapi import sekiban_executor, sekiban_lifespan, sekiban_router
from sekiban.settings import SekibanSettings
from sekiban.snapshot import SnapshotConfiguration
from sekiban.stores import Stores, open_store, with_query


class TaskAdded(EventPayload):
    title: str = Field(min_length=1)


class TaskDone(EventPayload):
    pass


class OpenTask(AggregatePayload):
    title: str


class DoneTask(AggregatePayload):
    title: str


class TaskProjector(AggregateProjector):
    name = "task"
    version = "1"

    def project(self, payload: AggregatePayload, event: Event[EventPayload]) -> AggregatePayload:
        match payload, event.payload:
            case EmptyAggregatePayload(), TaskAdded(title=title):
                return OpenTask(title=title)
            case OpenTask(title=title), TaskDone():
                return DoneTask(title=title)
            case _:
                return payload


class AddTask(Command):
    projector = TaskProjector
    required_payload = (EmptyAggregatePayload,)

    title: str
    task_id: uuid.UUID = Field(default_factory=uuid.uuid4)

    def partition_keys(self) -> PartitionKeys:
        return PartitionKeys.existing(self.task_id, TaskProjector.name)

    def handle(self, context: CommandContext[AggregatePayload]) -> EventPayload:
        return TaskAdded(title=self.title)


class CompleteTask(Command):
    projector = TaskProjector
    required_payload = (OpenTask,)

    task_id: uuid.UUID

    def partition_keys(self) -> PartitionKeys:
        return PartitionKeys.existing(self.task_id, TaskProjector.name)

    def handle(self, context: CommandContext[AggregatePayload]) -> list[EventPayload]:
        return [TaskDone()]


TaskList = AggregateListProjector.of(TaskProjector)


class OpenTasks(ListQuery[Aggregate[AggregatePayload]]):
    multi_projector = TaskList

    def filter(
        self, state: dict[PartitionKeys, Aggregate[AggregatePayload]]
    ) -> Iterable[Aggregate[AggregatePayload]]:
        return (a for a in state.values() if isinstance(a.payload, OpenTask))


domain = DomainTypes(
    TaskAdded, TaskDone, OpenTask, DoneTask, TaskProjector, TaskList, AddTask, CompleteTask,
    OpenTasks,
)  # fmt: skip


async def run_commands(executor: Executor) -> int:
    added: CommandResponse = await executor.command(AddTask(title="write"), command_id="add-1")
    keys: PartitionKeys = added.partition_keys
    await executor.command(CompleteTask(task_id=keys.aggregate_id))
    try:
        await executor.command(CompleteTask(task_id=keys.aggregate_id))
    except AggregateStateError:
        pass
    except ConcurrencyError as error:
        print(error.expected_version, error.actual_version)
    aggregate: Aggregate[AggregatePayload] = await executor.load_aggregate(TaskProjector, keys)
    page: ListQueryResult[Aggregate[AggregatePayload]] = await executor.query(OpenTasks())
    return aggregate.version + page.total_count


async def main() -> None:
    settings = SekibanSettings(store_url="memory://")
    config: SnapshotConfiguration = settings.snapshot_configuration()
    async with await settings.open_store() as stores:
        executor = SekibanExecutor(
            domain,
            stores.events,
            snapshot_store=stores.snapshots,
            snapshot_config=config,
            conflict_retry=RetryPolicy(attempts=3, base_delay=timedelta(milliseconds=5)),
        )
        assert await run_commands(executor) == 2
    sqlite: Stores = await open_store("sqlite:///:memory:")
    assert with_query("postgresql://db/app", schema="tasks").endswith("?schema=tasks")
    await sqlite.close()


@asynccontextmanager
async def open_executor() -> AsyncGenerator[SekibanExecutor]:
    async with await open_store("memory://") as stores:
        yield SekibanExecutor(domain, stores.events)


app = FastAPI(lifespan=sekiban_lifespan(open_executor))
app.include_router(sekiban_router(domain))


@app.get("/health")
async def health(executor: Annotated[Executor, Depends(sekiban_executor)]) -> dict[str, str]:
    return {"executor": type(executor).__name__}


if __name__ == "__main__":
    asyncio.run(main())
