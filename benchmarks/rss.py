"""Resident memory of this process: now, and at its peak during a piece of work.

`PeakRss` measures a phase two ways and keeps the larger: the kernel's high-water mark
(`VmHWM`), reset at the start of the phase through `/proc/self/clear_refs` (Linux 4.0
and later; without it, only the sampler counts), and a thread that reads `VmRSS` every
few milliseconds. The first is exact; the second shows the peak was not set before the
phase began. Everything is counted: the Python heap, C libraries' buffers (SQLite's
page cache, asyncpg's), freed memory the allocator has not returned yet.
"""

from __future__ import annotations

import gc
import re
import threading
from pathlib import Path
from types import TracebackType

MB = 1024 * 1024
_STATUS = Path("/proc/self/status")
_FIELD = re.compile(r"^(VmRSS|VmHWM):\s+(\d+) kB$", re.MULTILINE)


def _status() -> dict[str, int]:
    return {name: int(kb) * 1024 for name, kb in _FIELD.findall(_STATUS.read_text())}


def rss() -> int:
    """Bytes resident now, after a garbage collection."""
    gc.collect()
    return _status()["VmRSS"]


class PeakRss:
    """`with PeakRss() as peak:` ... then `peak.bytes`: the most bytes resident at once
    during the block (its start included)."""

    def __init__(self, interval_s: float = 0.005) -> None:
        self.interval_s = interval_s
        self.bytes = 0
        self.exact = False
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        gc.collect()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to VmRSS
            self.exact = True
        except OSError:
            self.exact = False
        self.bytes = _status()["VmRSS"]
        self._sampler.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._sampler.join()
        status = _status()
        self.bytes = max(self.bytes, status["VmRSS"])
        if self.exact:
            self.bytes = max(self.bytes, status["VmHWM"])

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.bytes = max(self.bytes, _status()["VmRSS"])
