"""``techshop replay``: copy a range of topics into a prefixed namespace.

Records are copied byte for byte (the Confluent header keeps its schema id, which the
registry resolves whatever the subject), with their key, partition and record
timestamp, so per-partition order and event times are those of the original and a
full worker can run on the copies (``TECHSHOP_TOPIC_PREFIX=<target prefix>``) beside
live traffic. The target topics and subjects are created first.

As fast as possible by default; ``speed`` F paces the copy on the record timestamps
(F = 1: real time, 10: ten times faster), across the topics copied together (a paced
copy holds the range in memory to interleave them).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from replay.sources import Bound, merge_partitions, read_topic
from streams.errors import ConfigError
from streams.intake import RawMessage
from streams.settings import Settings
from streams.topics import TopicCatalog

__all__ = ["CopyResult", "copy_range"]

_PREFIX_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass
class CopyResult:
    copied: dict[str, int] = field(default_factory=dict)  # target physical topic -> records
    seconds: float = 0.0
    first_ts: int | None = None
    last_ts: int | None = None

    @property
    def total(self) -> int:
        return sum(self.copied.values())


def copy_range(settings: Settings, topics: Sequence[str], target_prefix: str,
               start: Bound | None = None, end: Bound | None = None, *,
               speed: float | None = None,
               on_progress: Callable[[str, int, int], None] | None = None) -> CopyResult:
    """Copy ``topics`` (logical names) from the settings' prefix to ``target_prefix``."""
    from confluent_kafka import Producer

    from streams.admin import ensure_subjects, ensure_topics, quiet_client_config
    from streams.worker import schema_source

    source = TopicCatalog(settings.topic_prefix)
    target = TopicCatalog(target_prefix)
    if target_prefix == settings.topic_prefix:
        raise ConfigError(f"the target prefix {target_prefix!r} is the source's own: "
                          "choose another (e.g. --to-prefix replay1.)")
    if not target_prefix or not set(target_prefix) <= _PREFIX_CHARS:
        raise ConfigError(f"bad target prefix {target_prefix!r}: letters, digits, '.', '_' "
                          "and '-' only, not empty (e.g. --to-prefix replay1.)")
    if speed is not None and speed <= 0:
        raise ConfigError(f"--speed must be > 0, got {speed}")
    names = [source.spec(t).name for t in topics]
    ensure_topics(settings, target)
    ensure_subjects(schema_source(settings), target)
    producer = Producer({**quiet_client_config(settings), "linger.ms": 50,
                         "batch.size": 1024 * 1024, "enable.idempotence": False})
    result = CopyResult()
    started = time.monotonic()

    def send(msg: RawMessage, logical: str) -> None:
        physical = target.physical(logical)
        while True:
            try:
                producer.produce(physical, msg.value, msg.key, partition=msg.partition,
                                 timestamp=msg.timestamp_ms or 0)
                break
            except BufferError:
                producer.poll(0.05)
        result.copied[physical] = result.copied.get(physical, 0) + 1
        ts = msg.timestamp_ms
        if ts:
            result.first_ts = ts if result.first_ts is None else min(result.first_ts, ts)
            result.last_ts = ts if result.last_ts is None else max(result.last_ts, ts)

    def progress_for(name: str) -> Callable[[int, int], None] | None:
        if on_progress is None:
            return None
        return lambda read, estimate: on_progress(name, read, estimate)

    if speed is None:
        for name in names:
            for batch in read_topic(settings, source.physical(name), start, end,
                                    on_progress=progress_for(name)):
                for msg in batch:
                    send(msg, name)
                producer.poll(0)
    else:
        tagged: list[tuple[str, RawMessage]] = []
        for name in names:
            for batch in read_topic(settings, source.physical(name), start, end,
                                    on_progress=progress_for(name)):
                tagged.extend((name, m) for m in batch)
        ordered = merge_partitions([tagged], lambda t: t[1].timestamp_ms,
                                   lambda t: hash((t[0], t[1].partition)))
        _paced(ordered, speed, lambda t: send(t[1], t[0]), producer)
    remaining = producer.flush(60)
    if remaining:
        raise ConfigError(f"{remaining} records were not delivered within 60 s")
    result.seconds = time.monotonic() - started
    return result


def _paced(items: list[tuple[str, RawMessage]], speed: float,
           send: Callable[[tuple[str, RawMessage]], None], producer: Any) -> None:
    if not items:
        return
    t0_ts = items[0][1].timestamp_ms
    t0 = time.monotonic()
    for item in items:
        due = t0 + (item[1].timestamp_ms - t0_ts) / 1000.0 / speed
        wait = due - time.monotonic()
        if wait > 0:
            producer.poll(min(wait, 0.05))
            while (wait := due - time.monotonic()) > 0:
                time.sleep(min(wait, 0.05))
        send(item)
