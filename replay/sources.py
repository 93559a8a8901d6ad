"""Where replays and backtests read from: a range of a topic, or a file export.

A range is two :class:`Bound` values, parsed by :func:`parse_bound` from what a user
types: an ISO 8601 time (``2026-11-25T10:00:00Z``), epoch milliseconds
(``1764064800000``), a time relative to now (``-15m``, ``-2h``, ``-7d``) or an offset
(``@1200``, the same offset on every partition). Times select on the *record
timestamp* (the broker seeks with ``offsets_for_times``); a file export selects on the
same timestamp when it kept one, else on the event's ``ts``.

:func:`read_topic` yields :class:`~streams.intake.RawMessage` batches from a range,
stopping at each partition's end as it was when the read reached it (partition EOF:
Tansu under-reports end offsets, fetch responses do not). :func:`merge_partitions`
interleaves partitions by event time while keeping each partition's order, which is
what a card (or a user) sees in the live pipeline: all its events are on one partition.

Files: JSON lines (one event per line, either the value itself or
``{"topic", "partition", "offset", "key", "timestamp", "value"}`` as written by
``techshop export``/``consume --meta``) or Avro object container files (``.avro``,
fastavro) holding the topic's values. :func:`write_export` writes either.

>>> parse_bound("@5"), parse_bound("1764064800000")
(Bound(kind='offset', value=5), Bound(kind='time', value=1764064800000))
>>> parse_bound("2025-11-25T10:00:00Z").value
1764064800000
"""

from __future__ import annotations

import heapq
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import orjson

from streams.errors import ConfigError
from streams.intake import RawMessage
from streams.settings import Settings

__all__ = ["Bound", "parse_bound", "read_topic", "ReadState", "merge_partitions",
           "StreamMerge", "FileEvent", "read_file", "write_export", "ExportWriter",
           "topic_partitions"]

_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


@dataclass(frozen=True, slots=True)
class Bound:
    """One end of a range: ``time`` (epoch ms, record timestamp) or ``offset``."""

    kind: str
    value: int


def parse_bound(text: str | None, *, now_ms: int | None = None) -> Bound | None:
    """A user's ``--from``/``--to`` value; ``ConfigError`` (one readable line) if bad."""
    if text is None or text == "":
        return None
    text = text.strip()
    if text.startswith("@"):
        try:
            offset = int(text[1:])
        except ValueError:
            raise ConfigError(f"bad offset {text!r}: expected @N, e.g. @1200") from None
        if offset < 0:
            raise ConfigError(f"bad offset {text!r}: offsets start at 0")
        return Bound("offset", offset)
    if text.lstrip("-").isdigit() and not _RELATIVE.match(text):
        return Bound("time", int(text))
    m = _RELATIVE.match(text)
    if m:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return Bound("time", now - int(float(m.group(1)) * _UNITS[m.group(2)]))
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"bad time {text!r}: expected an ISO time (2026-11-25T10:00:00Z), "
                          "epoch milliseconds, -15m/-2h/-7d or @OFFSET") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return Bound("time", int(when.timestamp() * 1000))


def _consumer(settings: Settings) -> Any:
    from confluent_kafka import Consumer

    from streams.admin import quiet_client_config

    return Consumer({**quiet_client_config(settings),
                     "group.id": f"techshop-replay-{uuid.uuid4().hex[:8]}",
                     "enable.auto.commit": False, "enable.partition.eof": True,
                     "fetch.wait.max.ms": 20, "auto.offset.reset": "earliest"})


def topic_partitions(consumer: Any, physical: str) -> list[int]:
    """The partitions of ``physical``; ``ConfigError`` if the topic does not exist."""
    meta = consumer.list_topics(physical, timeout=10).topics.get(physical)
    if meta is None or meta.error is not None or not meta.partitions:
        raise ConfigError(f"topic {physical} does not exist (check TECHSHOP_TOPIC_PREFIX, or "
                          "run `techshop topics`)")
    return sorted(meta.partitions)


def _start_offsets(consumer: Any, physical: str, partitions: list[int],
                   start: Bound | None) -> dict[int, int]:
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    if start is None:
        return dict.fromkeys(partitions, OFFSET_BEGINNING)
    if start.kind == "offset":
        return dict.fromkeys(partitions, start.value)
    found = consumer.offsets_for_times(
        [TopicPartition(physical, p, start.value) for p in partitions], timeout=10)
    # -1: no record at or after that time (start at the end); a broker that cannot
    # seek by time makes us read from the beginning and filter.
    return {tp.partition: tp.offset if tp.offset >= -1 else OFFSET_BEGINNING for tp in found}


@dataclass
class ReadState:
    """What :func:`read_topic` found out while reading: the partitions it reads (set
    before the first batch) and those it has finished (set as each reaches its end)."""

    partitions: list[int] = field(default_factory=list)
    finished: set[int] = field(default_factory=set)


