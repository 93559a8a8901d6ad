"""Topics every worker must read in full, outside the consumer group: ``model-updates``.

A Faust agent shares a topic's partitions across workers; a model update must reach
*every* worker. :class:`BroadcastReader` reads a topic from the beginning in a thread
with a group-less consumer and hands each decoded record to a callback on the event
loop, so every replica swaps to the same model version.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams.errors import EventError
from streams.publisher import Codecs
from streams.settings import Settings

__all__ = ["BroadcastReader"]

log = logging.getLogger(__name__)


class BroadcastReader:
    """Read ``logical_topic`` from its beginning; call ``on_record(value)`` for each."""

    def __init__(self, settings: Settings, codecs: Codecs, logical_topic: str,
                 on_record: Callable[[dict[str, Any]], None],
                 on_tombstone: Callable[[bytes], None] | None = None) -> None:
        self.settings, self.codecs = settings, codecs
        self.logical_topic = logical_topic
        self.on_record = on_record
        self.on_tombstone = on_tombstone
        self.caught_up = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, loop: asyncio.AbstractEventLoop | None = None) -> BroadcastReader:
        self._loop = loop
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"broadcast-{self.logical_topic}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _deliver(self, value: dict[str, Any]) -> None:
        self._call(self.on_record, value)

    def _call(self, fn: Callable[[Any], None], arg: Any) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(fn, arg)
        else:
            fn(arg)

    def _run(self) -> None:
        codec = self.codecs[self.logical_topic]
        topic = self.codecs.catalog.physical(self.logical_topic)
        consumer = Consumer({**self.settings.kafka_client_config(),
                             "group.id": "techshop-broadcast", "enable.auto.commit": False,
                             "enable.partition.eof": True, "fetch.wait.max.ms": 50,
                             "log.connection.close": False})
        try:
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            partitions = set(meta.partitions)
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            at_end: set[int] = set()
            while not self._stop.is_set():
                for msg in consumer.consume(100, 0.2):
                    err = msg.error()
                    if err is not None:
                        if err.code() == err._PARTITION_EOF:
                            at_end.add(msg.partition() or 0)
                            if at_end >= partitions:
                                self.caught_up.set()
                        continue
                    if msg.value() is None:
                        key = msg.key()
                        if self.on_tombstone is not None and key is not None:
                            self._call(self.on_tombstone, key)
                        continue
                    try:
                        self._deliver(codec.decode(msg.value()))
                    except EventError as exc:
                        log.error("unreadable %s record at %s: %s", self.logical_topic,
                                  msg.offset(), exc)
        except Exception:
            log.exception("broadcast reader for %s stopped", self.logical_topic)
        finally:
            consumer.close()
