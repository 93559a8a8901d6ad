"""Per-partition expiry of stored keys, shared by the feedback loops.

:class:`LabelWindow` keeps each partition's keys in the order they were stored and hands
back those older than a window: fraud measures age in event time (the partition's
watermark, the newest event time seen), moderation in wall-clock time (``now_ms``).
It is rebuilt from the owning table after a restart.

>>> window = LabelWindow(window_ms=10)
>>> window.add(0, 100, "a"); window.add(0, 105, "b")
>>> window.expired(0, now_ms=112)
[(100, 'a')]
>>> window.add(0, 120, "c")
>>> window.expired(0)  # event time: the watermark is 120
[(105, 'b')]
"""

from __future__ import annotations

from collections import defaultdict, deque

__all__ = ["LabelWindow"]


class LabelWindow:
    """Per partition, stored ``(ts, key)`` in the order they were added."""

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.queues: dict[int, deque[tuple[int, str]]] = defaultdict(deque)
        self.watermarks: dict[int, int] = defaultdict(int)

    def add(self, partition: int, ts: int, key: str) -> None:
        self.queues[partition].append((ts, key))
        if ts > self.watermarks[partition]:
            self.watermarks[partition] = ts

    def expired(self, partition: int, now_ms: int | None = None) -> list[tuple[int, str]]:
        """Entries older than ``now_ms`` (default: the partition's event-time watermark)
        minus the window, removed from the index."""
        now = self.watermarks[partition] if now_ms is None else now_ms
        queue, limit = self.queues[partition], now - self.window_ms
        out = []
        while queue and queue[0][0] < limit:
            out.append(queue.popleft())
        return out