def read_topic(settings: Settings, physical: str, start: Bound | None = None,
               end: Bound | None = None, *, batch_size: int = 2000,
               on_progress: Callable[[int, int], None] | None = None,
               idle_timeout_s: float = 10.0, state: ReadState | None = None
               ) -> Iterator[list[RawMessage]]:
    """Batches of the records of ``physical`` in ``[start, end]`` (both inclusive; None:
    the beginning, the end as it is when reached). ``on_progress(read, estimate)``.

    Records within one partition come in offset order; partitions interleave as the
    broker answers (:class:`StreamMerge` or :func:`merge_partitions` put them in
    event-time order); ``state`` says which partitions are done."""
    from confluent_kafka import KafkaError, TopicPartition

    from streams.admin import wait_for_broker

    wait_for_broker(settings, timeout=10)
    consumer = _consumer(settings)
    try:
        partitions = topic_partitions(consumer, physical)
        starts = _start_offsets(consumer, physical, partitions, start)
        live = {p for p, o in starts.items() if o != -1}
        if state is not None:
            state.partitions = sorted(live)
        estimate = 0
        for p in live:
            low, high = consumer.get_watermark_offsets(TopicPartition(physical, p), timeout=10)
            first = starts[p] if starts[p] >= 0 else low
            estimate += max(0, high - first)
        if not live:
            return
        consumer.assign([TopicPartition(physical, p, starts[p]) for p in sorted(live)])
        read = 0
        last_data = time.monotonic()
        while live:
            messages = consumer.consume(batch_size, 0.05)
            if not messages:
                if time.monotonic() - last_data > idle_timeout_s:
                    break  # no EOF from a broker that stopped answering: what we have
                continue
            last_data = time.monotonic()
            out: list[RawMessage] = []
            for msg in messages:
                p = msg.partition()
                if p not in live:
                    continue
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        _finish(live, p, state)
                        continue
                    raise ConfigError(f"reading {physical}: {err.str()}")
                offset = msg.offset()
                ts = msg.timestamp()[1]
                if end is not None and ((end.kind == "offset" and offset > end.value)
                                        or (end.kind == "time" and ts > end.value)):
                    if end.kind == "offset":
                        _finish(live, p, state)
                    continue  # record timestamps may step back: read on to EOF
                if start is not None and start.kind == "time" and ts < start.value:
                    continue
                out.append(RawMessage(physical, p, offset, msg.key(), msg.value(), ts))
            if out:
                read += len(out)
                if on_progress is not None:
                    on_progress(read, max(estimate, read))
                yield out
    finally:
        consumer.close()
        if state is not None:
            state.finished.update(state.partitions)


def _finish(live: set[int], partition: int, state: ReadState | None) -> None:
    live.discard(partition)
    if state is not None:
        state.finished.add(partition)


