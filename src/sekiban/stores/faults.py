"""What every store's fault translation shares: how a fault is described.

Each driver has its own `faults.py` beside its store (which driver errors are which
fault); the message and the `outcome_unknown` wording are the same for all.
"""

from __future__ import annotations

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
