"""The phases of bench/recommend.py: one click rate each, with a fresh topic prefix
and one fresh recommend worker.

* :class:`RecWorker`: the ``streams.cli worker --pipelines recommend`` process and its
  ``/metrics`` (:func:`msum`, :func:`worker_delta`: what its own metrics say);
* :class:`RecReader`: the end consumer of a phase's ``recommendations``;
* :class:`RedisProbe`: watches Redis for sampled clicks' top-Ks;
* :class:`Phase`: fresh topics, the worker, the paced click producer, reader and probe;
* :func:`click_result`: a tag's click latencies (published, in Redis, consumed).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import redis
from confluent_kafka import Producer

from bench._common import OUT_DIR, ROOT, percentiles
from bench._harness import (
    CORES,
    CpuSampler,
    ServiceWorker,
    assigned_consumer,
    bench_producer,
    phase_clients,
)
from replay.generator import GeneratedEvent
from streams.publisher import Codecs
from streams.stack import EmbeddedStack, StackInfo

ACTIONS = frozenset({"click", "add_to_cart", "purchase"})
READ_TARGETS = ("baseline", "redis", "web")
CORES_NOTE = (f"This machine has {CORES} cores, shared by the producer, the broker, redis, "
              "the worker, the end consumer and the readers (and by other sessions): "
              "absolute figures understate a deployment where each has its own cores.")
_SERIES = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


# -- the worker ------------------------------------------------------------------------

class RecWorker(ServiceWorker):
    """A ``streams.cli worker --pipelines recommend`` process (own data dir and web port,
    SIGTERM then kill, dies with this process)."""

    def __init__(self, env: dict[str, str], tmp: Path, label: str) -> None:
        super().__init__("recommend", 0, env, tmp, label,
                         OUT_DIR / f"recommend_worker_{label}.log")

    def command(self) -> list[str]:
        return [sys.executable, "-m", "streams.cli", "worker", "--pipelines", "recommend"]


    def scrape(self) -> list[tuple[str, dict[str, str], float]] | None:
        """Every ``techshop_*`` series of ``/metrics`` (None if it did not answer)."""
        status, text = self._get("/metrics", 5)
        if status != 200:
            return None
        out = []
        for line in text.splitlines():
            m = _SERIES.match(line)
            if not m or not m.group(1).startswith("techshop_"):
                continue
            with contextlib.suppress(ValueError):
                out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")),
                            float(m.group(3))))
        return out


def msum(series: list[tuple[str, dict[str, str], float]] | None, name: str,
         **labels: str) -> float | None:
    """The sum of the series ``name`` whose labels include ``labels``."""
    if series is None:
        return None
    return sum(v for n, lab, v in series
               if n == name and all(lab.get(k) == x for k, x in labels.items()))


def worker_delta(before: Any, after: Any) -> dict[str, Any]:
    """What the worker's own metrics say about a window (None where it did not answer)."""
    def d(name: str, **labels: str) -> float | None:
        a, b = msum(after, name, **labels), msum(before, name, **labels)
        return None if a is None or b is None else a - b

    def ratio(x: float | None, y: float | None) -> float | None:
        return x / y if x is not None and y else None

    lat_n = d("techshop_recommend_latency_seconds_count")
    read_n = d("techshop_recommend_read_seconds_count")
    batches = d("techshop_batch_size_events_count", topic="clickstream")
    return {
        "published": d("techshop_recommend_published_total"),
        "throttled_views": d("techshop_recommend_throttled_views_total"),
        "latency_count": lat_n,
        "latency_mean_ms": ratio(1000 * (d("techshop_recommend_latency_seconds_sum") or 0),
                                 lat_n),
        "latency_within_100ms": ratio(d("techshop_recommend_latency_seconds_bucket", le="0.1"),
                                      lat_n),
        "latency_within_50ms": ratio(d("techshop_recommend_latency_seconds_bucket", le="0.05"),
                                     lat_n),
        "click_batches": batches,
        "mean_click_batch": ratio(d("techshop_batch_size_events_sum", topic="clickstream"),
                                  batches),
        "signal_batches": d("techshop_batch_size_events_count", topic="recommend-signals"),
        "mean_signal_batch": ratio(d("techshop_batch_size_events_sum",
                                     topic="recommend-signals"),
                                   d("techshop_batch_size_events_count",
                                     topic="recommend-signals")),
        "dead_letters": d("techshop_dead_letters_total"),
        "events_in": {t: d("techshop_events_in_total", topic=t)
                      for t in ("clickstream", "recommend-signals", "training-examples")},
        "events_out": {t: d("techshop_events_out_total", topic=t)
                       for t in ("recommendations", "training-examples", "recommend-signals")},
        "reads": read_n,
        "read_server_mean_ms": ratio(1000 * (d("techshop_recommend_read_seconds_sum") or 0),
                                     read_n),
        "read_server_within_1ms": ratio(d("techshop_recommend_read_seconds_bucket", le="0.001"),
                                        read_n),
        "catalog_items": msum(after, "techshop_recommend_catalog_items"),
    }


