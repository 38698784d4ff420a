"""What every store's fault translation shares: how a fault is described.

Each driver has its own `faults.py` beside its store (which driver errors are which
fault); the message and the `outcome_unknown` wording are the same for all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from sekiban.errors import StoreError


def fault(
    kind: type[StoreError], where: str, error: BaseException, advice: str, *, outcome_unknown: bool
) -> StoreError:
    """A `kind` naming `where` (never a password), the driver's first line of error and
    what to do; raise it `from error` to keep the driver's error as the cause."""
    reason = (str(error).splitlines() or [""])[0] or type(error).__name__
    text = f"{where}: {reason} ({type(error).__name__}); {advice}"
    if outcome_unknown:
        text += "; the append may have been committed: read the stream before retrying"
    return kind(text, outcome_unknown=outcome_unknown)


class TranslatesFaults:
    """A context manager raising a driver's errors (`driver_errors`) as the sekiban
    errors `translate(error, where, writing=...)` makes of them; `writing` says an append
    is in progress, whose outcome a lost connection leaves unknown. Each store subclasses
    it with its driver's errors and its `translate`.

    A class rather than a `@contextmanager` generator: it wraps every store call, and
    entering and leaving it costs a third as much.
    """

    __slots__ = ("where", "writing")
    driver_errors: ClassVar[tuple[type[BaseException], ...]] = ()
    translate: ClassVar[Callable[..., StoreError]]

    def __init__(self, where: str, *, writing: bool = False) -> None:
        self.where, self.writing = where, writing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: BaseException | None, tb: object) -> None:
        if error is not None and isinstance(error, self.driver_errors):
            raise type(self).translate(error, self.where, writing=self.writing) from error
