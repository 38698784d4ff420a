"""FastAPI integration: routes generated from a domain's commands and queries.

    app = FastAPI(lifespan=sekiban_lifespan(open_executor))
    app.include_router(sekiban_router(domain))

Routes (names are the registered names in kebab case, `DepositMoney` → `deposit-money`):

- `POST /commands/{name}`: the body is the command; the answer a `CommandResult`. An
  `Idempotency-Key` header becomes the command id, so a resend is applied once and
  answered with the first response. The `Sekiban-Consistency-Token` header (also
  `consistency_token` in the body) names the command's last event.
- `GET /queries/{name}` with the query's fields as query parameters, or `POST` with
  the query as JSON body when a field is not a plain value (a list, a model). A
  `Sekiban-After` header with a command's consistency token makes the answer include
  that command's events (read-your-writes; 504 if the projection does not catch up in
  time).

Errors are RFC 9457 problem details (`application/problem+json`); `problem_response`
holds the table of statuses. Extra `fastapi`.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from pydantic.errors import PydanticUserError

from sekiban import errors
from sekiban._extras import require_extra
from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.command import Command, CommandResponse
from sekiban.core.domain_types import DomainTypes
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import _kebab
from sekiban.core.query import ListQuery, ListQueryResult
from sekiban.core.query import Query as SekibanQuery
from sekiban.errors import ConfigurationError, SekibanError
from sekiban.executor import Executor

with require_extra("fastapi", "sekiban.fastapi"):
    from fastapi import APIRouter, Body, Depends, FastAPI, Header, Request, Response
    from fastapi import Query as QueryParams
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi.routing import APIRoute

__all__ = [
    "AggregateResult",
    "CommandResult",
    "EventResult",
    "ListResult",
    "PartitionKeysResult",
    "ProblemDetails",
    "SekibanRoute",
    "problem_response",
    "sekiban_executor",
    "sekiban_lifespan",
    "sekiban_router",
]

Item = TypeVar("Item")

IDEMPOTENCY_KEY = "Idempotency-Key"
AFTER = "Sekiban-After"
CONSISTENCY_TOKEN = "Sekiban-Consistency-Token"
# The store's limit for a command id; no control characters (tabs included), which
# would make the id unprintable in logs and error messages.
IDEMPOTENCY_KEY_MAX_LENGTH = 256
IDEMPOTENCY_KEY_PATTERN = r"^[^\x00-\x1f\x7f]+$"
# Seconds a client should wait before retrying: a lost race clears at once, an
# unreachable store takes longer.
CONFLICT_RETRY_AFTER = 1
UNAVAILABLE_RETRY_AFTER = 5
PROBLEM_JSON = "application/problem+json"
STATE_KEY = "sekiban_executor"


# --- response models -------------------------------------------------------


class PartitionKeysResult(BaseModel):
    """An aggregate's partition keys as JSON."""

    aggregate_id: uuid.UUID
    group: str
    root_partition_key: str

    @classmethod
    def of(cls, keys: PartitionKeys) -> PartitionKeysResult:
        return cls(
            aggregate_id=keys.aggregate_id,
            group=keys.group,
            root_partition_key=keys.root_partition_key,
        )


class EventResult(BaseModel):
    """One appended event: its registered type name, version and payload."""

    id: uuid.UUID
    type: str
    version: int
    sortable_unique_id: str
    timestamp: datetime
    payload: dict[str, Any]


class CommandResult(BaseModel):
    """The answer to a command: the aggregate's keys, its new version, the events
    appended, and the command id (the `Idempotency-Key` to resend it with)."""

    command_id: str
    partition_keys: PartitionKeysResult
    version: int
    events: list[EventResult]
    consistency_token: str
    """Send it back as the `Sekiban-After` header of a query to read this command's
    own writes."""

    @classmethod
    def of(cls, response: CommandResponse, command_id: str, domain: DomainTypes) -> CommandResult:
        return cls(
            command_id=command_id,
            partition_keys=PartitionKeysResult.of(response.partition_keys),
            version=response.version,
            consistency_token=response.consistency_token,
            events=[
                EventResult(
                    id=event.id,
                    type=domain.event_name(type(event.payload)),
                    version=event.version,
                    sortable_unique_id=str(event.sortable_unique_id),
                    timestamp=event.timestamp,
                    payload=event.payload.model_dump(mode="json"),
                )
                for event in response.events
            ],
        )


class AggregateResult(BaseModel):
    """An aggregate in a query answer: keys, version, payload type name and payload."""

    partition_keys: PartitionKeysResult
    version: int
    payload_type: str
    payload: dict[str, Any]

    @classmethod
    def of(cls, aggregate: Aggregate[AggregatePayload], domain: DomainTypes) -> AggregateResult:
        payload = aggregate.payload
        return cls(
            partition_keys=PartitionKeysResult.of(aggregate.partition_keys),
            version=aggregate.version,
            payload_type=domain.payload_name(type(payload)),
            payload=payload.model_dump(mode="json"),
        )


