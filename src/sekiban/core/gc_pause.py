"""`gc_paused()`: the cyclic garbage collector held off while a large state is built.

Building 100,000 objects that all stay alive makes CPython run its oldest-generation
collection several times, each walking every object the process holds, though none of
the new objects is garbage: restoring a projection of 100,000 aggregates spent half its
time there (docs/performance.md, "Projections at scale"). Reference counting still frees
everything else meanwhile; only cycles wait for the pause to end.

The collector is process-wide: pauses on several threads nest (the collector resumes
when the last one ends), and a collector the application had disabled stays disabled.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_pauses = 0
_resume = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold the cyclic garbage collector off for the `with` block."""
    global _pauses, _resume
    with _lock:
        if _pauses == 0:
            _resume = gc.isenabled()
            gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0 and _resume:
                gc.enable()
