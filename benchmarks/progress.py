"""How a benchmark tells the person running it where it is.

Suites report through this small protocol; `python -m benchmarks` shows it as rich progress
bars on stderr, so stdout stays free for the results.
"""

from __future__ import annotations

from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress import Progress as RichBars


class Progress(Protocol):
    def begin(self, title: str, total: int) -> None:
        """A new stage of `total` steps."""
        ...

    def step(self, description: str) -> None:
        """The next step of the current stage starts; `description` says what it does."""
        ...

    def note(self, message: str) -> None:
        """Something the person running the benchmark should read (a skipped store)."""
        ...


class SilentProgress:
    """Reports nothing."""

    def begin(self, title: str, total: int) -> None:
        return None

    def step(self, description: str) -> None:
        return None

    def note(self, message: str) -> None:
        return None


class ProgressBars:
    """One rich progress bar per stage, on `console` (use it as a context manager)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bars = RichBars(
            TextColumn("{task.fields[title]:<22}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> ProgressBars:
        self.bars.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._finish_stage()
        self.bars.stop()

    def begin(self, title: str, total: int) -> None:
        self._finish_stage()
        self.task = self.bars.add_task("", total=total, title=title, completed=0)
        self._started = False

    def step(self, description: str) -> None:
        if self.task is None:
            return
        self.bars.update(self.task, description=description, advance=1 if self._started else 0)
        self._started = True

    def note(self, message: str) -> None:
        self.bars.console.print(message)

    def _finish_stage(self) -> None:
        if self.task is not None:
            total = self.bars.tasks[self.task].total
            self.bars.update(self.task, completed=total, description="done")
            self.task = None