class ListResult(BaseModel, Generic[Item]):
    """One page of a list query, with the count before paging."""

    items: list[Item]
    total_count: int
    page_number: int
    page_size: int | None


class ProblemDetails(BaseModel):
    """An RFC 9457 problem: `type` (a `urn:sekiban:problem:*` URI), `title`, `status`,
    `detail`, and extension members (`error`, `command_id`, `errors`, ...)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str


# --- errors -----------------------------------------------------------------

# (error class, status, problem type, title): the first class the error is an instance
# of decides. RemoteCommandError (the Dapr executor) is looked up by its `error_type`.
_STATUSES: tuple[tuple[type[BaseException], int, str, str], ...] = (
    (errors.CommandValidationError, 422, "validation", "The command is invalid"),
    (errors.InvalidPartitionKeysError, 422, "validation", "The command is invalid"),
    (PydanticValidationError, 422, "validation", "The request is invalid"),
    (errors.AggregateStateError, 409, "aggregate-state", "The aggregate is not in that state"),
    (errors.ConcurrencyError, 409, "concurrency", "Another writer changed the aggregate"),
    (errors.PayloadTooLargeError, 413, "too-large", "The command writes too much"),
    (errors.TooManyEventsError, 413, "too-large", "The command writes too much"),
    (errors.CommandTooLargeError, 413, "too-large", "The command writes too much"),
    (errors.InvalidReadError, 422, "validation", "The request is invalid"),
    (errors.ConsistencyTimeoutError, 504, "not-caught-up", "The projection has not caught up"),
    (errors.ProjectionError, 500, "projection-error", "The projection failed on an event"),
    (errors.StoreConnectionError, 503, "unavailable", "The event store is unavailable"),
    (errors.DaprUnavailableError, 503, "unavailable", "The Dapr sidecar is unavailable"),
    (errors.StoreError, 500, "store-error", "The event store failed"),
)
_REFUSED = (409, "refused", "The command was refused")
_OUTCOME_UNKNOWN = (503, "outcome-unknown", "The command's outcome is unknown")


def _classify(error: BaseException, in_command: bool) -> tuple[int, str, str] | None:
    cls: type[BaseException] = type(error)
    if isinstance(error, errors.RemoteCommandError):
        named = getattr(errors, error.error_type, None)
        if not (isinstance(named, type) and issubclass(named, SekibanError)):
            return _REFUSED  # the actor's handler raised a domain error
        cls = named
        if in_command and issubclass(cls, errors.StoreError):
            # The actor does not say whether its write landed: resending is safe.
            return _OUTCOME_UNKNOWN
    if in_command and (
        issubclass(cls, errors.DaprUnavailableError)
        or (isinstance(error, errors.StoreError) and error.outcome_unknown)
    ):
        return _OUTCOME_UNKNOWN
    for error_type, status, slug, title in _STATUSES:
        if issubclass(cls, error_type):
            return status, slug, title
    # A handler refuses a command by raising: a ValueError (the usual spelling, e.g.
    # InsufficientFundsError) is the client asking for something the state forbids.
    # Anything else is a bug and propagates as a 500 with no details to the client.
    if issubclass(cls, ValueError) and not issubclass(cls, SekibanError):
        return _REFUSED
    return None


def problem_response(error: BaseException, *, command_id: str | None = None) -> JSONResponse | None:
    """The problem-details response for `error`, or None when it is not a client-facing
    error (a bug or an unexpected failure: let it become a 500).

    | error | status |
    |---|---|
    | `CommandValidationError`, `InvalidPartitionKeysError`, request validation | 422 |
    | a malformed `Sekiban-After` token (`InvalidReadError`) | 422 |
    | `ConsistencyTimeoutError` (with `Retry-After`) | 504 |
    | `ProjectionError` | 500 |
    | `AggregateStateError`, a handler's `ValueError` (a refusal) | 409 |
    | `ConcurrencyError` (with `Retry-After`) | 409 |
    | `PayloadTooLargeError`, `TooManyEventsError`, `CommandTooLargeError` | 413 |
    | `StoreConnectionError`, `StoreBusyError`, `DaprUnavailableError` | 503 |
    | unknown outcome of a command (`StoreError.outcome_unknown`, `DaprUnavailableError`) | 503 |
    | other `StoreError` | 500 |

    `RemoteCommandError` maps by its `error_type` name; a name that is not a sekiban
    error is a domain refusal (409). With `command_id` (a command's), the body carries
    it; a 503 also returns it in the `Idempotency-Key` header to resend with.
    """
    found = _classify(error, command_id is not None)
    if found is None:
        return None
    status, slug, title = found
    name = (
        error.error_type if isinstance(error, errors.RemoteCommandError) else type(error).__name__
    )
    extensions: dict[str, Any] = {"error": name}
    headers: dict[str, str] = {}
    if isinstance(error, PydanticValidationError):
        extensions["errors"] = jsonable_encoder(error.errors(include_url=False))
    elif isinstance(error, errors.CommandValidationError):
        extensions["errors"] = jsonable_encoder(error.errors)
    if command_id is not None:
        extensions["command_id"] = command_id
    if slug == "concurrency":
        headers["Retry-After"] = str(CONFLICT_RETRY_AFTER)
    if status in (503, 504):
        headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
        if command_id is not None:
            headers[IDEMPOTENCY_KEY] = command_id
    detail = str(error)
    if slug == "outcome-unknown":
        detail += f". Send the command again with {IDEMPOTENCY_KEY}: {command_id} to apply it once"
    return _problem(status, slug, title, detail, extensions, headers)


def _problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    extensions: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"type": f"urn:sekiban:problem:{slug}", "title": title, "status": status}
    return JSONResponse(
        {**body, "detail": detail, **extensions},
        status_code=status,
        headers=headers,
        media_type=PROBLEM_JSON,
    )


class SekibanRoute(APIRoute):
    """A route whose invalid requests (body, query parameters, headers) are answered
    with a 422 problem-details body instead of FastAPI's default shape. Use it for
    your own routes with `APIRouter(route_class=SekibanRoute)`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                problems = jsonable_encoder(error.errors())
                fields = ", ".join(".".join(map(str, p.get("loc", ()))) for p in problems)
                return _problem(
                    422,
                    "validation",
                    "The request is invalid",
                    f"invalid {fields}",
                    {"error": "RequestValidationError", "errors": problems},
                )

        return route


def _problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    schema = ProblemDetails.model_json_schema()
    return {
        status: {"description": "Problem details", "content": {PROBLEM_JSON: {"schema": schema}}}
        for status in statuses
    }


# --- executor, lifespan ------------------------------------------------------


def sekiban_executor(request: Request) -> Executor:
    """The app's executor, as a dependency: `executor: Executor =
    Depends(sekiban_executor)`. `sekiban_lifespan` puts it on `app.state`; without it,
    raises `ConfigurationError`."""
    executor: Executor | None = getattr(request.app.state, STATE_KEY, None)
    if executor is None:
        raise ConfigurationError(
            "no sekiban executor on app.state: create the app with "
            "FastAPI(lifespan=sekiban_lifespan(open_executor))"
        )
    return executor


def sekiban_lifespan(
    open_executor: Callable[[], AbstractAsyncContextManager[Executor]],
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A FastAPI lifespan that enters `open_executor()` (an async context manager that
    opens the store and yields an executor) at startup, puts the executor on
    `app.state` for `sekiban_executor`, and exits it (closing the store) at shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_executor() as executor:
            setattr(app.state, STATE_KEY, executor)
            try:
                yield
            finally:
                delattr(app.state, STATE_KEY)

    return lifespan


# --- the router ---------------------------------------------------------------


def sekiban_router(domain: DomainTypes, *, tags: list[str | enum.Enum] | None = None) -> APIRouter:
    """An `APIRouter` with `POST /commands/{name}` for every command registered in
    `domain` and `GET` (or `POST`) `/queries/{name}` for every query; names are the
    registered names in kebab case. The executor comes from `sekiban_executor`."""
    router = APIRouter(route_class=SekibanRoute, tags=tags)
    for name, command_type in sorted(domain.command_types.items()):
        _add_command(router, domain, name, command_type)
    for name, query_type in sorted(domain.query_types.items()):
        _add_query(router, domain, name, query_type)
    return router


def _add_command(router: APIRouter, domain: DomainTypes, name: str, cls: type[Command]) -> None:
    async def endpoint(
        command: Command, executor: Executor, idempotency_key: str | None
    ) -> Response | CommandResult:
        command_id = idempotency_key or str(uuid.uuid4())
        try:
            response = await executor.command(command, command_id=command_id)
        except Exception as error:
            problem = problem_response(error, command_id=command_id)
            if problem is None:
                raise
            return problem
        result = CommandResult.of(response, command_id, domain)
        return JSONResponse(
            result.model_dump(mode="json"),
            headers={CONSISTENCY_TOKEN: response.consistency_token},
        )

    key_header = Header(
        None,
        alias=IDEMPOTENCY_KEY,
        max_length=IDEMPOTENCY_KEY_MAX_LENGTH,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="The command id: a resend with the same key is applied once and "
        "answered with the first response.",
    )
    _set_signature(
        endpoint,
        command=(Annotated[cls, Body()], inspect.Parameter.empty),
        executor=(Executor, Depends(sekiban_executor)),
        idempotency_key=(str | None, key_header),
    )
    router.add_api_route(
        f"/commands/{_kebab(name)}",
        endpoint,
        methods=["POST"],
        name=name,
        summary=name,
        description=inspect.getdoc(cls) if cls.__doc__ else None,
        operation_id=f"command-{_kebab(name)}",
        response_model=CommandResult,
        responses=_problem_responses(409, 413, 422, 500, 503),
    )


def _add_query(
    router: APIRouter, domain: DomainTypes, name: str, cls: type[SekibanQuery[Any]]
) -> None:
    result_type = _result_type(cls)

    async def endpoint(query: SekibanQuery[Any], executor: Executor, after: str | None) -> Response:
        try:
            result = await executor.query(query, after=after or None)
        except Exception as error:
            problem = problem_response(error)
            if problem is None:
                raise
            return problem
        return JSONResponse(_plain(result, domain))

    as_params = all(_is_plain(field.annotation) for field in cls.model_fields.values())
    where = QueryParams() if as_params else Body()
    after_header = Header(
        None,
        alias=AFTER,
        max_length=1000,
        description="A command's consistency token: the answer then includes that "
        "command's events (waiting for the projection to apply them).",
    )
    _set_signature(
        endpoint,
        query=(Annotated[cls, where], inspect.Parameter.empty),
        executor=(Executor, Depends(sekiban_executor)),
        after=(str | None, after_header),
    )
    router.add_api_route(
        f"/queries/{_kebab(name)}",
        endpoint,
        methods=["GET" if as_params else "POST"],
        name=name,
        summary=name,
        description=inspect.getdoc(cls) if cls.__doc__ else None,
        operation_id=f"query-{_kebab(name)}",
        response_model=result_type,
        responses=_problem_responses(422, 500, 503, 504),
    )


def _set_signature(function: Callable[..., Any], **parameters: tuple[Any, Any]) -> None:
    # FastAPI reads parameters from the signature; the command or query type is only
    # known at run time, so the signature is built here instead of written out.
    function.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=ann, default=d)
            for name, (ann, d) in parameters.items()
        ]
    )


