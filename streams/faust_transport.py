"""Faust's aiokafka transport, tuned for brokers that are not Apache Kafka.

Two things Faust does not let us configure, fixed here by subclassing its driver:

* **fetch wait** — Faust hard-codes ``fetch_max_wait_ms=1500``. Tansu answers a waiting
  fetch only when the wait runs out, which costs 0.4–0.8 s per hop (MEASURED.md). The
  wait is ``TECHSHOP_CONSUMER_FETCH_WAIT_MS`` (embedded default 10 ms).
* **end offsets** — Tansu's ListOffsets(latest) returns the base offset of the last
  record batch + 1, not the true end. Faust recovers a table from its changelog up to
  that offset and so silently drops the last batch. With ``exact_end_offsets`` on, each
  non-empty partition's end is confirmed by reading its tail (fetch responses carry the
  true high watermark), so recovery reads every changelog record.

Register with :func:`install`, then use the broker URL ``techshop://host:port``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from confluent_kafka import Consumer as ConfluentConsumer
from confluent_kafka import KafkaError
from confluent_kafka import TopicPartition as ConfluentTP
from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

__all__ = ["SCHEME", "install", "true_end_offsets", "TransportOptions"]

log = logging.getLogger(__name__)
SCHEME = "techshop"


class TransportOptions:
    """Process-wide options read by the transport (set by the app factory)."""

    fetch_wait_ms: ClassVar[int] = 10
    exact_end_offsets: ClassVar[bool] = True
    client_config: ClassVar[dict[str, Any]] = {}


def true_end_offsets(client_config: Mapping[str, Any], reported: Mapping[TP, int],
                     timeout: float = 10.0) -> dict[TP, int]:
    """Confirm end offsets by reading from each reported end to the partition's real end.

    ``reported`` maps partitions to what ListOffsets said. Empty partitions (0) are
    trusted. Blocking: call it from a thread.
    """
    result = dict(reported)
    to_check = {tp: end for tp, end in reported.items() if end and end > 0}
    if not to_check:
        return result
    consumer = ConfluentConsumer({
        **client_config, "group.id": "techshop-end-offset-probe", "enable.auto.commit": False,
        "enable.partition.eof": True, "log.connection.close": False,
        "fetch.wait.max.ms": 10,
    })
    try:
        # Start at the reported end - 1: the last batch's first record, at worst re-read.
        consumer.assign([ConfluentTP(tp.topic, tp.partition, end - 1)
                         for tp, end in to_check.items()])
        pending = set(to_check)


        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for msg in consumer.consume(500, 0.2):
                tp = TP(msg.topic() or "", msg.partition() or 0)
                offset = msg.offset() or 0
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        result[tp] = max(result[tp], offset)
                        pending.discard(tp)
                    continue
                result[tp] = max(result[tp], offset + 1)
        if pending:
            log.warning("could not confirm the end offsets of %s", sorted(pending))
    finally:
        consumer.close()
    fixed = {tp: (reported[tp], end) for tp, end in result.items() if end != reported[tp]}
    if fixed:
        log.info("end offsets corrected (reported -> true): %s", fixed)
    return result


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = TransportOptions.fetch_wait_ms
        return consumer

    def _create_client_consumer(self, transport: Any) -> Any:
        consumer = super()._create_client_consumer(transport)
        consumer._fetch_max_wait_ms = TransportOptions.fetch_wait_ms
        return consumer

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        reported = await super()._highwaters(partitions)
        if not TransportOptions.exact_end_offsets or self.consumer.in_transaction:
            return reported
        return await asyncio.to_thread(
            true_end_offsets, TransportOptions.client_config, dict(reported)
        )


class Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer


def install(*, fetch_wait_ms: int, exact_end_offsets: bool,
            client_config: Mapping[str, Any]) -> None:
    """Register the ``techshop://`` transport scheme and set its options."""
    TransportOptions.fetch_wait_ms = fetch_wait_ms
    TransportOptions.exact_end_offsets = exact_end_offsets
    TransportOptions.client_config = dict(client_config)
    drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
