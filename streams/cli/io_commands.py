"""``techshop produce``, ``consume`` and ``topics``: the stack from a terminal."""

from __future__ import annotations

import argparse
import base64
import sys
import time
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, TopicPartition

from streams.errors import ConfigError, EventError, TechShopError
from streams.settings import Settings, load_settings
from streams.topics import TOPICS, TopicCatalog

__all__ = ["add_commands", "to_json_line"]

TOPIC_HELP = "a topic name: " + ", ".join(TOPICS)


def add_commands(sub: Any) -> None:
    p = sub.add_parser("produce", help="JSON lines on stdin -> Avro events on TOPIC",
                       description="Read one JSON object per line from stdin, encode it with "
                       "the topic's Avro schema (Confluent wire format) and produce it, keyed "
                       "by the contract's key field. Bad lines are reported with their line "
                       "number and skipped; the exit status is 1 if any were.")
    p.add_argument("topic", help=TOPIC_HELP)
    p.add_argument("--file", type=argparse.FileType("rb"), default=None,
                   help="read this file instead of stdin")
    p.set_defaults(func=produce)

    c = sub.add_parser("consume", help="Avro events on TOPIC -> JSON lines on stdout",
                       description="Print each event of TOPIC as one JSON line. Starts at the "
                       "end unless --from-beginning. bytes fields (dead letters' key and value) "
                       "are base64.")
    c.add_argument("topic", help=TOPIC_HELP)
    c.add_argument("--from-beginning", action="store_true", help="read the whole topic")
    c.add_argument("--max", type=int, default=None, metavar="N", help="exit after N events")
    c.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="exit after S seconds without a new event")
    c.add_argument("--meta", action="store_true",
                   help="wrap each event as {topic, partition, offset, key, value}")
    c.set_defaults(func=consume)

    t = sub.add_parser("topics", help="list the deployment's topics",
                       description="List every topic: logical and physical name, key, "
                       "schema, partitions, cleanup policy and whether it exists. --create "
                       "creates the missing ones.")
    t.add_argument("--create", action="store_true", help="create missing topics")
    t.set_defaults(func=topics)


def _source(settings: Settings) -> Any:
    from streams.registry import RemoteSchemaSource

    return RemoteSchemaSource(settings.registry_client_config())


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(type(value).__name__)


def to_json_line(value: Any) -> bytes:
    return orjson.dumps(value, default=_json_default) + b"\n"


def produce(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from streams.metrics import StreamMetrics
    from streams.publisher import Codecs, Publisher

    settings = load_settings()
    catalog = TopicCatalog(settings.topic_prefix)
    spec = catalog.spec(args.topic)
    publisher = Publisher(settings.kafka_client_config(), Codecs(_source(settings), catalog),
                          StreamMetrics.create(CollectorRegistry()), linger_ms=20)
    stream = args.file or sys.stdin.buffer
    sent = bad = 0
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
            if not isinstance(value, dict):
                raise ValueError("not a JSON object")
            if spec.key_field and spec.key_field not in value:
                raise ValueError(f"no key field {spec.key_field!r}")
            publisher.publish(spec.name, value)
            sent += 1
        except (ValueError, TechShopError) as exc:
            bad += 1
            print(f"techshop: line {number}: {exc}", file=sys.stderr)
    publisher.flush_sync()
    print(f"produced {sent} events to {catalog.physical(spec.name)}"
          + (f"; {bad} bad lines skipped" if bad else ""), file=sys.stderr)
    return 1 if bad else 0


def consume(args: argparse.Namespace) -> int:
    settings = load_settings()
    catalog = TopicCatalog(settings.topic_prefix)
    spec = catalog.spec(args.topic)
    physical = catalog.physical(spec.name)
    from streams.publisher import Codecs

    codec = Codecs(_source(settings), catalog)[spec.name]
    from streams.admin import quiet_client_config, wait_for_broker

    wait_for_broker(settings, timeout=5)
    consumer = Consumer({**quiet_client_config(settings), "group.id": "techshop-cli-consume",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 20})
    metadata = consumer.list_topics(physical, timeout=10).topics.get(physical)
    if metadata is None or metadata.error is not None:
        raise ConfigError(f"topic {physical} does not exist (run `techshop up` or "
                          f"`techshop topics --create`)")
    start = OFFSET_BEGINNING if args.from_beginning else OFFSET_END
    consumer.assign([TopicPartition(physical, p, start) for p in metadata.partitions])
    seen, last = 0, time.monotonic()
    out = sys.stdout.buffer
    try:
        while args.max is None or seen < args.max:
            if args.timeout is not None and time.monotonic() - last > args.timeout:
                break
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    print(f"techshop: {error.str()}", file=sys.stderr)
                continue
            last = time.monotonic()
            try:
                value = None if msg.value() is None else codec.decode(msg.value())
            except EventError as exc:
                print(f"techshop: offset {msg.partition()}:{msg.offset()}: {exc.reason}: {exc}",
                      file=sys.stderr)
                continue
            if args.meta:
                key = msg.key()
                value = {"topic": msg.topic(), "partition": msg.partition(),
                         "offset": msg.offset(), "key": key.decode(errors="replace")
                         if key else None, "value": value}
            out.write(to_json_line(value))
            out.flush()
            seen += 1
    finally:
        consumer.close()
    return 0


def topics(args: argparse.Namespace) -> int:
    from streams.admin import ensure_topics, wait_for_broker

    settings = load_settings()
    catalog = TopicCatalog(settings.topic_prefix)
    if args.create:
        ensure_topics(settings, catalog)
    existing = wait_for_broker(settings).list_topics(timeout=10).topics
    print(f"{'topic':22} {'physical':32} {'key':10} {'schema':20} parts cleanup  exists")
    for spec in catalog.all():
        name = catalog.physical(spec.name)
        meta = existing.get(name)
        parts = len(meta.partitions) if meta else spec.partitions or settings.partitions
        print(f"{spec.name:22} {name:32} {spec.key_field or '(orig)':10} {spec.schema:20} "
              f"{parts:5} {'compact' if spec.compacted else 'delete ':8} "
              f"{'yes' if meta else 'no'}")
    return 0
