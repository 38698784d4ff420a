"""State codecs: how a multi-projection's state becomes lines of JSON and back.

A codec writes a state as a sequence of lines (JSON, no newline inside), one entry of a
collection per line where it can, so a state is written and read as a stream: neither
side ever holds the whole document as one string.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, Protocol, TypeVar, get_args, get_origin

from pydantic import TypeAdapter
from pydantic.errors import PydanticSchemaGenerationError, PydanticUserError

from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.fastpaths import (
    partition_keys_from_text,
    scan_json_value,
    sortable_id_from_text,
    trusted_constructor,
)
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector
from sekiban.core.query import MultiProjector
from sekiban.core.serialization import Serializer
from sekiban.errors import ConfigurationError

S = TypeVar("S")
_aggregate = trusted_constructor(Aggregate)


class StateCodec(Protocol[S]):
    """Writes a state as lines of JSON and reads it back from them."""

    def dump(self, state: S) -> Iterator[bytes]:
        """The state as lines (bytes without a newline), produced one at a time."""
        ...

    def load(self, lines: Iterable[bytes]) -> S:
        """The state `dump` wrote; raises `ValueError` (or a subclass) for bad lines."""
        ...


class JsonStateCodec:
    """The default codec, on pydantic: a `dict` state one `[key, value]` per line, a
    `list` one item per line, anything else as one line."""

    def __init__(self, state_type: Any) -> None:
        origin, args = get_origin(state_type), get_args(state_type)
        try:
            if origin is dict and len(args) == 2:
                self._kind, self._adapter = "dict", TypeAdapter(tuple[args[0], args[1]])  # type: ignore[valid-type]
            elif origin is list and len(args) == 1:
                self._kind, self._adapter = "list", TypeAdapter(args[0])
            else:
                self._kind, self._adapter = "whole", TypeAdapter(state_type)
        except (PydanticSchemaGenerationError, PydanticUserError) as error:
            raise ConfigurationError(
                f"cannot persist a state of type {state_type!r}: {error}; override "
                "MultiProjector.state_codec"
            ) from None

    @classmethod
    def for_projector(cls, projector: type[MultiProjector[Any]]) -> JsonStateCodec:
        """The codec for the state type `projector` names in `MultiProjector[State]`."""
        for klass in projector.__mro__:
            for base in getattr(klass, "__orig_bases__", ()):
                if get_origin(base) is MultiProjector:
                    (state_type,) = get_args(base)
                    if not isinstance(state_type, TypeVar):
                        return cls(state_type)
        raise ConfigurationError(
            f"{projector.__name__} does not name its state type: subclass "
            "MultiProjector[YourState] or override state_codec to persist it"
        )

    def dump(self, state: Any) -> Iterator[bytes]:
        if self._kind == "dict":
            for item in state.items():
                yield self._adapter.dump_json(item)
        elif self._kind == "list":
            for item in state:
                yield self._adapter.dump_json(item)
        else:
            yield self._adapter.dump_json(state)

    def load(self, lines: Iterable[bytes]) -> Any:
        validate = self._adapter.validate_json
        if self._kind == "dict":
            return dict(validate(line) for line in lines)
        if self._kind == "list":
            return [validate(line) for line in lines]
        (whole,) = lines
        return validate(whole)


class AggregateMapCodec:
    """The codec of `AggregateListProjector` states: one aggregate per line, its payload
    written by the domain's serializer (so it reads back through the registry only)."""

    def __init__(self, serializer: Serializer, projector: AggregateProjector) -> None:
        self._serializer = serializer
        self._projector = projector

    def dump(self, state: dict[PartitionKeys, Aggregate[AggregatePayload]]) -> Iterator[bytes]:
        for keys, aggregate in state.items():
            payload_type, payload = self._serializer.dump_payload(aggregate.payload)
            head = json.dumps(
                [str(keys), aggregate.version, aggregate.last_sortable_unique_id, payload_type],
                separators=(",", ":"),
            )
            # The payload is JSON already, so it follows the head after a tab (compact
            # JSON never holds a raw one) instead of being parsed and dumped again.
            yield head.encode() + b"\t" + payload

    def load(self, lines: Iterable[bytes]) -> dict[PartitionKeys, Aggregate[AggregatePayload]]:
        # A state holds an aggregate per line, 100,000 and more: the fast paths of
        # `sekiban.core.fastpaths` (each equal to the plain call it replaces) take
        # about 30% off a restore (docs/performance.md, "Projections at scale").
        state: dict[PartitionKeys, Aggregate[AggregatePayload]] = {}
        name, version = self._projector.name, self._projector.version
        load_payload = self._serializer.load_payload
        for line in lines:
            head, tab, payload = line.partition(b"\t")
            text = head.decode()
            try:
                fields, end = scan_json_value(text, 0)
            except StopIteration:  # no JSON value at all
                fields, end = None, 0
            if not (tab and end == len(text) and isinstance(fields, list) and len(fields) == 4):
                raise ValueError(f"malformed aggregate line {line[:80]!r}")
            keys_text, aggregate_version, last_id, payload_type = fields
            if not (isinstance(aggregate_version, int) and isinstance(payload_type, str)):
                raise ValueError(f"malformed aggregate line {line[:80]!r}")
            keys = partition_keys_from_text(keys_text)
            body = load_payload(payload_type, payload)
            last = None if last_id is None else sortable_id_from_text(last_id)
            state[keys] = _aggregate(body, keys, aggregate_version, last, name, version)
        return state