class StreamMerge:
    """:func:`merge_partitions` for a stream: items are pushed as they are read and come
    out in the same order (event time, each partition's own order kept, ties by
    partition) as soon as no open partition can still bring an earlier one, i.e. while
    every open partition has an item waiting.

    >>> m = StreamMerge(ts_of=lambda x: x[1])
    >>> m.open([0, 1]); m.push(0, (0, 10)); m.push(0, (0, 30)); list(m.ready())
    []
    >>> m.push(1, (1, 20)); [x for x in m.ready()]
    [(0, 10), (1, 20)]
    >>> m.close(1); list(m.ready()), list(m.drain())
    ([(0, 30)], [])
    """

    def __init__(self, ts_of: Callable[[Any], int]) -> None:
        self.ts_of = ts_of
        self._buffers: dict[int, deque[Any]] = {}
        self._open: set[int] = set()

    def open(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._open.add(p)
            self._buffers.setdefault(p, deque())

    def push(self, partition: int, item: Any) -> None:
        if partition not in self._buffers:
            self.open([partition])
        self._buffers[partition].append(item)

    def close(self, partition: int) -> None:
        self._open.discard(partition)

    def ready(self) -> Iterator[Any]:
        buffers, ts_of = self._buffers, self.ts_of
        while True:
            if any(not buffers[p] for p in self._open):
                return
            best, best_ts = None, 0
            for p, b in buffers.items():
                if b and (best is None or ts_of(b[0]) < best_ts):
                    best, best_ts = p, ts_of(b[0])
            if best is None:
                return
            yield buffers[best].popleft()

    def drain(self) -> Iterator[Any]:
        self._open.clear()
        yield from self.ready()

    @property
    def buffered(self) -> int:
        return sum(len(b) for b in self._buffers.values())


def merge_partitions(batches: Iterable[Sequence[Any]], ts_of: Callable[[Any], int],
                     partition_of: Callable[[Any], int]) -> list[Any]:
    """All items in event-time order, each partition's own order kept: a k-way merge
    on the partitions' heads (a late event waits behind its partition's earlier ones)."""
    per: dict[int, list[Any]] = {}
    for batch in batches:
        for item in batch:
            per.setdefault(partition_of(item), []).append(item)
    heads = [(ts_of(items[0]), p, 0) for p, items in per.items()]
    heapq.heapify(heads)
    out: list[Any] = []
    while heads:
        _, p, i = heapq.heappop(heads)
        items = per[p]
        out.append(items[i])
        if i + 1 < len(items):
            heapq.heappush(heads, (ts_of(items[i + 1]), p, i + 1))
    return out


@dataclass(slots=True)
class FileEvent:
    """One event of an export file (partition -1 and offset = line number when absent)."""

    value: dict[str, Any]
    partition: int = -1
    offset: int = 0
    key: str | None = None
    timestamp_ms: int = 0
    topic: str | None = None


def read_file(path: Path, logical_topic: str | None = None, start: Bound | None = None,
              end: Bound | None = None) -> Iterator[FileEvent]:
    """The events of an export file, optionally within ``[start, end]``."""
    if not path.exists():
        raise ConfigError(f"no such file: {path}")
    events = _read_avro(path) if _is_avro(path) else _read_jsonl(path)
    for ev in events:
        if logical_topic is not None and ev.topic not in (None, logical_topic) \
                and not str(ev.topic).endswith(logical_topic):
            continue
        if _outside(ev, start, end):
            continue
        yield ev


def _outside(ev: FileEvent, start: Bound | None, end: Bound | None) -> bool:
    for bound, before in ((start, True), (end, False)):
        if bound is None:
            continue
        position = ev.offset if bound.kind == "offset" else (
            ev.timestamp_ms or int(ev.value.get("ts", 0)))
        if (position < bound.value) if before else (position > bound.value):
            return True
    return False


def _is_avro(path: Path) -> bool:
    with path.open("rb") as fo:
        return fo.read(4) == b"Obj\x01"


def _read_avro(path: Path) -> Iterator[FileEvent]:
    import fastavro

    with path.open("rb") as fo:
        reader = fastavro.reader(fo)
        topic = (reader.metadata or {}).get("techshop.topic")
        key_field = (reader.metadata or {}).get("techshop.key_field")
        for i, record in enumerate(reader):
            value = _plain(record)
            key = str(value[key_field]) if key_field and key_field in value else None
            yield FileEvent(value, -1, i, key, 0, topic)


def _plain(value: Any) -> Any:
    """Datetimes (a writer that kept logical types) back to epoch milliseconds."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return value


def _read_jsonl(path: Path) -> Iterator[FileEvent]:
    with path.open("rb") as fo:
        for number, line in enumerate(fo, start=1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{number}: not JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise ConfigError(f"{path}:{number}: not a JSON object")
            if "value" in obj and isinstance(obj["value"], dict) and "offset" in obj:
                yield FileEvent(obj["value"], int(obj.get("partition", -1)),
                                int(obj.get("offset", number)), obj.get("key"),
                                int(obj.get("timestamp") or 0), obj.get("topic"))
            else:
                yield FileEvent(obj, -1, number)


@dataclass
class ExportWriter:
    """Writes events of one logical topic to JSON lines or an Avro container file
    (chosen by the suffix: ``.avro`` or anything else)."""

    path: Path
    logical_topic: str
    written: int = 0
    _fo: IO[bytes] | None = None
    _avro: Any = None
    _pending: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fo = self.path.open("wb")
        if self.path.suffix == ".avro":
            import fastavro

            from schemas import load_schema
            from streams.codec import strip_logical_types
            from streams.topics import TOPICS

            spec = TOPICS[self.logical_topic]
            schema = fastavro.parse_schema(strip_logical_types(load_schema(spec.schema)))
            self._avro = fastavro.write.Writer(
                self._fo, schema, codec="deflate",
                metadata={"techshop.topic": self.logical_topic,
                          "techshop.key_field": spec.key_field or ""})

    def write(self, value: dict[str, Any], *, partition: int = -1, offset: int = 0,
              key: bytes | str | None = None, timestamp_ms: int = 0, topic: str = "") -> None:
        assert self._fo is not None
        if self._avro is not None:
            self._avro.write(value)
        else:
            if isinstance(key, bytes):
                key = key.decode(errors="replace")
            self._fo.write(_json_line({"topic": topic or self.logical_topic,
                                         "partition": partition, "offset": offset,
                                         "key": key, "timestamp": timestamp_ms,
                                         "value": value}))
        self.written += 1

    def close(self) -> None:
        if self._avro is not None:
            self._avro.flush()
        if self._fo is not None:
            self._fo.close()
            self._fo = None


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode()
    raise TypeError(type(value).__name__)


def _json_line(value: Any) -> bytes:
    return orjson.dumps(value, default=_json_default) + b"\n"


def write_export(path: Path, logical_topic: str, events: Iterable[FileEvent]) -> int:
    """Write ``events`` to ``path``; how many were written."""
    writer = ExportWriter(path, logical_topic)
    try:
        for ev in events:
            writer.write(ev.value, partition=ev.partition, offset=ev.offset, key=ev.key,
                         timestamp_ms=ev.timestamp_ms, topic=ev.topic or logical_topic)
    finally:
        writer.close()
    return writer.written
