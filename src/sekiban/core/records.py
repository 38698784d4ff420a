"""Fast rebuilding of frozen records from trusted storage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def trusted_constructor(cls: type[T]) -> Callable[..., T]:
    """A positional constructor for a frozen, slotted dataclass that skips `__init__`.

    A frozen dataclass's `__init__` goes through the generic `object.__setattr__` for
    every field; writing the slots directly halves the cost of the records a replay
    builds per event. Only for values that were validated when they were stored: no
    defaults, no checks, every field in declaration order.
    """
    setters = tuple(cls.__dict__[f.name].__set__ for f in fields(cls))  # type: ignore[arg-type]
    new = object.__new__

    def build(*values: Any) -> T:
        record = new(cls)
        for setter, value in zip(setters, values, strict=True):
            setter(record, value)
        return record

    return build
