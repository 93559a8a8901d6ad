"""The worker side of ``bench/hop.py``: transactions -> fraud-decisions, two ways.

``faust``: a :class:`~streams.app.TechShopApp` worker whose ``input_agent`` handler
publishes one APPROVE decision per admitted transaction (the real adapter, whatever
``streams/app.py`` holds now: Faust consumer, ``take_events``, admit, the handler once
per partition group, the publisher flushed once per ``take_events`` batch).

``plain``: the same work without Faust: a confluent-kafka ``Consumer`` assigned to every
input partition, ``poll`` for the first record then ``consume(n, 0)`` for what is
already queued, the same :func:`~streams.intake.admit`, the same
:class:`~streams.publisher.Publisher` and a flush per batch; offsets committed
asynchronously about once a second (Faust commits every 2.8 s, in the background).

``HOP_WORKER_TRACE=<n>`` (faust): print one line per batch after the n-th (timing,
partitions, task, ages) to stdout, for looking into how batches are formed.

Both read ``TECHSHOP_*`` from the environment (prefix, bootstrap, registry, fetch wait,
linger). Stop with SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.intake import Admitted  # noqa: E402

MODEL = "bench@0"
#: Upper edges (ms) of the histogram of gaps between the starts of successive batches.
GAP_EDGES_MS = (1.0, 2.0, 5.0, 9.0, 12.0, 20.0, 50.0)


class Stats:
    """Batch and flush counters, written as JSON to a file every half second.

    The benchmark reads the file before and after a phase and reports the difference:
    how many batches the records came in, and how long flushes held the loop.
    """

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.batches = self.events = self.flushes = 0
        self.flush_s = self.flush_max_s = 0.0
        self.gaps = [0] * (len(GAP_EDGES_MS) + 1)
        self._last = 0.0

    def batch(self, size: int) -> None:
        now = time.perf_counter()
        if self._last:
            self.gaps[bisect.bisect_left(GAP_EDGES_MS, (now - self._last) * 1000)] += 1
        self._last = now
        self.batches += 1
        self.events += size

    def flushed(self, seconds: float) -> None:
        self.flushes += 1
        self.flush_s += seconds
        self.flush_max_s = max(self.flush_max_s, seconds)

    def start(self) -> None:
        if self.path is None:
            return
        import json
        import threading

        def write() -> None:
            while True:
                tmp = self.path.with_suffix(".tmp")  # type: ignore[union-attr]
                tmp.write_text(json.dumps({
                    "batches": self.batches, "events": self.events, "flushes": self.flushes,
                    "flush_s": self.flush_s, "flush_max_s": self.flush_max_s,
                    "gap_edges_ms": GAP_EDGES_MS, "gaps": self.gaps}))
                tmp.replace(self.path)  # type: ignore[arg-type]
                time.sleep(0.5)

        threading.Thread(target=write, daemon=True, name="bench-stats").start()


def decision(event: dict[str, Any], decided_at: int) -> dict[str, Any]:
    """The fraud decision the benchmark emits for one transaction."""
    return {"txn_id": event["txn_id"], "decision": "APPROVE", "score": 0.0, "model": MODEL,
            "ts": event["ts"], "decided_at": decided_at, "reasons": [],
            "card_id": event["card_id"], "variant": "champion"}


def run_faust(args: argparse.Namespace) -> int:
    from streams.app import TechShopApp, now_ms
    from streams.settings import Settings
    from streams.worker import run_worker, schema_source

    settings = Settings()
    app = TechShopApp(settings, schema_source(settings))
    stats = Stats(args.stats_file)
    publisher = app.publisher
    flush = publisher.flush

    async def timed_flush(timeout: float = 30.0) -> None:  # the adapter's flush, timed
        start = time.perf_counter()
        if args.flush == "batch":
            await flush(timeout)
        stats.flushed(time.perf_counter() - start)

    publisher.flush = timed_flush  # type: ignore[method-assign]

    trace = int(os.environ.get("HOP_WORKER_TRACE", "0"))
    if trace:  # how long take_events' wait for "buffer full or timeout" really lasts
        from faust.streams import Stream

        original_wait = Stream.wait_for_stopped

        async def traced_wait(self: Any, *coros: Any, timeout: Any = None) -> bool:
            start = time.perf_counter()
            stopped = await original_wait(self, *coros, timeout=timeout)
            if stats.batches > trace:
                full = [c.is_set() for c in coros if hasattr(c, "is_set")]
                lasted_ms = (time.perf_counter() - start) * 1000
                print(f"WAIT stream={id(self):x} {start:.4f} lasted_ms={lasted_ms:.2f} "
                      f"timeout={timeout} full={full}", flush=True)
            return stopped

        Stream.wait_for_stopped = traced_wait  # type: ignore[method-assign]

    async def on_batch(batch: list[Admitted]) -> None:
        stats.batch(len(batch))
        decided_at = now_ms()
        if trace and stats.batches > trace:  # after warm-up: one line per batch
            task = asyncio.current_task()
            print(f"TRACE {time.perf_counter():.4f} n={len(batch)} "
                  f"parts={sorted({i.message.partition for i in batch})} "
                  f"task={task.get_name() if task else None} "
                  f"age_ms={[decided_at - i.event['ts'] for i in batch]}", flush=True)
        for item in batch:
            publisher.publish("fraud-decisions", decision(item.event, decided_at))

    stats.start()

    app.input_agent("transactions", on_batch, name="bench-hop", max_batch=args.max_batch,
                    within_s=args.within_s)
    return run_worker(app, loglevel=args.loglevel)


def run_plain(args: argparse.Namespace) -> int:
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from prometheus_client import CollectorRegistry

    from streams.app import now_ms
    from streams.intake import RawMessage, admit
    from streams.metrics import StreamMetrics
    from streams.publisher import Codecs, Publisher
    from streams.settings import Settings
    from streams.topics import TopicCatalog
    from streams.validation import Limits
    from streams.worker import schema_source

    settings = Settings()
    catalog = TopicCatalog(settings.topic_prefix)
    codecs = Codecs(schema_source(settings), catalog)
    metrics = StreamMetrics.create(CollectorRegistry())
    publisher = Publisher(settings.kafka_client_config(), codecs, metrics,
                          settings.producer_linger_ms)
    limits = Limits(max_record_bytes=settings.max_record_bytes,
                    max_future_ms=settings.max_future_ms)
    codec = codecs["transactions"]
    topic = catalog.physical("transactions")
    consumer = Consumer({
        **settings.kafka_client_config(), "group.id": f"{settings.app_id}-plain",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": settings.fetch_wait_ms(True), "log.connection.close": False,
    })
    partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stats = Stats(args.stats_file)
    stats.start()
    if args.ready_file:
        Path(args.ready_file).write_text("ready\n")
    last_commit = time.monotonic()
    try:
        while not stopping:
            first = consumer.poll(0.1)
            if first is None:
                continue
            msgs = [first, *consumer.consume(args.max_batch - 1, 0)]
            raws = [RawMessage(m.topic() or "", m.partition() or 0, m.offset() or 0, m.key(),
                               m.value(), (m.timestamp()[1] or 0))
                    for m in msgs if m.error() is None]
            batch = admit("transactions", raws, codec, limits, now_ms())
            for record in batch.rejected:
                publisher.publish("dead-letters", record, key=record["key"] or b"")
            stats.batch(len(batch.accepted))
            decided_at = now_ms()
            for item in batch.accepted:
                publisher.publish("fraud-decisions", decision(item.event, decided_at))
            start = time.perf_counter()
            if args.flush == "batch":
                publisher.flush_sync()
            stats.flushed(time.perf_counter() - start)
            if time.monotonic() - last_commit > 1.0:
                consumer.commit(asynchronous=True)
                last_commit = time.monotonic()
    finally:
        publisher.close()
        consumer.close()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["faust", "plain"])
    parser.add_argument("--max-batch", type=int, default=1000)
    parser.add_argument("--within-s", type=float, default=0.01,
                        help="faust: take_events window (the adapter's default 0.01)")
    parser.add_argument("--loglevel", default="info", help="faust worker log level")
    parser.add_argument("--ready-file", help="plain: written once partitions are assigned")
    parser.add_argument("--flush", choices=["batch", "linger"], default="batch",
                        help="batch: wait for delivery after each batch (what the adapter "
                        "does); linger: never wait, librdkafka sends after linger.ms "
                        "(an experiment: offsets may then be committed before delivery)")
    parser.add_argument("--stats-file", help="batch and flush counters, rewritten every 0.5 s")
    args = parser.parse_args()
    return run_faust(args) if args.mode == "faust" else run_plain(args)


if __name__ == "__main__":
    sys.exit(main())
