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
    defaults, no checks, every field in declaration order (a wrong count of values
    raises `TypeError`).
    """
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    setters = {f"_set_{i}": cls.__dict__[name].__set__ for i, name in enumerate(names)}
    # Straight-line code, one slot write per field, as `dataclasses` generates
    # `__init__`: a loop over the setters costs as much again. The source is built from
    # the class's own field positions only; no stored value ever reaches it.
    parameters = ", ".join(f"v{i}" for i in range(len(names)))
    body = "".join(f"    _set_{i}(record, v{i})\n" for i in range(len(names)))
    source = f"def build({parameters}):\n    record = _new(_cls)\n{body}    return record\n"
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls, **setters}
    exec(source, namespace)
    build: Callable[..., T] = namespace["build"]
    build.__qualname__ = f"trusted_constructor({cls.__name__})"
    return build