# -- the end consumer and the Redis probe ------------------------------------------------

class RecReader:
    """Reads a phase's ``recommendations`` from the start: for each (user, ts), when it
    first arrived here and its Kafka timestamp."""

    def __init__(self, conf: dict[str, Any], topic: str, codecs: Codecs) -> None:
        self.decode = codecs["recommendations"].decode
        self.consumer = assigned_consumer(conf, "bench-rec", topic)
        self.first: dict[tuple[str, int], tuple[float, int]] = {}
        self.models: Counter[str] = Counter()
        self.timestamp_types: Counter[int] = Counter()
        self.records = self.errors = self.repeats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"end-{topic}")
        self._thread.start()

    def _run(self) -> None:
        poll, consume, decode, first = (self.consumer.poll, self.consumer.consume, self.decode,
                                        self.first)
        while not self._stop.is_set():
            msg0 = poll(0.1)
            if msg0 is None:
                continue
            at = time.time()
            for msg in [msg0, *consume(999, 0)]:
                if msg.error() is not None:
                    self.errors += 1
                    continue
                r = decode(msg.value())
                self.records += 1
                key = (r["user_id"], int(r["ts"]))
                if key in first:
                    self.repeats += 1
                    continue
                kind, kafka_ts = msg.timestamp()
                self.timestamp_types[kind] += 1
                first[key] = (at, kafka_ts)
                self.models[r["model"].split("@")[0]] += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()


