"""The domain type registry: the only way a stored or received name becomes a type."""

from __future__ import annotations

from typing import Any, TypeVar

from sekiban.core.aggregate import AggregatePayload, EmptyAggregatePayload
from sekiban.core.command import Command
from sekiban.core.events import EventPayload
from sekiban.core.projector import AggregateProjector
from sekiban.core.query import MultiProjector, Query
from sekiban.errors import DuplicateTypeError, UnknownTypeError

K = TypeVar("K")

_KINDS: tuple[tuple[str, type], ...] = (
    ("event", EventPayload),
    ("aggregate payload", AggregatePayload),
    ("command", Command),
    ("projector", AggregateProjector),
    ("multi-projector", MultiProjector),
    ("query", Query),
)


class _Names:
    """A two-way map between names and types of one kind."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.by_name: dict[str, type] = {}
        self.by_type: dict[type, str] = {}

    def add(self, name: str, cls: type) -> None:
        existing = self.by_name.get(name)
        if existing is not None and existing is not cls:
            raise DuplicateTypeError(self.kind, name, existing, cls)
        self.by_name[name] = cls
        self.by_type[cls] = name

    def type_of(self, name: str) -> type:
        try:
            return self.by_name[name]
        except (KeyError, TypeError):
            raise UnknownTypeError(self.kind, str(name)) from None

    def name_of(self, cls: type) -> str:
        try:
            return self.by_type[cls]
        except KeyError:
            raise UnknownTypeError(self.kind, cls.__qualname__) from None


class DomainTypes:
    """Registry of a domain's events, payloads, projectors, commands and queries.

    Names default to the class name (projectors and multi-projectors use their `name`).
    Registering two types under one name raises `DuplicateTypeError`; looking up a name
    that was never registered raises `UnknownTypeError`. Nothing is ever imported by name.
    """

    def __init__(self, *types: type) -> None:
        self._names = {kind: _Names(kind) for kind, _ in _KINDS}
        self._projectors: dict[type, Any] = {}
        self.register(EmptyAggregatePayload)
        self.register(*types)

    def register(self, *types: type) -> DomainTypes:
        """Register each type under its default name; returns self for chaining."""
        for cls in types:
            name = getattr(cls, "name", "") if self._is_projection(cls) else cls.__name__
            self.register_as(cls, name or cls.__name__)
        return self

    def register_as(self, cls: type, name: str) -> DomainTypes:
        """Register `cls` under an explicit `name` (for renamed classes)."""
        self._names[self._kind_of(cls)].add(name, cls)
        return self

    @property
    def event_types_by_name(self) -> dict[str, type[EventPayload]]:
        """The live name-to-event-type map (read-only by convention), for hot paths."""
        return self._names["event"].by_name

    @property
    def event_names_by_type(self) -> dict[type[EventPayload], str]:
        """The live event-type-to-name map (read-only by convention), for hot paths."""
        return self._names["event"].by_type

    def event_type(self, name: str) -> type[EventPayload]:
        return self._names["event"].type_of(name)

    def event_name(self, cls: type[EventPayload]) -> str:
        return self._names["event"].name_of(cls)

    def payload_type(self, name: str) -> type[AggregatePayload]:
        return self._names["aggregate payload"].type_of(name)

    def payload_name(self, cls: type[AggregatePayload]) -> str:
        return self._names["aggregate payload"].name_of(cls)

    @property
    def command_types(self) -> dict[str, type[Command]]:
        """Every registered command type by name (a copy), e.g. to generate routes."""
        return dict(self._names["command"].by_name)

    @property
    def query_types(self) -> dict[str, type[Query[Any]]]:
        """Every registered query type by name (a copy), e.g. to generate routes."""
        return dict(self._names["query"].by_name)

    def command_type(self, name: str) -> type[Command]:
        return self._names["command"].type_of(name)

    def command_name(self, cls: type[Command]) -> str:
        return self._names["command"].name_of(cls)

    def projector(self, key: str | type[AggregateProjector]) -> AggregateProjector:
        """The shared instance of a registered projector, by name or class."""
        cls = self._names["projector"].type_of(key) if isinstance(key, str) else key
        self._names["projector"].name_of(cls)
        instance: AggregateProjector = self._instance(cls)
        return instance

    def multi_projector(self, key: str | type[MultiProjector[Any]]) -> MultiProjector[Any]:
        """The shared instance of a multi-projector; aggregate lists need no registration."""
        cls = self._names["multi-projector"].type_of(key) if isinstance(key, str) else key
        if cls not in self._names["multi-projector"].by_type:
            self.register(cls)
        instance: MultiProjector[Any] = self._instance(cls)
        return instance

    def query_type(self, name: str) -> type[Query[Any]]:
        return self._names["query"].type_of(name)

    def _instance(self, cls: type) -> Any:
        instance = self._projectors.get(cls)
        if instance is None:
            instance = self._projectors[cls] = cls()
        return instance

    @staticmethod
    def _is_projection(cls: type) -> bool:
        return isinstance(cls, type) and issubclass(cls, (AggregateProjector, MultiProjector))

    @staticmethod
    def _kind_of(cls: type) -> str:
        for kind, base in _KINDS:
            if isinstance(cls, type) and issubclass(cls, base):
                return kind
        raise TypeError(f"{cls!r} is not an event, payload, command, projector or query")
