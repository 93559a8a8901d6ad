"""Release events in real time, relative to their event time, and stop on request.

:func:`paced` wraps any iterable of events that have a ``ts`` (epoch ms) and yields each
one when ``(ts - first_ts) / speed`` seconds have passed on ``clock`` since the first.
``speed=2.0`` replays twice as fast as real time, ``speed=0`` as fast as possible. A
consumer that falls behind gets the overdue events at once (no skipping, no
drift). The clock and the sleep are parameters, so tests run instantly:

>>> from replay.generator._common import GeneratedEvent
>>> events = [GeneratedEvent("t", "k", {}, ts) for ts in (0, 1_000, 3_000)]
>>> now = [0.0]
>>> def fake_sleep(seconds: float) -> None:
...     now[0] += seconds
>>> pacer = paced(events, speed=2.0, clock=lambda: now[0], sleep=fake_sleep)
>>> [(e.ts, round(now[0], 3)) for e in pacer]
[(0, 0.0), (1000, 0.5), (3000, 1.5)]

:meth:`Pacer.stop` (from any thread) ends the iteration at the next event or within
``max_sleep_s`` of a wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, Protocol, TypeVar

__all__ = ["Pacer", "paced"]


class _Timed(Protocol):
    @property
    def ts(self) -> int: ...


E = TypeVar("E", bound=_Timed)


class Pacer(Generic[E]):
    """An iterator over ``events`` that waits for each one's due time; see :func:`paced`."""

    def __init__(
        self,
        events: Iterable[E],
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        max_sleep_s: float = 0.25,
    ) -> None:
        if speed < 0:
            raise ValueError(f"speed must be >= 0 (0 = as fast as possible), got {speed}")
        if max_sleep_s <= 0:
            raise ValueError(f"max_sleep_s must be > 0, got {max_sleep_s}")
        self._events = iter(events)
        self.speed = speed
        self._clock = clock
        self._sleep = sleep
        self._max_sleep_s = max_sleep_s
        self._stop = threading.Event()
        self._anchor: tuple[float, int] | None = None

    def stop(self) -> None:
        """Ask the iteration to end; safe to call from another thread, or more than once."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def lag_s(self, event: E) -> float:
        """How many seconds after its due time ``event`` is released now (< 0: early)."""
        if self._anchor is None or self.speed == 0:
            return 0.0
        wall0, ts0 = self._anchor
        return self._clock() - (wall0 + (event.ts - ts0) / 1000.0 / self.speed)

    def __iter__(self) -> Iterator[E]:
        return self

    def __next__(self) -> E:
        if self._stop.is_set():
            raise StopIteration
        event = next(self._events)
        if self.speed == 0:
            return event
        if self._anchor is None:
            self._anchor = (self._clock(), event.ts)
            return event
        wall0, ts0 = self._anchor
        due = wall0 + (event.ts - ts0) / 1000.0 / self.speed
        while True:
            if self._stop.is_set():
                raise StopIteration
            wait = due - self._clock()
            if wait <= 0:
                return event
            self._sleep(min(wait, self._max_sleep_s))


def paced(
    events: Iterable[E],
    speed: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
    max_sleep_s: float = 0.25,
) -> Pacer[E]:
    """Yield ``events`` at ``speed`` × real time relative to their ``ts``; see the module."""
    return Pacer(events, speed=speed, clock=clock, sleep=sleep, max_sleep_s=max_sleep_s)
