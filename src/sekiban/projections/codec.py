"""State codecs: how a multi-projection's state becomes lines of JSON and back.

A codec writes a state as a sequence of lines (JSON, no newline inside), one entry of a
collection per line where it can, so a state is written and read as a stream: neither
side ever holds the whole document as one string.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any, Protocol, TypeVar, get_args, get_origin

from pydantic import TypeAdapter, ValidationError
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
BATCH_LINES = 1024
"""Lines of a state decoded together."""


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
        item: Any = state_type
        if origin is dict and len(args) == 2:
            self._kind, item = "dict", tuple[args[0], args[1]]  # type: ignore[valid-type]
        elif origin is list and len(args) == 1:
            self._kind, item = "list", args[0]
        else:
            self._kind = "whole"
        try:
            self._adapter: TypeAdapter[Any] = TypeAdapter(item)
            self._batch: TypeAdapter[list[Any]] = TypeAdapter(list[item])
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
        if self._kind == "whole":
            (whole,) = lines
            return self._adapter.validate_json(whole)
        entries: list[Any] = []
        for batch in _batches(lines):
            entries += self._load_batch(batch)
        return dict(entries) if self._kind == "dict" else entries

    def _load_batch(self, lines: list[bytes]) -> list[Any]:
        # One pydantic call for BATCH_LINES entries costs about half of a call per line.
        # Joined into one JSON array, a line could only pass for part of another when
        # the count of entries is off too, or when it was written to: the stored bytes
        # match their SHA-256, so they are what `dump` wrote.
        try:
            entries = self._batch.validate_json(b"[" + b",".join(lines) + b"]")
        except ValidationError:
            entries = None
        if entries is None or len(entries) != len(lines):
            # Line by line, the first bad line raises the error that names it.
            entries = [self._adapter.validate_json(line) for line in lines]
        return entries


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
        # A state holds an aggregate per line, 100,000 and more: lines are decoded
        # BATCH_LINES at a time, their heads in one `json.loads` and their payloads in
        # one pydantic call per payload type (half the cost of a call per line,
        # docs/performance.md, "Projections at scale").
        state: dict[PartitionKeys, Aggregate[AggregatePayload]] = {}
        for batch in _batches(lines):
            self._load_batch(batch, state)
        return state

    def _load_batch(
        self, lines: list[bytes], state: dict[PartitionKeys, Aggregate[AggregatePayload]]
    ) -> None:
        decoded = self._decode_batch(lines)
        if decoded is None:
            # Something in the batch is wrong: line by line, the first bad line raises
            # the error that names it.
            for line in lines:
                self._load_line(line, state)
            return
        name, version = self._projector.name, self._projector.version
        for (keys_text, aggregate_version, last_id, _), body in zip(*decoded, strict=True):
            keys = partition_keys_from_text(keys_text)
            last = None if last_id is None else sortable_id_from_text(last_id)
            state[keys] = _aggregate(body, keys, aggregate_version, last, name, version)

    def _decode_batch(self, lines: list[bytes]) -> tuple[list[Any], list[Any]] | None:
        """The heads and payloads of `lines`, or None when any line is not as `dump`
        writes it (the caller then decodes line by line, for the error).

        Joined into one JSON array, a line could only pass for another's part when its
        count of values is off too, or when it was written to: the stored bytes match
        their SHA-256, so they are what a codec wrote.
        """
        heads, payloads = [], []
        for line in lines:
            head, tab, payload = line.partition(b"\t")
            # As `dump` writes it: an array with nothing around it (the line-by-line
            # path refuses anything after the head's value).
            if not tab or head[:1] != b"[" or head[-1:] != b"]":
                return None
            heads.append(head)
            payloads.append(payload)
        try:
            fields = json.loads(b"[" + b",".join(heads) + b"]")
        except ValueError:
            return None
        if len(fields) != len(lines):
            return None
        of_type: dict[str, list[int]] = {}
        for i, head in enumerate(fields):
            if not (
                isinstance(head, list)
                and len(head) == 4
                and isinstance(head[1], int)
                and isinstance(head[3], str)
            ):
                return None
            of_type.setdefault(head[3], []).append(i)
        bodies: list[Any] = [None] * len(lines)
        for type_name, indexes in of_type.items():
            adapter = _list_of(self._serializer.domain.payload_type(type_name))
            joined = b"[" + b",".join([payloads[i] for i in indexes]) + b"]"
            try:
                values = adapter.validate_json(joined)
            except ValidationError:
                return None
            if len(values) != len(indexes):
                return None
            for i, value in zip(indexes, values, strict=True):
                bodies[i] = value
        return fields, bodies

    def _load_line(
        self, line: bytes, state: dict[PartitionKeys, Aggregate[AggregatePayload]]
    ) -> None:
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
        body = self._serializer.load_payload(payload_type, payload)
        last = None if last_id is None else sortable_id_from_text(last_id)
        state[keys] = _aggregate(
            body, keys, aggregate_version, last, self._projector.name, self._projector.version
        )


@cache
def _list_of(payload_type: type[AggregatePayload]) -> TypeAdapter[list[AggregatePayload]]:
    return TypeAdapter(list[payload_type])  # type: ignore[valid-type]


def _batches(lines: Iterable[bytes]) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    for line in lines:
        batch.append(line)
        if len(batch) == BATCH_LINES:
            yield batch
            batch = []
    if batch:
        yield batch
