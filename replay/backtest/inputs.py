"""A backtest's input: a topic range or an export file, admitted as the live path admits.

Topic records go through :func:`streams.intake.admit` (decode + validate, the very code
the agents run: what the live worker dead-letters, the backtest counts as dead letters
by reason); file events, already decoded, through :func:`streams.validation.validate`.
Accepted events are put in event-time order with each partition's order kept
(:func:`replay.sources.merge_partitions`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replay.sources import (
    Bound,
    ReadState,
    StreamMerge,
    merge_partitions,
    read_file,
    read_topic,
)
from streams.errors import ConfigError, EventError
from streams.intake import RawMessage, admit
from streams.settings import Settings
from streams.topics import TopicCatalog
from streams.validation import Limits, validate

__all__ = ["Loaded", "Where", "load_events", "iter_events"]

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Where:
    """Where to read one logical topic: a file, or the deployment's topic range."""

    logical_topic: str
    file: Path | None = None
    start: Bound | None = None
    end: Bound | None = None

    def __post_init__(self) -> None:
        if self.file is not None and not self.file.is_file():
            raise ConfigError(f"no such file: {self.file}")

    def describe(self, catalog: TopicCatalog) -> str:
        what = str(self.file) if self.file else catalog.physical(self.logical_topic)
        rng = []
        for name, bound in (("from", self.start), ("to", self.end)):
            if bound is not None:
                rng.append(f"{name} {'@' if bound.kind == 'offset' else ''}{bound.value}")
        return what + (f" ({', '.join(rng)})" if rng else "")


@dataclass
class Loaded:
    """Accepted events in processing order, where each came from, what was refused."""

    source: str
    events: list[dict[str, Any]] = field(default_factory=list)
    positions: list[tuple[int, int]] = field(default_factory=list)  # (partition, offset)
    dead_letters: Counter[str] = field(default_factory=Counter)
    record_ts: tuple[int, int] | None = None  # first, last record timestamp read
    seconds: float = 0.0
    streamed: int = 0  # events handed out by iter_events

    @property
    def event_ts(self) -> tuple[int, int] | None:
        if not self.events:
            return None
        ts = [int(e["ts"]) for e in self.events]
        return min(ts), max(ts)


def load_events(settings: Settings, where: Where, *, validate_events: bool = True,
                on_progress: Progress | None = None) -> Loaded:
    """Read, decode, validate and order the events of ``where``."""
    from streams.publisher import Codecs
    from streams.worker import schema_source

    started = time.monotonic()
    catalog = TopicCatalog(settings.topic_prefix)
    logical = catalog.spec(where.logical_topic).name
    loaded = Loaded(source=where.describe(catalog))
    limits = Limits(max_record_bytes=settings.max_record_bytes,
                    max_future_ms=settings.max_future_ms)
    now_ms = int(time.time() * 1000)
    accepted: list[tuple[dict[str, Any], int, int]] = []
    stamps: list[int] = []
    if where.file is not None:
        for ev in read_file(where.file, logical, where.start, where.end):
            if validate_events:
                try:
                    validate(logical, ev.value, 0, now_ms=now_ms, limits=limits)
                except EventError as exc:
                    loaded.dead_letters[exc.reason] += 1
                    continue
            accepted.append((ev.value, ev.partition, ev.offset))
            if ev.timestamp_ms:
                stamps.append(ev.timestamp_ms)
            if on_progress is not None and len(accepted) % 5000 == 0:
                on_progress(len(accepted), 0)
    else:
        codec = Codecs(schema_source(settings), catalog)[logical]
        for raw in read_topic(settings, catalog.physical(logical), where.start, where.end,
                              on_progress=on_progress):
            batch = _admit(logical, raw, codec, limits, now_ms, validate_events)
            for reason in batch[1]:
                loaded.dead_letters[reason] += 1
            for message, event in batch[0]:
                accepted.append((event, message.partition, message.offset))
            if raw:
                stamps.extend((raw[0].timestamp_ms, raw[-1].timestamp_ms))
    if on_progress is not None:  # done: the bar shows a total
        on_progress(len(accepted), len(accepted))
    ordered = merge_partitions([accepted], lambda a: int(a[0]["ts"]), lambda a: a[1])
    loaded.events = [a[0] for a in ordered]
    loaded.positions = [(a[1], a[2]) for a in ordered]
    if stamps:
        loaded.record_ts = (min(stamps), max(stamps))
    loaded.seconds = time.monotonic() - started
    return loaded


def iter_events(settings: Settings, where: Where, loaded: Loaded, *,
                validate_events: bool = True, on_progress: Progress | None = None
                ) -> Iterator[tuple[dict[str, Any], tuple[int, int]]]:
    """:func:`load_events` as a stream: ``(event, (partition, offset))`` in the same order,
    holding only what the partitions' skew requires; ``loaded`` gets the counts (its
    ``events`` stay empty). A file is read whole (:func:`load_events`)."""
    if where.file is not None:
        whole = load_events(settings, where, validate_events=validate_events,
                            on_progress=on_progress)
        loaded.source, loaded.dead_letters = whole.source, whole.dead_letters
        loaded.record_ts, loaded.seconds = whole.record_ts, whole.seconds
        loaded.streamed = len(whole.events)
        yield from zip(whole.events, whole.positions, strict=True)
        return
    from streams.publisher import Codecs
    from streams.worker import schema_source

    started = time.monotonic()
    catalog = TopicCatalog(settings.topic_prefix)
    logical = catalog.spec(where.logical_topic).name
    loaded.source = where.describe(catalog)
    limits = Limits(max_record_bytes=settings.max_record_bytes,
                    max_future_ms=settings.max_future_ms)
    now_ms = int(time.time() * 1000)
    codec = Codecs(schema_source(settings), catalog)[logical]
    state = ReadState()
    merge = StreamMerge(lambda a: int(a[0]["ts"]))
    closed: set[int] = set()
    first = last = None
    for raw in read_topic(settings, catalog.physical(logical), where.start, where.end,
                          on_progress=on_progress, state=state):
        if not closed and not merge.buffered:
            merge.open(state.partitions)
        ok, bad = _admit(logical, raw, codec, limits, now_ms, validate_events)
        for reason in bad:
            loaded.dead_letters[reason] += 1
        for message, event in ok:
            merge.push(message.partition, (event, (message.partition, message.offset)))
        if raw:
            lo, hi = raw[0].timestamp_ms, raw[-1].timestamp_ms
            first = lo if first is None else min(first, lo, hi)
            last = hi if last is None else max(last, lo, hi)
        for p in state.finished - closed:
            merge.close(p)
            closed.add(p)
        for item in merge.ready():
            loaded.streamed += 1
            yield item
    for item in merge.drain():
        loaded.streamed += 1
        yield item
    if first is not None and last is not None:
        loaded.record_ts = (first, last)
    loaded.seconds = time.monotonic() - started


def _admit(logical: str, raw: list[RawMessage], codec: Any, limits: Limits, now_ms: int,
           validate_events: bool) -> tuple[list[tuple[RawMessage, dict[str, Any]]], list[str]]:
    if validate_events:
        batch = admit(logical, raw, codec, limits, now_ms)
        return ([(a.message, a.event) for a in batch.accepted],
                [r["reason"] for r in batch.rejected])
    ok, bad = [], []
    for message in raw:
        try:
            ok.append((message, codec.decode(message.value)))
        except EventError as exc:
            bad.append(exc.reason)
    return ok, bad
