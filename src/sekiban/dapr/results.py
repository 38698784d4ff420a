"""How a query's answer crosses the actor hop: JSON written and read through the answer
type the query declares.

The type is `R` of `Query[R]` (`ListQueryResult[Item]` for `ListQuery[Item]`), read
with a pydantic `TypeAdapter`, so the caller gets the value a local query returns: models,
dataclasses (`ListQueryResult`), dates, enums and collections come back as themselves.
Aggregates and aggregate payloads, at the top of the answer or inside lists, tuples,
sets, dicts, unions and `ListQueryResult`, are written with their registered payload type
name and read back through the registry only (pydantic alone would read a payload as
its declared base class). Inside a model or dataclass of your own, an `Aggregate` cannot
be carried (the query type is refused with `ConfigurationError` before it is sent) and a
field typed `AggregatePayload` does not read back: give such fields the payload's
concrete type, or the values the caller needs. A query that declares no answer type
(`Query` without `[R]`) gets its answer back as plain JSON data (dicts, lists, strings,
numbers).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, TypeAdapter, ValidationError
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError
from pydantic_core import PydanticSerializationError

from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.query import ListQueryResult, Query, declared_result_type
from sekiban.core.serialization import Serializer
from sekiban.errors import ConfigurationError, SerializationError

# Containers whose arguments are rewritten (an aggregate inside a list, a dict, ...).
_CONTAINERS = (list, tuple, dict, set, frozenset, typing.Union, types.UnionType, ListQueryResult)


class QueryResults:
    """Writes and reads the answers of a domain's queries as JSON (one adapter per query
    type, built on first use)."""

    def __init__(self, serializer: Serializer) -> None:
        self._serializer = serializer
        self._adapters: dict[type[Query[Any]], TypeAdapter[Any]] = {}

    def dump(self, query_type: type[Query[Any]], answer: Any) -> bytes:
        """The answer as JSON; `SerializationError` when it does not fit the declared type."""
        adapter = self.adapter(query_type)
        try:
            return adapter.dump_json(answer)
        except (PydanticSerializationError, ValueError, TypeError) as error:
            raise SerializationError(
                f"the answer of {query_type.__name__} cannot be written as its declared "
                f"type: {error}"
            ) from None

    def load(self, query_type: type[Query[Any]], data: bytes) -> Any:
        """The answer `dump` wrote; `SerializationError` when it does not read back."""
        adapter = self.adapter(query_type)
        try:
            return adapter.validate_json(data)
        except ValidationError as error:
            raise SerializationError(
                f"the answer of {query_type.__name__} does not read back: {error}"
            ) from None

    def adapter(self, query_type: type[Query[Any]]) -> TypeAdapter[Any]:
        """The adapter of the query's answer type; `ConfigurationError` when pydantic
        cannot write that type as JSON."""
        adapter = self._adapters.get(query_type)
        if adapter is None:
            declared = declared_result_type(query_type)
            try:
                adapter = TypeAdapter(self._wire_type(declared))
            except (PydanticSchemaGenerationError, PydanticUserError) as error:
                raise ConfigurationError(
                    f"the answer type {declared!r} of {query_type.__name__} cannot be sent "
                    f"from the projector actor: {error}; declare a type pydantic can write "
                    "as JSON"
                ) from None
            self._adapters[query_type] = adapter
        return adapter

    def _wire_type(self, annotation: Any) -> Any:
        """`annotation` with aggregate payloads read through the registry (see the
        module docstring)."""
        origin = typing.get_origin(annotation) or annotation
        if origin is Aggregate:
            return self._registered(self._serializer.aggregate_fields, self._load_aggregate)
        if isinstance(origin, type) and issubclass(origin, AggregatePayload):
            return self._registered(self._dump_payload, self._load_payload)
        args = typing.get_args(annotation)
        if origin not in _CONTAINERS or not args:
            return annotation
        rewritten = tuple(a if a is Ellipsis else self._wire_type(a) for a in args)
        if origin in (typing.Union, types.UnionType):
            return typing.Union[rewritten]  # noqa: UP007 - built from a tuple
        return origin[rewritten]

    @staticmethod
    def _registered(dump: Callable[[Any], Any], load: Callable[[Any], Any]) -> Any:
        return Annotated[Any, PlainValidator(load), PlainSerializer(dump)]

    def _load_aggregate(self, data: Any) -> Aggregate[AggregatePayload]:
        try:
            return self._serializer.aggregate_from_fields(data)
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not an aggregate: {error!r}") from None

    def _dump_payload(self, payload: AggregatePayload) -> dict[str, str]:
        payload_type, data = self._serializer.dump_payload(payload)
        return {"payload_type": payload_type, "payload": data.decode()}

    def _load_payload(self, data: Any) -> AggregatePayload:
        try:
            return self._serializer.load_payload(data["payload_type"], data["payload"].encode())
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not an aggregate payload: {error!r}") from None
