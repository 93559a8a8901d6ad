"""The live summary of ``techshop demo``: events per topic and per second.

A plain consumer assigned to the end of every topic of the deployment counts what
arrives; it needs nothing from the workers, so it shows the truth on the wire.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from streams.settings import Settings
from streams.topics import TopicCatalog, TopicKind

__all__ = ["TopicCounter", "render_table"]


class TopicCounter:
    """Counts records per logical topic in a background thread."""

    def __init__(self, settings: Settings) -> None:
        self.catalog = TopicCatalog(settings.topic_prefix)
        self.counts: Counter[str] = Counter()
        self.dead_reasons: Counter[str] = Counter()
        self._settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="topic-counter", daemon=True)
        self._history: list[tuple[float, Counter[str]]] = []

    def start(self) -> TopicCounter:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        consumer = Consumer({**self._settings.kafka_client_config(),
                             "group.id": "techshop-demo-summary", "enable.auto.commit": False,
                             "fetch.wait.max.ms": 50, "log.connection.close": False})
        physical = {self.catalog.physical(s.name): s.name for s in self.catalog.all()}
        metadata = consumer.list_topics(timeout=10).topics
        consumer.assign([TopicPartition(name, p, OFFSET_END)
                         for name in physical if name in metadata
                         for p in metadata[name].partitions])
        try:
            while not self._stop.is_set():
                for msg in consumer.consume(1000, 0.2):
                    if msg.error() is None:
                        self.counts[physical.get(msg.topic() or "", "?")] += 1
        finally:
            consumer.close()

    def rates(self, window_s: float = 5.0) -> dict[str, float]:
        """Events per second per topic over the last ``window_s`` seconds."""
        now = time.monotonic()
        self._history.append((now, Counter(self.counts)))
        while len(self._history) > 2 and now - self._history[1][0] >= window_s:
            self._history.pop(0)
        then, before = self._history[0]
        elapsed = max(now - then, 1e-9)
        return {t: (self.counts[t] - before[t]) / elapsed for t in self.counts} if (
            elapsed > 0.5) else {}


def render_table(counter: TopicCounter, extra: str = "") -> Any:
    """A rich table of the topics, grouped inputs / decisions / feedback / dead letters."""
    from rich.table import Table

    rates = counter.rates()
    table = Table(title="TechShop Streams — live (Ctrl-C stops)", caption=extra)
    table.add_column("kind")
    table.add_column("topic")
    table.add_column("events/s", justify="right")
    table.add_column("total", justify="right")
    for spec in counter.catalog.all():
        total = counter.counts.get(spec.name, 0)
        if spec.kind is TopicKind.LEARNING and not total:
            continue
        style = "bold red" if spec.kind is TopicKind.DEAD_LETTER and total else None
        table.add_row(spec.kind.value, spec.name, f"{rates.get(spec.name, 0.0):,.1f}",
                      f"{total:,}", style=style)
    return table
