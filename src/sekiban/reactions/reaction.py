"""Reactions: "when this event happens, send these commands (and record these side
effects)". Stateless; for state across events use a `ProcessManager`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Collection, Iterable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from sekiban.core.command import Command
from sekiban.core.events import Event, EventPayload
from sekiban.core.projector import _kebab
from sekiban.errors import ConfigurationError, InvalidHandlerResultError

MAX_NAME_LENGTH = 100
"""Characters in a reaction's name: derived command ids must stay within a store's
limit (256 characters)."""


class SideEffect(BaseModel):
    """A side effect leaving the system, delivered by the outbox dispatcher's handler for
    `kind` with `data`. It is recorded as pending before it is delivered, delivered at
    least once, and carries a stable `effect_id` for the receiver to deduplicate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    data: dict[str, Any] = Field(default_factory=dict)


ReactionResult = Command | SideEffect | Iterable[Command | SideEffect] | None


class Reaction(ABC):
    """Reacts to events in global order, at least once, by sending commands and
    recording side effects.

    `groups` and `event_types` declare what it reads (None: everything), as on a
    `MultiProjector`; other events are skipped before they are decoded. `react` returns
    the commands and `SideEffect`s for one event (may be `async`). It may run again for
    an event after a crash: the n-th command it returns for an event is sent with the
    command id `derived_id(name, event id, n)`, which the event store applies at most
    once, so `react` must return the same commands for the same event (decide from the
    event, not from the clock or a query that changes). A `react` that raises is
    retried with backoff, then the event is parked (see `ReactionRunner`).
    """

    name: ClassVar[str] = ""
    groups: ClassVar[Collection[str] | None] = None
    event_types: ClassVar[Collection[type[EventPayload]] | None] = None

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            cls.name = _kebab(cls.__name__)
        check_name(cls.name)

    @abstractmethod
    def react(self, event: Event[EventPayload]) -> ReactionResult | Awaitable[ReactionResult]:
        """The commands to send and side effects to record because of `event`."""


def check_name(name: str) -> str:
    """`name` if it can name a reaction (in derived ids and checkpoint records), else
    `ConfigurationError`."""
    if not name or len(name) > MAX_NAME_LENGTH or ":" in name:
        raise ConfigurationError(
            f"a reaction or process name must be 1-{MAX_NAME_LENGTH} characters without ':', "
            f"got {name!r}"
        )
    return name


def derived_id(source: str, trigger: str, index: int | str) -> str:
    """The id of the `index`-th command (or side effect) `source` issues because of
    `trigger` (an event id): the same on every re-delivery, distinct otherwise."""
    return f"{source}:{trigger}:{index}"


def split_result(owner: str, result: object) -> tuple[list[Command], list[SideEffect]]:
    """The commands and side effects a handler returned, in order; anything else raises
    `InvalidHandlerResultError` naming `owner`."""
    if result is None:
        return [], []
    items = [result] if isinstance(result, (Command, SideEffect)) else result
    if not isinstance(items, Iterable) or isinstance(items, (str, bytes, BaseModel)):
        raise InvalidHandlerResultError(
            f"{owner} must return commands and side effects, got {result!r}"
        )
    commands: list[Command] = []
    effects: list[SideEffect] = []
    for item in items:
        if isinstance(item, Command):
            commands.append(item)
        elif isinstance(item, SideEffect):
            effects.append(item)
        else:
            raise InvalidHandlerResultError(
                f"{owner} must return commands and side effects, got {item!r}"
            )
    return commands, effects