_PLAIN = (str, int, float, bool, Decimal, uuid.UUID, datetime, date, time, timedelta)


def _is_plain(annotation: Any) -> bool:
    """Whether a field can be a query parameter: a plain value, an enum, a literal, or
    an optional one of these."""
    if annotation is None or annotation is type(None):
        return True
    if isinstance(annotation, type):
        return issubclass(annotation, (*_PLAIN, enum.Enum))
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return True
    if origin is Annotated:
        return _is_plain(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return all(_is_plain(arg) for arg in typing.get_args(annotation))
    return False


def _result_type(cls: type[SekibanQuery[Any]]) -> Any:
    """The response model of a query: its `Query[R]`/`ListQuery[Item]` argument, with
    `Aggregate` shown as `AggregateResult` and list results as `ListResult`; `Any` (an
    unconstrained schema) when no argument is found or it has no JSON schema."""
    for base in cls.__mro__:
        metadata = getattr(base, "__pydantic_generic_metadata__", None) or {}
        origin, args = metadata.get("origin"), metadata.get("args", ())
        if origin is ListQuery and args:
            return _checked(ListResult[_shown(args[0])])  # type: ignore[misc]
        if origin is SekibanQuery and args:
            return _checked(_shown(args[0]))
    return Any


def _shown(annotation: Any) -> Any:
    origin = typing.get_origin(annotation) or annotation
    if origin is Aggregate:
        return AggregateResult
    if origin is ListQueryResult:
        args = typing.get_args(annotation)
        return ListResult[_shown(args[0]) if args else Any]  # type: ignore[misc]
    return annotation


def _checked(annotation: Any) -> Any:
    try:
        TypeAdapter(annotation).json_schema()
    except PydanticUserError:  # no schema for the type, or none as JSON
        return Any
    return annotation


def _plain(value: Any, domain: DomainTypes) -> Any:
    """`value` as JSON data. Models are dumped by their own class, not the declared
    one, so a field typed `AggregatePayload` keeps its subclass's fields."""
    if isinstance(value, Aggregate):
        return AggregateResult.of(value, domain).model_dump(mode="json")
    if isinstance(value, ListQueryResult):
        return {
            "items": [_plain(item, domain) for item in value.items],
            "total_count": value.total_count,
            "page_number": value.page_number,
            "page_size": value.page_size,
        }
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", serialize_as_any=True)
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(item, domain) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item, domain) for key, item in value.items()}
    return jsonable_encoder(value)
