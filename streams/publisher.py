"""Publishing events: Avro-encode with the topic's codec and produce with confluent-kafka.

Faust's own ``topic.send`` costs ~23 % of a worker's time per event (MEASURED.md); a
librdkafka producer batches in C. :meth:`Publisher.flush` waits for delivery: an agent
flushes before it finishes a batch, so Faust commits an input offset only after the
outputs derived from it are on the broker (at-least-once).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message, Producer

from schemas import load_schema
from streams.codec import AvroCodec
from streams.errors import ProcessingError
from streams.metrics import StreamMetrics
from streams.registry.client import SchemaSource
from streams.topics import TopicCatalog

__all__ = ["EventPublisher", "Publisher", "FaustPublisher", "Codecs"]

log = logging.getLogger(__name__)


class EventPublisher(Protocol):
    """What agents publish through (both publishers below meet it)."""

    def publish(self, logical_topic: str, value: dict[str, Any] | None,
                key: str | bytes | None = None) -> None: ...

    async def flush(self, timeout: float = 30.0) -> None: ...

    def flush_sync(self, timeout: float = 30.0) -> None: ...

    def close(self) -> None: ...


class Codecs:
    """One :class:`AvroCodec` per topic, built on first use."""

    def __init__(self, source: SchemaSource, catalog: TopicCatalog) -> None:
        self.source, self.catalog = source, catalog
        self._codecs: dict[str, AvroCodec] = {}

    def __getitem__(self, logical_topic: str) -> AvroCodec:
        codec = self._codecs.get(logical_topic)
        if codec is None:
            spec = self.catalog.spec(logical_topic)
            codec = AvroCodec(self.source, self.catalog.subject(spec.name),
                              load_schema(spec.schema))
            self._codecs[logical_topic] = codec
        return codec


class Publisher:
    """Produces Avro events to logical topics of one deployment."""

    def __init__(self, client_config: dict[str, Any], codecs: Codecs, metrics: StreamMetrics,
                 linger_ms: int = 5) -> None:
        self.codecs, self.metrics = codecs, metrics
        self.catalog = codecs.catalog
        self._producer = Producer({
            **client_config,
            "linger.ms": linger_ms,
            "batch.size": 256 * 1024,
            "enable.idempotence": False,
            "log.connection.close": False,
        })
        self._failed = 0
        self._physical: dict[str, str] = {}
        self._counters: dict[str, Any] = {}
        self._key_fields: dict[str, str | None] = {}

    def publish(self, logical_topic: str, value: dict[str, Any] | None,
                key: str | bytes | None = None) -> None:
        """Queue one event; ``key`` defaults to the value's contract key field."""
        topic = self._physical.get(logical_topic)
        if topic is None:
            topic = self._physical[logical_topic] = self.catalog.physical(logical_topic)
            self._counters[logical_topic] = self.metrics.events_out.labels(logical_topic)
            self._key_fields[logical_topic] = self.catalog.spec(logical_topic).key_field
        key_field = self._key_fields[logical_topic]
        if key is None and key_field and value is not None:
            key = str(value[key_field])
        payload = None if value is None else self.codecs[logical_topic].encode(value)
        while True:
            try:
                self._producer.produce(topic, payload, key, on_delivery=self._delivered)
                break
            except BufferError:  # local queue full: let librdkafka drain it
                self._producer.poll(0.05)
        self._producer.poll(0)
        self._counters[logical_topic].inc()

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failed += 1
            topic = self.catalog.logical(msg.topic() or "?")
            self.metrics.publish_errors.labels(topic).inc()
            log.error("delivery to %s failed: %s", msg.topic(), err.str())

    def flush_sync(self, timeout: float = 30.0) -> None:
        """Block until every queued event is delivered; ``ProcessingError`` if not."""
        remaining = self._producer.flush(timeout)
        failed, self._failed = self._failed, 0
        if remaining or failed:
            raise ProcessingError(
                f"{remaining} events undelivered after {timeout} s, {failed} failed",
                "process.publish",
            )

    async def flush(self, timeout: float = 30.0) -> None:
        """Like :meth:`flush_sync`, without blocking the event loop."""
        if len(self._producer) == 0 and not self._failed:
            return
        await asyncio.to_thread(self.flush_sync, timeout)

    def close(self) -> None:
        self._producer.flush(10)


class FaustPublisher:
    """Publishes through Faust's own producer, so outputs join Faust's Kafka transaction
    when ``TECHSHOP_PROCESSING_GUARANTEE=exactly_once`` (real Kafka). Slower per event
    than :class:`Publisher`; same interface."""

    def __init__(self, app: Any, codecs: Codecs, metrics: StreamMetrics) -> None:
        self.app, self.codecs, self.metrics = app, codecs, metrics
        self.catalog = codecs.catalog

    def publish(self, logical_topic: str, value: dict[str, Any] | None,
                key: str | bytes | None = None) -> None:
        spec = self.catalog.spec(logical_topic)
        if key is None and spec.key_field and value is not None:
            key = str(value[spec.key_field])
        payload = None if value is None else self.codecs[logical_topic].encode(value)
        raw_key = key.encode() if isinstance(key, str) else key
        self.app.topic(logical_topic).send_soon(key=raw_key, value=payload)
        self.metrics.events_out.labels(logical_topic).inc()

    async def flush(self, timeout: float = 30.0) -> None:
        await self.app.faust.producer.flush()

    def flush_sync(self, timeout: float = 30.0) -> None:
        raise ProcessingError("FaustPublisher flushes only inside the worker's event loop",
                              "process.publish")

    def close(self) -> None:
        return None
