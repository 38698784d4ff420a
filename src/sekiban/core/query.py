"""Multi-projections and the queries that read them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from sekiban.core.aggregate import Aggregate, AggregatePayload
from sekiban.core.events import Event, EventPayload
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.projector import AggregateProjector, _kebab

if TYPE_CHECKING:
    from sekiban.core.serialization import Serializer
    from sekiban.projections.codec import StateCodec

S = TypeVar("S")
R = TypeVar("R")
Item = TypeVar("Item")


class MultiProjector(ABC, Generic[S]):
    """Folds events of many streams, in global order, into one state.

    `groups` and `event_types` declare what the projector reads (None: everything).
    Events outside them are skipped before they are decoded, so they cost no parsing
    and an event of another group that cannot be decoded does not stop this one. Bump
    `version` when `project` changes: a persisted state of another version is rebuilt.
    The state is persisted through `state_codec` (see `sekiban.projections.codec`).
    """

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    groups: ClassVar[Collection[str] | None] = None
    event_types: ClassVar[Collection[type[EventPayload]] | None] = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = _kebab(cls.__name__)

    @abstractmethod
    def initial_state(self) -> S:
        """The state before any event."""

    @abstractmethod
    def project(self, state: S, event: Event[EventPayload]) -> S:
        """The state after `event`."""

    def state_codec(self, serializer: Serializer) -> StateCodec[S]:
        """How the state is written to and read from a projection store.

        The default reads the state type from `MultiProjector[StateType]` and writes it
        with pydantic, a dict or list one entry per line; override it for other states.
        """
        from sekiban.projections.codec import JsonStateCodec

        return JsonStateCodec.for_projector(type(self))


class Query(BaseModel, Generic[R]):
    """A validated question answered from one multi-projection's state."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    multi_projector: ClassVar[type[MultiProjector[Any]]]

    @abstractmethod
    def handle(self, state: Any) -> R:
        """The answer, computed from the multi-projection's current state."""


@dataclass(frozen=True, slots=True)
class ListQueryResult(Generic[Item]):
    """One page of a list query, with the count before paging."""

    items: list[Item]
    total_count: int
    page_number: int
    page_size: int | None


class ListQuery(Query[ListQueryResult[Item]], Generic[Item]):
    """A query returning a filtered, sorted, paged list.

    Implement `filter`; override `sort` for an order. `page_size=None` returns all.
    """

    page_size: int | None = Field(default=None, ge=1, le=10_000)
    page_number: int = Field(default=1, ge=1)

    @abstractmethod
    def filter(self, state: Any) -> Iterable[Item]:
        """The items that match, in any order."""

    def sort(self, items: list[Item]) -> list[Item]:
        """The items in the order to page through; unchanged by default."""
        return items

    def handle(self, state: Any) -> ListQueryResult[Item]:
        items = self.sort(list(self.filter(state)))
        if self.page_size is not None:
            start = (self.page_number - 1) * self.page_size
            page = items[start : start + self.page_size]
        else:
            page = items
        return ListQueryResult(page, len(items), self.page_number, self.page_size)


def declared_result_type(query_type: type[Query[Any]]) -> Any:
    """The answer type a query class declares: `R` of `Query[R]`, `ListQueryResult[Item]`
    of `ListQuery[Item]`; `Any` when it declares none."""
    for base in query_type.__mro__:
        metadata = getattr(base, "__pydantic_generic_metadata__", None) or {}
        origin, args = metadata.get("origin"), metadata.get("args", ())
        if origin is ListQuery and args:
            return ListQueryResult[args[0]]  # type: ignore[valid-type]
        if origin is Query and args:
            return args[0]
    return Any


AggregateMap = dict[PartitionKeys, Aggregate[AggregatePayload]]


class AggregateListProjector(MultiProjector[AggregateMap]):
    """Every aggregate of one projector, kept current: the built-in multi-projection.

    Streams are selected by group; by default the projector's name, which is the
    group `PartitionKeys.generate(MyProjector.name)` gives.
    """

    projector: ClassVar[type[AggregateProjector]]
    groups: ClassVar[frozenset[str]]
    _made: ClassVar[dict[tuple[type[AggregateProjector], frozenset[str]], type[Any]]] = {}

    @classmethod
    def of(
        cls, projector: type[AggregateProjector], groups: Sequence[str] | None = None
    ) -> type[AggregateListProjector]:
        """The list projector for `projector` (one class per projector and groups)."""
        key = (projector, frozenset(groups or (projector.name,)))
        if key not in cls._made:
            cls._made[key] = type(
                f"{projector.__name__}List",
                (cls,),
                {"projector": projector, "groups": key[1], "name": f"{projector.name}-list"},
            )
        made: type[AggregateListProjector] = cls._made[key]
        return made

    def __init__(self) -> None:
        self._projector = self.projector()

    def initial_state(self) -> AggregateMap:
        return {}

    def state_codec(self, serializer: Serializer) -> StateCodec[AggregateMap]:
        from sekiban.projections.codec import AggregateMapCodec

        return AggregateMapCodec(serializer, self._projector)

    def project(self, state: AggregateMap, event: Event[EventPayload]) -> AggregateMap:
        keys = event.partition_keys
        if keys.group not in self.groups:
            return state
        current = state.get(keys) or self._projector.empty_aggregate(keys)
        state[keys] = self._projector.fold(current, (event,))
        return state