class RedisProbe:
    """Polls ``<prefix>recs:<user>`` of sampled clicks (one MGET per interval) until the
    stored top-K's ``ts`` is the click's or later; records send -> first seen (ms)."""

    def __init__(self, client: redis.Redis, prefix: str, interval_s: float,
                 give_up_s: float = 120.0) -> None:
        self.client, self.prefix, self.interval_s, self.give_up_s = (client, prefix,
                                                                     interval_s, give_up_s)
        self.pending: dict[str, list[tuple[int, float, str]]] = {}  # user -> (ts, sent, tag)
        self.seen: dict[str, list[float]] = {}  # tag -> latencies (ms)
        self.missed: Counter[str] = Counter()
        self.polls = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="redis-probe")
        self._thread.start()

    def add(self, user: str, ts: int, sent: float, tag: str) -> None:
        with self._lock:
            self.pending.setdefault(user, []).append((ts, sent, tag))

    def outstanding(self) -> int:
        with self._lock:
            return sum(len(v) for v in self.pending.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                users = list(self.pending)
            if users:
                try:
                    values = self.client.mget([f"{self.prefix}recs:{u}" for u in users])
                except redis.RedisError:
                    values = [None] * len(users)
                now = time.time()
                self.polls += 1
                with self._lock:
                    for user, raw in zip(users, values, strict=True):
                        waiting = self.pending.get(user, [])
                        stored = int(orjson.loads(raw)["ts"]) if raw else -1
                        keep = []
                        for ts, sent, tag in waiting:
                            if stored >= ts:
                                self.seen.setdefault(tag, []).append((now - sent) * 1000)
                            elif now - sent > self.give_up_s:
                                self.missed[tag] += 1
                            else:
                                keep.append((ts, sent, tag))
                        if keep:
                            self.pending[user] = keep
                        else:
                            self.pending.pop(user, None)
            self._stop.wait(self.interval_s)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


# -- one phase: a fresh prefix and worker, one click rate ---------------------------------

class Phase:
    """Fresh topics, one recommend worker, the bench producer, end consumer and probe."""

    def __init__(self, rate: float, label: str, args: argparse.Namespace, info: StackInfo,
                 stack: EmbeddedStack, tmp: Path, prefix: str) -> None:
        self.rate, self.label, self.args, self.prefix, self.tmp = rate, label, args, prefix, tmp
        self.catalog, self.codecs, conf = phase_clients(info, stack, prefix, args.partitions)
        self.encode = self.codecs["clickstream"].encode
        self.topic = self.catalog.physical("clickstream")
        self.producer: Producer | None = bench_producer(conf, args.linger_ms)
        self.reader: RecReader | None = RecReader(
            {**conf, "fetch.wait.max.ms": args.fetch_wait_ms},
            self.catalog.physical("recommendations"), self.codecs)
        self.redis = redis.Redis.from_url(info.redis_url, socket_timeout=5)
        self.probe: RedisProbe | None = RedisProbe(
            redis.Redis.from_url(info.redis_url, socket_timeout=5), prefix,
            args.probe_interval_ms / 1000)
        self.first: dict[tuple[str, int], tuple[float, int]] = {}  # the reader's, once closed
        # tag -> (user, ts) -> (send wall time, event type)
        self.sent: dict[str, dict[tuple[str, int], tuple[float, str]]] = {}
        self.last_ts: dict[str, int] = {}
        self.rng = random.Random(11)
        env = {**os.environ, **info.env(), "TECHSHOP_TOPIC_PREFIX": prefix,
               "TECHSHOP_BROKER_COMPAT": "tansu", "TECHSHOP_PARTITIONS": str(args.partitions),
               "TECHSHOP_MODEL_DIR": str(tmp / f"models-{label}"), "PYTHONPATH": str(ROOT)}
        self.worker = RecWorker(env, tmp, label)

    @property
    def workers(self) -> list[ServiceWorker]:
        return [self.worker]

    def produce_events(self, events: list[GeneratedEvent]) -> None:
        """The catalog and the history, as generated (their own keys and times)."""
        assert self.producer is not None
        for e in events:
            topic = self.catalog.physical(e.topic)
            encode = self.codecs[e.topic].encode
            while True:
                try:
                    self.producer.produce(topic, encode(e.value), e.key)
                    break
                except BufferError:
                    self.producer.poll(0.01)
        self.producer.flush(30)

    def wait_ready(self) -> float:
        start = time.monotonic()
        deadline = start + self.args.ready_timeout
        while time.monotonic() < deadline:
            proc = self.worker.proc
            assert proc is not None
            if proc.poll() is not None:
                raise RuntimeError(f"{self.label}: the worker exited ({proc.returncode}) "
                                   f"while starting; see {self.worker.log_path}")
            if self.worker.ready():
                return time.monotonic() - start
            time.sleep(0.25)
        raise RuntimeError(f"{self.label}: worker not ready in {self.args.ready_timeout} s; "
                           f"see {self.worker.log_path}")

    def offer(self, tag: str, rate: float, seconds: float, pool: list[dict[str, Any]],
              probe_share: float = 0.0) -> tuple[int, float]:
        """Send ``rate`` clickstream events a second for ``seconds``, paced."""
        assert self.producer is not None and self.probe is not None
        producer, encode, topic, last_ts = self.producer, self.encode, self.topic, self.last_ts
        produce, poll, rand, probe = producer.produce, producer.poll, self.rng.random, self.probe
        sent = self.sent.setdefault(tag, {})
        base = f"{self.label}.{tag}:"
        total = int(rate * seconds)
        start = time.perf_counter()
        i = 0
        while i < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while i < due:
                value = dict(pool[i % len(pool)])
                user = value["user_id"]
                value["event_id"] = f"{base}{i}"
                now = time.time()
                ts = max(int(now * 1000), last_ts.get(user, 0) + 1)
                value["ts"] = last_ts[user] = ts
                while True:
                    try:
                        produce(topic, encode(value), user)
                        break
                    except BufferError:
                        poll(0.01)
                sent[(user, ts)] = (now, value["event_type"])
                if probe_share and value["event_type"] in ACTIONS and rand() < probe_share:
                    probe.add(user, ts, now, tag)
                i += 1
            poll(0)
            pause = start + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        elapsed = time.perf_counter() - start
        producer.flush(10)
        return total, elapsed

    def actions_back(self, tag: str) -> tuple[int, int]:
        """(actions of ``tag`` whose top-K arrived, actions sent)."""
        first = self.reader.first if self.reader is not None else self.first
        sent = [k for k, (_, etype) in list(self.sent.get(tag, {}).items()) if etype in ACTIONS]
        return sum(1 for k in sent if k in first), len(sent)

    def wait_back(self, tag: str, until: float) -> tuple[int, int]:
        while True:
            back, n = self.actions_back(tag)
            if back >= n or time.time() >= until:
                return back, n
            time.sleep(0.1)

    def close(self) -> None:
        """Stop the worker and the clients (idempotent)."""
        self.worker.stop()
        if self.probe is not None:
            self.probe.close()
            self.probe = None
        if self.reader is not None:
            self.first = self.reader.first
            self.reader.close()
            self.reader = None
        if self.producer is not None:
            self.producer.flush(5)
            self.producer = None
        with contextlib.suppress(Exception):
            self.redis.close()


# -- click results -----------------------------------------------------------------------

def click_result(ph: Phase, tag: str, start: float, end: float, sampler: CpuSampler,
                 window_s: float) -> dict[str, Any]:
    """Latencies of one tag's clicks (actions; views apart), windows, throughput."""
    first = ph.reader.first if ph.reader is not None else ph.first
    sent = ph.sent.get(tag, {})
    published: list[float] = []
    consumed: list[float] = []
    arrivals: list[float] = []
    views_sent = views_back = 0
    by_window: dict[int, list[float]] = {}
    for key, (sent_at, etype) in sent.items():
        got = first.get(key)
        if etype not in ACTIONS:
            views_sent += 1
            views_back += got is not None
            continue
        if got is None:
            continue
        at, kafka_ts = got
        published.append(kafka_ts - sent_at * 1000)
        consumed.append((at - sent_at) * 1000)
        arrivals.append(at)
        by_window.setdefault(int((sent_at - start) // window_s), []).append(published[-1])
    n_actions = len(sent) - views_sent
    within = sum(1 for a in arrivals if a <= end + 2.0)
    in_window = sum(1 for a in arrivals if start + 2.0 <= a <= end)
    windows = []
    for w in sorted(by_window):
        lo = start + w * window_s
        pct = percentiles(by_window[w])
        windows.append({"from_s": w * window_s, "n": pct["n"], "p50": pct["p50"],
                        "p99": pct["p99"],
                        **{f"{k}_cpu": sampler.share(k, lo, lo + window_s)
                           for k in ("worker0", "broker", "redis", "bench", "others")}})
    probe = ph.probe
    in_redis = percentiles(probe.seen.get(tag, [])) if probe is not None else percentiles([])
    if probe is not None:  # still waited for: not seen (yet) when the window was measured
        with probe._lock:
            in_redis["not_seen"] = probe.missed.get(tag, 0) + sum(
                1 for waiting in probe.pending.values() for _, _, t in waiting if t == tag)
    return {
        "sent": len(sent), "actions_sent": n_actions, "views_sent": views_sent,
        "sent_per_s": len(sent) / (end - start) if end > start else None,
        "actions_published": len(published),
        "published_share": len(published) / n_actions if n_actions else None,
        "published_within_window_plus_2s": within / n_actions if n_actions else None,
        "views_published": views_back,
        "rate_in_window_per_s": in_window / (end - start - 2.0) if end - start > 3.0 else None,
        "latency_ms": {"published": percentiles(published), "in_redis": in_redis,
                       "consumed": percentiles(consumed)},
        "windows": windows,
    }
