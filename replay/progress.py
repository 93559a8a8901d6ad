"""Progress bars on stderr (rich) for replays, exports and backtests.

>>> with Bars(enabled=False) as bars:
...     step = bars.task("reading")
...     step(5, 10)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Bars"]


class Bars:
    """A rich ``Progress`` whose tasks are plain ``(done, total)`` callbacks; a total of
    0 means unknown."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._progress: Any = None

    def __enter__(self) -> Bars:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(TextColumn("{task.description:24}"), BarColumn(),
                                      MofNCompleteColumn(), TimeElapsedColumn(),
                                      console=Console(stderr=True), transient=False)
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def task(self, description: str) -> Callable[[int, int], None]:
        if self._progress is None:
            return lambda done, total: None
        progress = self._progress
        task_id = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task_id, completed=done, total=total or None)

        return update

    def note(self, message: str) -> None:
        if self._progress is not None:
            self._progress.console.print(message)
