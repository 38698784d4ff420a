"""Aggregates: the state a projector folds out of one stream of events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from sekiban.core.fastpaths import copy_model_unvalidated
from sekiban.core.partition_keys import PartitionKeys
from sekiban.core.sortable_id import SortableUniqueId

if TYPE_CHECKING:
    from sekiban.core.events import Event, EventPayload


class AggregatePayload(BaseModel):
    """Base of every aggregate state. Immutable: projectors return new payloads."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    evolve = copy_model_unvalidated  # type: ignore[pydantic-field]  # a method, not a field
    """`payload.evolve(**changes)`: a copy with `changes` applied, for projectors.

    Like `model_copy(update=...)`, the changes are not validated (a projector folds
    events that were validated when decided), at half its cost on the replay path.
    Payload classes with private attributes (`PrivateAttr`) or `extra="allow"` get
    `model_copy(update=...)` instead (chosen once, when the class is defined), since
    the fast copy would drop those.
    """

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.__private_attributes__ or cls.model_config.get("extra") == "allow":
            cls.evolve = _evolve_by_model_copy  # type: ignore[assignment]


def _evolve_by_model_copy(self: AggregatePayload, **changes: Any) -> AggregatePayload:
    return self.model_copy(update=changes)


class EmptyAggregatePayload(AggregatePayload):
    """The state of an aggregate that has no events yet."""


T = TypeVar("T", bound=AggregatePayload, covariant=True)


@dataclass(frozen=True, slots=True)
class Aggregate(Generic[T]):
    """An aggregate at one version, with the projector that built it."""

    payload: T
    partition_keys: PartitionKeys
    version: int
    last_sortable_unique_id: SortableUniqueId | None
    projector_name: str
    projector_version: str

    @property
    def is_empty(self) -> bool:
        """True while the aggregate has no events."""
        return self.version == 0

    def apply(
        self, event: Event[EventPayload], payload: AggregatePayload
    ) -> Aggregate[AggregatePayload]:
        """The aggregate after `event`, whose projection produced `payload`."""
        return Aggregate(
            payload,
            self.partition_keys,
            event.version,
            event.sortable_unique_id,
            self.projector_name,
            self.projector_version,
        )
