"""Whether any other callback is ready to run in this turn of the event loop: the one
look at asyncio's internals that group commit makes (a speed trick, fenced here).

It relies on CPython's `asyncio.BaseEventLoop._ready`, the deque of handles the loop
runs in its current turn (tasks woken, `call_soon` callbacks). When it is empty, no
other task can run before the current one yields, so no other append can join a
group: the append is written at once instead of waiting a turn for company, and a
lone writer pays nothing for group commit. A loop without `_ready` (uvloop, another
implementation) is treated as busy: every append then waits its turn, which is
correct, only slower for a lone writer. Correctness never depends on the answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sized


def others_ready(loop: asyncio.AbstractEventLoop) -> bool:
    """True unless `loop` is known to have nothing else ready in this turn."""
    ready = getattr(loop, "_ready", None)
    return not isinstance(ready, Sized) or len(ready) > 0
