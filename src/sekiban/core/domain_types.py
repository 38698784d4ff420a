"""The domain type registry: the only way a stored or received name becomes a type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sekiban.core.aggregate import AggregatePayload, EmptyAggregatePayload
from sekiban.core.command import Command
from sekiban.core.events import EventPayload
from sekiban.core.projector import AggregateProjector
from sekiban.core.query import MultiProjector, Query
from sekiban.core.schema import (
    EventSchemas,
    Upcaster,
    check_event_name,
    decode_payload,
    parse_stored_event_type,
    schema_fingerprint,
    stored_event_type,
)
from sekiban.errors import DuplicateTypeError, UnknownTypeError

U = TypeVar("U", bound=Upcaster)

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

    def alias(self, name: str, cls: type) -> None:
        """`name` resolves to `cls` too; `cls` keeps its own name."""
        existing = self.by_name.get(name)
        if existing is not None and existing is not cls:
            raise DuplicateTypeError(self.kind, name, existing, cls)
        self.by_name[name] = cls

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

    Events evolve through `upcaster` (a step from one schema version to the next) and
    `alias` (the old names of a renamed event type); see docs/schema-evolution.md.
    """

    def __init__(self, *types: type) -> None:
        self._names = {kind: _Names(kind) for kind, _ in _KINDS}
        self._projectors: dict[type, Any] = {}
        self._schemas = EventSchemas()
        # Stored type strings of current-version events, for the replay hot path:
        # any other string (an old version, an old name) takes the upcasting path.
        self._stored_types: dict[str, type[EventPayload]] = {}
        self._stored_names: dict[type[EventPayload], str] = {}
        self._fingerprint: str | None = None
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
        kind = self._kind_of(cls)
        if kind == "event":
            check_event_name(name)
        self._names[kind].add(name, cls)
        if issubclass(cls, EventPayload):
            self._add_stored_name(name, cls)
            self._stored_names[cls] = stored_event_type(name, cls.schema_version)
        return self

    def alias(self, cls: type[EventPayload], *old_names: str) -> DomainTypes:
        """Events stored under any of `old_names` are read as `cls` (a renamed type).

        The old names share `cls`'s schema versions and upcasters; new events are
        written under `cls`'s own name. Registers `cls` if it is not yet.
        """
        if cls not in self._names["event"].by_type:
            self.register(cls)
        for name in old_names:
            check_event_name(name)
            self._names["event"].alias(name, cls)
            self._add_stored_name(name, cls)
        return self

    def upcaster(self, cls: type[EventPayload], from_version: int) -> Callable[[U], U]:
        """Decorator: the function turns `cls`'s JSON data of `from_version` into the
        next version's. See `add_upcaster`."""

        def register(upcaster: U) -> U:
            self.add_upcaster(cls, from_version, upcaster)
            return upcaster

        return register

    def add_upcaster(self, cls: type[EventPayload], from_version: int, upcaster: Upcaster) -> None:
        """Register the step from `from_version` to `from_version + 1` of `cls`.

        A duplicate step or one outside `1..cls.schema_version - 1` raises
        `ConfigurationError` here; a missing step raises it from `validate` (called when
        a serializer is made) or when an event of that type is first upcast.
        """
        self._schemas.add(cls, from_version, upcaster)
        self._fingerprint = None

    def validate(self) -> None:
        """Raise `ConfigurationError` unless every event type's upcasters form a chain
        from version 1 to its `schema_version`."""
        self._schemas.check(self._names["event"].by_type)

    def schema_fingerprint(self) -> str:
        """A short hash of the event schemas (versions above 1, old names); snapshots
        taken under another one are rebuilt. Empty when nothing has evolved."""
        if self._fingerprint is None:
            names = self._names["event"]
            self._fingerprint = schema_fingerprint(names.by_name, names.by_type)
        return self._fingerprint

    @property
    def event_types_by_name(self) -> dict[str, type[EventPayload]]:
        """The live name-to-event-type map (read-only by convention), for hot paths."""
        return self._names["event"].by_name

    @property
    def event_names_by_type(self) -> dict[type[EventPayload], str]:
        """The live event-type-to-name map (read-only by convention), for hot paths."""
        return self._names["event"].by_type

    @property
    def stored_event_types(self) -> dict[str, type[EventPayload]]:
        """The live map from stored type strings of current-version events to types
        (read-only by convention), for the replay hot path."""
        return self._stored_types

    @property
    def stored_event_names(self) -> dict[type[EventPayload], str]:
        """The live map from event types to the type string new events are stored
        under (`Name`, or `Name@<version>` above version 1)."""
        return self._stored_names

    def event_type(self, name: str) -> type[EventPayload]:
        """The event type of a registered name, an old name, or a stored type string."""
        names = self._names["event"]
        cls = names.by_name.get(name) if isinstance(name, str) else None
        if cls is None and isinstance(name, str):
            cls = names.by_name.get(parse_stored_event_type(name)[0])
        return cls if cls is not None else names.type_of(name)

    def read_event_payload(
        self, stored_type: str, text: str, first_error: Exception | None = None
    ) -> EventPayload:
        """Decode a payload stored under `stored_type` at any schema version: upcast,
        drop fields the type no longer has (unless it sets `read_extra = "forbid"`),
        validate. `first_error` is the fast path's failure for a current-version event."""
        cls = self.event_type(stored_type)
        version = parse_stored_event_type(stored_type)[1]
        return decode_payload(cls, version, text, self._schemas, first_error)

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

    @property
    def multi_projector_types(self) -> dict[str, type[MultiProjector[Any]]]:
        """Every registered multi-projector type by name (a copy), e.g. to run them."""
        return dict(self._names["multi-projector"].by_name)

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

    def _add_stored_name(self, name: str, cls: type[EventPayload]) -> None:
        self._stored_types[stored_event_type(name, cls.schema_version)] = cls
        self._fingerprint = None

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
